"""Checkpoints: safe loading, initial weights from a bertlab .ckpt or a Hugging Face
directory (`bertlab/hf.py`, also `hf:NAME` from the Hub), the architecture and tokenizer
that come with them.

A checkpoint never runs code: `.ckpt` and `.bin` files are read with
`torch.load(weights_only=True)` and `.safetensors` with safetensors.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer
from torch import nn

from bertlab.hf import hf_model_config, load_hf_state_dict, load_hf_tokenizer, resolve_init
from bertlab.model import SWITCH_KEYS

log = logging.getLogger(__name__)

ARCHITECTURE_KEYS = (
    "num_layers",
    "hidden_size",
    "num_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "hidden_act",
    *SWITCH_KEYS,
)
# Also taken from the initial weights' config unless chosen on the command line.
TRAINING_KEYS = ("hidden_dropout", "attention_dropout", "initializer_range")


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
            f"values, and loading it could run code ({_rejected_object(error)})"
        ) from None


def _rejected_object(error: Exception) -> str:
    """The line of torch's long message that names what was refused (e.g. `GLOBAL exec`)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    named = [line for line in lines if "Unsupported global" in line or "Unpickler error" in line]
    reason = (named or lines or [type(error).__name__])[0]
    return reason.split(". Please use")[0].replace("\x1b[1m", "").replace("\x1b[0m", "")


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
    path = resolve_init(path)
    state = load_hf_state_dict(path) if path.is_dir() else load_state_dict(path)
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
    """The `model` keys of a bertlab checkpoint or a Hugging Face directory (None for other files)."""
    path = resolve_init(path)
    if path.is_dir():
        return hf_model_config(path)
    if path.suffix != ".ckpt":
        return None
    return load_checkpoint(path).get("hyper_parameters", {}).get("model")


def chosen_model_keys(overrides: Sequence[str]) -> set[str]:
    """The `model.*` keys the command line set: all of them after `model=NAME`."""
    chosen = set()
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        if key == "model":
            return set(ARCHITECTURE_KEYS + TRAINING_KEYS)
        if key.startswith("model."):
            chosen.add(key.removeprefix("model."))
    return chosen


def init_model_config(model_cfg: dict, overrides: Sequence[str] = ()) -> dict:
    """`model_cfg` with the architecture of `model.init`, which the command line may only confirm.

    The initial weights decide the architecture (and dropout, init range) unless a key was
    chosen by `overrides` (`model=base`, `model.num_layers=4`); a chosen value that
    contradicts the weights is an error naming both.
    """
    init = model_cfg.get("init")
    source = checkpoint_model_config(init) if init else None
    if source is None:
        return model_cfg
    chosen = chosen_model_keys(overrides)
    check_architecture(
        {k: v for k, v in model_cfg.items() if k in chosen},
        {k: v for k, v in source.items() if k in chosen},
        f"model.init={init}",
    )
    inherited = {
        k: v
        for k, v in source.items()
        if k in ARCHITECTURE_KEYS + TRAINING_KEYS and k not in chosen
    }
    if inherited and not chosen & set(ARCHITECTURE_KEYS):
        inherited["name"] = source.get("name") or Path(resolve_init(init)).name
    return {**model_cfg, **inherited}


def check_architecture(model_cfg: dict, source_cfg: dict, source: str) -> None:
    """Fail, naming both values, when the chosen `model=` contradicts the initial weights."""
    for key in ARCHITECTURE_KEYS:
        if key in source_cfg and model_cfg.get(key) != source_cfg[key]:
            raise ValueError(
                f"model.{key}={model_cfg.get(key)} but {source} has {key}={source_cfg[key]}; "
                f"choose the matching model= (or drop model.init)"
            )


def tokenizer_from_checkpoint(path: str | Path) -> Tokenizer | None:
    path = resolve_init(path)
    if path.is_dir():
        return load_hf_tokenizer(path)
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
