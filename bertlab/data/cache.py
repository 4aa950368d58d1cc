"""An on-disk cache for whatever is slow to rebuild (tokenizers, tokenized datasets, shards).

An entry is a directory named by a hash of everything that determines its content.
It is built in a temporary sibling (`<key>.tmp-<pid>`) and renamed into place only when
complete, under a file lock, so concurrent runs of a sweep (or DDP ranks) build it once
and a crash never leaves a half-written entry behind.

A build that was killed leaves its temporary sibling: the next run removes every one
whose key's lock is free (nobody is building it), which holds across hosts sharing the
cache, unlike a check of the PID. A complete entry lists its files and their sizes
(`files.json`); an entry whose files no longer match (a truncated shard, a deleted file)
is rebuilt with a warning instead of failing later inside a DataLoader.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)

COMPLETE_MARKER = "complete.json"
FILE_SIZES = "files.json"
TMP_INFIX = ".tmp-"


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
    entry, stored in its completion marker (see `entry_info`). An existing entry whose
    files are damaged is rebuilt.
    """
    final = Path(root).expanduser() / kind / key
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_builds(final.parent)
    if _usable(final, warn=True):
        return final
    with FileLock(_lock_path(final)):
        if _usable(final, warn=False):  # another process built it while we waited
            return final
        tmp = final.with_name(f"{final.name}{TMP_INFIX}{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            info = build(tmp) or {}
            # The sizes first and the marker last: an entry with a marker is complete.
            (tmp / FILE_SIZES).write_text(json.dumps(_file_sizes(tmp), indent=2))
            (tmp / COMPLETE_MARKER).write_text(json.dumps(info, indent=2))
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def entry_info(entry: Path) -> dict:
    return json.loads((entry / COMPLETE_MARKER).read_text())


def remove_abandoned_builds(kind_dir: Path) -> None:
    """Delete temporary build directories whose key's lock nobody holds (killed builds)."""
    for tmp in kind_dir.glob(f"*{TMP_INFIX}*"):
        final = tmp.with_name(tmp.name.split(TMP_INFIX)[0])
        try:
            with FileLock(_lock_path(final), timeout=0):
                shutil.rmtree(tmp, ignore_errors=True)
                log.info("removed %s, left by a build that did not finish", tmp)
        except Timeout:
            continue  # being built right now


def _lock_path(final: Path) -> str:
    return str(final) + ".lock"


def _usable(entry: Path, warn: bool) -> bool:
    """Complete, and every file as large as when it was written."""
    if not (entry / COMPLETE_MARKER).exists():
        return False
    sizes_file = entry / FILE_SIZES
    if not sizes_file.exists():
        return True  # written before bertlab recorded sizes: nothing to check against
    for name, size in json.loads(sizes_file.read_text()).items():
        path = entry / name
        found = path.stat().st_size if path.exists() else None
        if found != size:
            if warn:
                state = "missing" if found is None else f"{found:,} bytes"
                log.warning(
                    "cache entry %s is damaged (%s: %s, written as %s bytes); rebuilding it",
                    entry,
                    name,
                    state,
                    f"{size:,}",
                )
            return False
    return True


def _file_sizes(directory: Path) -> dict[str, int]:
    return {
        str(path.relative_to(directory)): path.stat().st_size
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }
