"""Checkpoints: safe loading, initial weights from a bertlab .ckpt, the tokenizer inside it.

A checkpoint never runs code: `.ckpt` files are read with `torch.load(weights_only=True)`
and `.safetensors` with safetensors.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import torch
from tokenizers import Tokenizer
from torch import nn

log = logging.getLogger(__name__)

ARCHITECTURE_KEYS = (
    "num_layers",
    "hidden_size",
    "num_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
)


class UnsafeCheckpointError(RuntimeError):
    pass


def load_checkpoint(path: str | Path) -> dict:
    """Read a Lightning `.ckpt` (or plain `torch.save` file) without executing any code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpointError(
            f"{path}: refused to load: the file holds objects other than tensors and plain "
            f"values, and loading it could run code ({str(error).splitlines()[0]})"
        ) from None


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Weights from `.safetensors`, a `.ckpt` (the `model.` prefix of task modules dropped) or a `.bin`."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    checkpoint = load_checkpoint(path)
    state = checkpoint.get("state_dict", checkpoint)
    if any(key.startswith("model.") for key in state):
        state = {
            key.removeprefix("model."): value
            for key, value in state.items()
            if key.startswith("model.")
        }
    return state


def load_pretrained(model: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Copy matching weights from `path` into `model` (names are the standard BERT ones).

    Heads that the source lacks (a new classifier) keep their initialisation; heads the
    target lacks (pretraining heads when fine-tuning) are skipped. Both lists are logged.
    """
    path = Path(path)
    if path.is_dir():
        from bertlab.hf import load_hf_state_dict  # Hugging Face directories: see bertlab/hf.py

        state = load_hf_state_dict(path)
    else:
        state = load_state_dict(path)
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        k = mismatched[0]
        raise ValueError(
            f"{path}: {k} has shape {tuple(state[k].shape)}, the model expects "
            f"{tuple(own[k].shape)}; choose the model= that the checkpoint was trained with"
        )
    if not any(k.startswith("bert.") for k in matched):
        raise ValueError(
            f"{path}: no BERT encoder weights found (expected names like bert.embeddings.*)"
        )
    model.load_state_dict(matched, strict=False)
    report = {
        "newly_initialized": sorted(set(own) - set(matched)),
        "unused": sorted(set(state) - set(matched)),
    }
    log.info(
        "loaded %d tensors from %s; newly initialized: %s; unused: %s",
        len(matched),
        path,
        report["newly_initialized"] or "none",
        report["unused"] or "none",
    )
    return report


def checkpoint_model_config(path: str | Path) -> dict | None:
    """The `model` hyperparameters a bertlab checkpoint was trained with (None for other files)."""
    path = Path(path)
    if path.suffix != ".ckpt":
        return None
    return load_checkpoint(path).get("hyper_parameters", {}).get("model")


def check_architecture(model_cfg: dict, source_cfg: dict, source: str) -> None:
    """Fail, naming both values, when the chosen `model=` contradicts the initial weights."""
    for key in ARCHITECTURE_KEYS:
        if key in source_cfg and model_cfg.get(key) != source_cfg[key]:
            raise ValueError(
                f"model.{key}={model_cfg.get(key)} but {source} has {key}={source_cfg[key]}; "
                f"choose the matching model= (or drop model.init)"
            )


def tokenizer_from_checkpoint(path: str | Path) -> Tokenizer | None:
    path = Path(path)
    if path.is_dir():
        from bertlab.tokenizer import load_tokenizer

        return load_tokenizer(path)
    if path.suffix == ".ckpt":
        tokenizer_json = load_checkpoint(path).get("tokenizer")
        if tokenizer_json:
            return Tokenizer.from_str(tokenizer_json)
    sibling = path.parent
    for name in ("tokenizer.json", "vocab.txt"):
        if (sibling / name).exists():
            from bertlab.tokenizer import load_tokenizer

            return load_tokenizer(sibling / name)
    return None
