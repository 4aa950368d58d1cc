"""Atomic file writes: a crash, a full disk or a planted symlink never leaves a wrong file.

Every file a run writes for later reading (checkpoints, `results.json`, the tokenizer
files) goes through `write_atomically`: the bytes go to a temporary sibling, which is
fsynced and then moved over the target with one `os.replace`. A kill mid-write leaves the
previous file whole, and a symlink planted at the target is replaced by the new file
instead of being followed to whatever it points at (`os.replace` renames over the link;
the temporary is created with O_EXCL | O_NOFOLLOW, so a link planted there is not
followed either).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMP_MARKER = ".tmp-"
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


def write_atomically(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write `path` through a temporary sibling that replaces it only once complete and on disk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    temporary = path.with_name(f".{path.name}{TEMP_MARKER}{os.getpid()}")
    try:
        with os.fdopen(os.open(temporary, NEW_FILE_FLAGS, 0o644), "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)  # a full disk must not also keep the half-written copy
        raise
    _fsync_directory(path.parent)


def write_text_atomically(path: str | Path, text: str) -> None:
    write_atomically(path, lambda handle: handle.write(text.encode("utf-8")))


def _remove_stale_temporaries(path: Path) -> None:
    """Temporaries of `path` left by a process that was killed mid-write (never read by anyone)."""
    for stale in path.parent.glob(f".{path.name}{TEMP_MARKER}*"):
        stale.unlink(missing_ok=True)


def _fsync_directory(directory: Path) -> None:
    if os.name != "posix":  # Windows cannot open a directory; its rename is durable enough
        return
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
