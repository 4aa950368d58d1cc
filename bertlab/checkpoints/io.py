"""Checkpoint files: safe loading (no file ever runs code) and atomic saving.

Loading: `.ckpt`, `.bin` and `.pt` files are read with `torch.load(weights_only=True)`,
which accepts tensors and plain values only, and `.safetensors` with safetensors. A file
that is not a checkpoint at all (a text file, a truncated copy) is an error naming it.

Saving: Lightning's default `TorchCheckpointIO` serialises into memory and lets fsspec
write a temporary file in the system temp directory, then moves it into place. When that
directory is on another file system than the run dir (a tmpfs `/tmp`, a node-local disk
next to a shared one), the move is a copy into the final path: a kill or ENOSPC during the
copy leaves a truncated `last.ckpt`, and nothing is fsynced. Here the temporary file lives
next to its target, is fsynced, and replaces the target with one `os.replace` (atomic on
POSIX within a directory); the directory is fsynced so the rename itself survives a crash.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.utilities.cloud_io import get_filesystem
from pytorch_lightning.plugins.io import TorchCheckpointIO
from safetensors import SafetensorError
from safetensors.torch import load_file

from bertlab.atomic import write_atomically
from bertlab.errors import CheckpointError, UnsafeCheckpointError

# torch.save writes a zip archive (since torch 1.6) or, in the legacy format, a pickle.
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_MAGIC = b"\x80"  # the PROTO opcode that starts every pickle of protocol 2 or later


# ---- loading ----------------------------------------------------------------------------


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """Read a Lightning `.ckpt` (or plain `torch.save` file) without executing any code.

    `mmap=True` maps the tensors instead of reading them: opening a large checkpoint costs
    only its pickled structure, and weights are paged in when used.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    with open(path, "rb") as handle:
        head = handle.read(len(ZIP_MAGIC))
    if not head.startswith((ZIP_MAGIC, PICKLE_MAGIC)):
        raise CheckpointError(
            f"{path}: not a checkpoint (a file written by torch.save starts as a zip archive "
            "or a pickle; this one is neither)"
        )
    try:  # only the zip format can be memory-mapped
        return torch.load(
            path, map_location="cpu", weights_only=True, mmap=mmap and head == ZIP_MAGIC
        )
    except pickle.UnpicklingError as error:
        if "Unsupported global" not in str(error) and "Unpickler error" not in str(error):
            raise _damaged(path, error) from None
        raise UnsafeCheckpointError(
            f"{path}: refused to load: the file holds objects other than tensors and plain "
            f"values, and loading it could run code ({_rejected_object(error)})"
        ) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as error:
        raise _damaged(path, error) from None


def _damaged(path: Path, error: Exception) -> CheckpointError:
    reason = (str(error).splitlines() or [type(error).__name__])[0].split(". This is")[0]
    return CheckpointError(f"{path}: not a readable checkpoint, truncated or damaged ({reason})")


def _rejected_object(error: Exception) -> str:
    """The line of torch's long message that names what was refused (e.g. `GLOBAL exec`)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    named = [line for line in lines if "Unsupported global" in line or "Unpickler error" in line]
    reason = (named or lines or [type(error).__name__])[0]
    return reason.split(". Please use")[0].replace("\x1b[1m", "").replace("\x1b[0m", "")


def load_weight_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of one `.safetensors` file or one `torch.save` file, exactly as stored."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return load_checkpoint(path, mmap=True)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise _damaged(path, error) from None


def encoder_weights(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The network's weights in a `.ckpt` or state dict: task modules' `model.` prefix dropped."""
    state = checkpoint.get("state_dict", checkpoint)
    if any(key.startswith("model.") for key in state):
        state = {
            key.removeprefix("model."): value
            for key, value in state.items()
            if key.startswith("model.")
        }
    return state


# ---- saving -----------------------------------------------------------------------------


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` whose local saves are all-or-nothing (remote URLs: Lightning's way)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        write_atomically(Path(path), lambda handle: torch.save(checkpoint, handle))


def _is_local(path: str | Path) -> bool:
    return "file" in _protocols(get_filesystem(str(path)))


def _protocols(filesystem) -> tuple[str, ...]:
    protocol = filesystem.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
