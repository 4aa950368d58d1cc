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

from pathlib import Path
from typing import Any

import torch
from lightning_fabric.utilities.cloud_io import get_filesystem
from pytorch_lightning.plugins.io import TorchCheckpointIO

from bertlab.atomic import write_atomically


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` whose local saves are all-or-nothing (remote URLs keep Lightning's path)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        write_atomically(path, lambda handle: torch.save(checkpoint, handle))


def _is_local(path: str | Path) -> bool:
    return "file" in _protocols(get_filesystem(str(path)))


def _protocols(filesystem) -> tuple[str, ...]:
    protocol = filesystem.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
