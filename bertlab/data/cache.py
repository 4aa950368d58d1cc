"""An on-disk cache for whatever is slow to rebuild (tokenizers, tokenized datasets, shards).

An entry is a directory named by a hash of everything that determines its content.
It is built in a temporary sibling and renamed into place only when complete, under a
file lock, so concurrent runs of a sweep (or DDP ranks) build it once and a crash
never leaves a half-written entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

COMPLETE_MARKER = "complete.json"


def default_cache_dir() -> Path:
    return Path(os.environ.get("BERTLAB_CACHE", Path.home() / ".cache" / "bertlab"))


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (paths are hashed by content)."""
    digest = hashlib.blake2b(digest_size=10)
    for part in parts:
        if isinstance(part, Path):
            digest.update(file_digest(part).encode())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def file_digest(path: Path, chunk_size: int = 1 << 22) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def cached_dir(root: str | Path, kind: str, key: str, build: Callable[[Path], dict | None]) -> Path:
    """Return `root/kind/key`, calling `build(tmp_dir)` first if it does not exist yet.

    `build` fills the directory it is given and may return a dict of facts about the
    entry, stored in its completion marker (see `entry_info`).
    """
    final = Path(root).expanduser() / kind / key
    if (final / COMPLETE_MARKER).exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if (final / COMPLETE_MARKER).exists():  # another process built it while we waited
            return final
        tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            info = build(tmp) or {}
            (tmp / COMPLETE_MARKER).write_text(json.dumps(info, indent=2))
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def entry_info(entry: Path) -> dict:
    return json.loads((entry / COMPLETE_MARKER).read_text())
