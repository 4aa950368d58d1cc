"""Atomic checkpoint files: a crash or a full disk mid-write leaves the previous checkpoint whole.

Lightning's default `TorchCheckpointIO` serialises into memory and lets fsspec write a
temporary file in the system temp directory, then moves it into place. When that
directory is on another file system than the run dir (a tmpfs `/tmp`, a node-local disk
next to a shared one), the move is a copy into the final path: a kill or ENOSPC during the
copy leaves a truncated `last.ckpt`, and nothing is fsynced. Here the temporary file lives
next to its target, is fsynced, and replaces the target with one `os.replace` (atomic on
POSIX within a directory); the directory is fsynced so the rename itself survives a crash.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from lightning_fabric.utilities.cloud_io import get_filesystem
from pytorch_lightning.plugins.io import TorchCheckpointIO

TEMP_MARKER = ".tmp-"


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` whose local saves are all-or-nothing (remote URLs keep Lightning's path)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        write_atomically(Path(path), lambda handle: torch.save(checkpoint, handle))


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write `path` through a temporary sibling that replaces it only once complete and on disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    temporary = path.with_name(f".{path.name}{TEMP_MARKER}{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)  # a full disk must not also keep the half-written copy
        raise
    _fsync_directory(path.parent)


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


def _is_local(path: str | Path) -> bool:
    return "file" in _protocols(get_filesystem(str(path)))


def _protocols(filesystem) -> tuple[str, ...]:
    protocol = filesystem.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
