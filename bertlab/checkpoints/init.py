"""`model.init`, resolved once per run: where it is, what it is, and what it brings.

`resolve(spec)` turns what the user wrote (a bertlab `.ckpt`, a Hugging Face directory,
`hf:NAME`, a bare weights file) into a `ResolvedInit`: the local path, its kind, the
architecture it fixes, its hyperparameters, its tokenizer and, when first asked for, its
weights. Validation, the tokenizer, the model config and the weight loading all read this
one object, so a `.ckpt` is opened once (memory-mapped: weights are paged in when copied)
and a Hub name is looked up once.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tokenizers import Tokenizer
from torch import nn

from bertlab.checkpoints.hf import (
    HUB_PREFIX,
    download,
    hf_model_config,
    load_hf_state_dict,
    load_hf_tokenizer,
)
from bertlab.checkpoints.io import encoder_weights, load_checkpoint, load_weight_file
from bertlab.errors import CheckpointError, ConfigError
from bertlab.model import SWITCH_KEYS
from bertlab.tokenizer import TOKENIZER_FILE, VOCAB_FILE, load_tokenizer

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
    *SWITCH_KEYS,  # the switches since BERT (pre-LN, GeGLU, rotary, ...), modernbert.py
)
# Also taken from the initial weights' config unless chosen on the command line.
TRAINING_KEYS = ("hidden_dropout", "attention_dropout", "initializer_range")

CHECKPOINT = "checkpoint"  # a bertlab `.ckpt`: hyper_parameters, state_dict, tokenizer
HF_DIRECTORY = "hf"  # a Hugging Face BERT directory, local or a Hub snapshot
WEIGHTS = "weights"  # a bare state dict (`.safetensors`, `.bin`, `.pt`): weights only


@dataclass(eq=False)
class ResolvedInit:
    """What `model.init` (or a command's checkpoint argument) points at."""

    spec: str  # as written: a path or `hf:NAME`
    path: Path  # the local file or directory (a Hub snapshot for `hf:NAME`)
    kind: str  # CHECKPOINT, HF_DIRECTORY or WEIGHTS
    architecture: dict | None  # bertlab `model.*` keys it fixes (None: it says nothing)
    hyper_parameters: dict = field(default_factory=dict)  # a `.ckpt`'s, e.g. label_names
    # The file as loaded (a `.ckpt`, or a bare state dict); tensors memory-mapped.
    contents: dict | None = field(default=None, repr=False)

    @functools.cached_property
    def tokenizer(self) -> Tokenizer | None:
        """The tokenizer saved with the weights: in the `.ckpt`, the directory, or beside it."""
        if self.kind == HF_DIRECTORY:
            has_one = any((self.path / name).exists() for name in (TOKENIZER_FILE, VOCAB_FILE))
            return load_hf_tokenizer(self.path) if has_one else None
        stored = self.contents.get("tokenizer") if self.kind == CHECKPOINT else None
        if stored:
            return Tokenizer.from_str(stored)
        for name in (TOKENIZER_FILE, VOCAB_FILE):
            if (self.path.parent / name).exists():
                return load_tokenizer(self.path.parent / name)
        return None

    @functools.cached_property
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The network's weights under the standard BERT names, read on first use."""
        if self.kind == HF_DIRECTORY:
            return load_hf_state_dict(self.path)
        return encoder_weights(self.contents)

    @property
    def name(self) -> str:
        """A model name for logs and results: the one the checkpoint stored, else the file's."""
        return (self.architecture or {}).get("name") or self.path.name


def resolve(spec: str | Path, key: str | None = "model.init") -> ResolvedInit:
    """Find and open `spec`; errors name `key`, the setting that gave it (None: an argument)."""
    text = str(spec)
    if text.startswith(HUB_PREFIX):
        directory = download(text.removeprefix(HUB_PREFIX), key)
        return ResolvedInit(text, directory, HF_DIRECTORY, hf_model_config(directory))
    path = Path(text).expanduser()
    if not path.exists():
        if key is None:
            raise CheckpointError(f"{path}: checkpoint not found")
        raise ConfigError(
            f"{key}={text!r}: no such file or directory (a .ckpt or a Hugging Face dir)"
        )
    if path.is_dir():
        return ResolvedInit(text, path, HF_DIRECTORY, hf_model_config(path))
    if path.suffix == ".safetensors":
        return ResolvedInit(text, path, WEIGHTS, None, contents=load_weight_file(path))
    return _torch_file(text, path)


def _torch_file(spec: str, path: Path) -> ResolvedInit:
    """A Lightning checkpoint (it has `state_dict` or `hyper_parameters`) or a bare state dict."""
    loaded = load_checkpoint(path, mmap=True)
    if not isinstance(loaded, dict):
        raise CheckpointError(
            f"{path}: not a checkpoint (holds a {type(loaded).__name__}, not a dict of weights)"
        )
    if "state_dict" not in loaded and "hyper_parameters" not in loaded:
        return ResolvedInit(spec, path, WEIGHTS, None, contents=loaded)
    hyper_parameters = loaded.get("hyper_parameters") or {}
    if not isinstance(hyper_parameters, dict):
        raise CheckpointError(f"{path}: hyper_parameters is a {type(hyper_parameters).__name__}")
    architecture = hyper_parameters.get("model")
    return ResolvedInit(spec, path, CHECKPOINT, architecture, hyper_parameters, loaded)


# ---- the model section --------------------------------------------------------------------


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


def init_model_config(
    model_cfg: dict, init: ResolvedInit | None, overrides: Sequence[str] = ()
) -> dict:
    """`model_cfg` with the architecture of `model.init`, which the command line may only confirm.

    The initial weights decide the architecture (and dropout, init range) unless a key was
    chosen by `overrides` (`model=base`, `model.num_layers=4`); a chosen value that
    contradicts the weights is an error naming both.
    """
    source = init.architecture if init is not None else None
    if source is None:
        return model_cfg
    chosen = chosen_model_keys(overrides)
    check_architecture(
        {k: v for k, v in model_cfg.items() if k in chosen},
        {k: v for k, v in source.items() if k in chosen},
        f"model.init={init.spec}",
    )
    inherited = {
        k: v
        for k, v in source.items()
        if k in ARCHITECTURE_KEYS + TRAINING_KEYS and k not in chosen
    }
    if inherited and not chosen & set(ARCHITECTURE_KEYS):
        inherited["name"] = init.name
    return {**model_cfg, **inherited}


def check_architecture(model_cfg: dict, source_cfg: dict, source: str) -> None:
    """Fail, naming both values, when the chosen `model=` contradicts the initial weights."""
    for key in ARCHITECTURE_KEYS:
        if key in source_cfg and model_cfg.get(key) != source_cfg[key]:
            raise ConfigError(
                f"model.{key}={model_cfg.get(key)} but {source} has {key}={source_cfg[key]}; "
                f"choose the matching model= (or drop model.init)"
            )


# ---- the weights ----------------------------------------------------------------------------


def load_pretrained(model: nn.Module, init: ResolvedInit) -> dict[str, list[str]]:
    """Copy matching weights from `init` into `model` (names are the standard BERT ones).

    Heads that the source lacks (a new classifier) keep their initialisation; heads the
    target lacks (pretraining heads when fine-tuning) are skipped. Both lists are logged.
    """
    state, path = init.state_dict, init.path
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        k = mismatched[0]
        raise CheckpointError(
            f"{path}: {k} has shape {tuple(state[k].shape)}, the model expects "
            f"{tuple(own[k].shape)}; choose the model= that the checkpoint was trained with"
        )
    if not any(k.startswith("bert.") for k in matched):
        raise CheckpointError(
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
