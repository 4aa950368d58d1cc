"""Hugging Face BERT directories: weights and config in, config out, Hub names.

A Hugging Face BERT directory holds `config.json`, `model.safetensors` or
`pytorch_model.bin` (possibly sharded, with an `.index.json`), and `tokenizer.json` or
`vocab.txt`. bertlab parameter names are the Hugging Face ones, so weights load through
a small name table for the older spellings; nothing is ever unpickled beyond tensors.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
from tokenizers import Tokenizer

from bertlab import modernbert

HUB_PREFIX = "hf:"
CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = (
    "config.json",
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
)

# config.json key -> bertlab `model.*` key
CONFIG_NAMES = {
    "num_hidden_layers": "num_layers",
    "hidden_size": "hidden_size",
    "num_attention_heads": "num_heads",
    "intermediate_size": "intermediate_size",
    "vocab_size": "vocab_size",
    "max_position_embeddings": "max_position_embeddings",
    "type_vocab_size": "type_vocab_size",
    "layer_norm_eps": "layer_norm_eps",
    "hidden_act": "hidden_act",
    "hidden_dropout_prob": "hidden_dropout",
    "attention_probs_dropout_prob": "attention_dropout",
    "initializer_range": "initializer_range",
}
# transformers activation names -> the bertlab one computing the same function
ACTIVATION_NAMES = {
    "gelu": "gelu",
    "gelu_python": "gelu",
    "relu": "relu",
    "gelu_new": "gelu_new",
    "gelu_pytorch_tanh": "gelu_new",
}
# Older checkpoints (TF-converted, BertModel saves) spell names differently.
LEGACY_SUFFIXES = {".gamma": ".weight", ".beta": ".bias"}
ENCODER_PREFIXES = ("embeddings.", "encoder.", "pooler.")
# Buffers and aliases transformers saves that carry no weights of their own.
REDUNDANT_KEYS = ("bert.embeddings.position_ids", "cls.predictions.decoder.bias")


def is_hub_name(init: str | Path) -> bool:
    return str(init).startswith(HUB_PREFIX)


def resolve_init(init: str | Path) -> Path:
    """`hf:NAME` -> the downloaded (or cached) Hub snapshot; anything else unchanged."""
    if is_hub_name(init):
        return download(str(init).removeprefix(HUB_PREFIX))
    return Path(init)


@functools.lru_cache(maxsize=8)
def download(repo_id: str) -> Path:
    """Config, tokenizer and one weights file (safetensors preferred) of a Hub BERT."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ValueError(
            f"model.init=hf:{repo_id} needs huggingface_hub: pip install 'bertlab[hub]'"
        ) from None
    try:
        directory = Path(
            snapshot_download(repo_id, allow_patterns=[*TOKENIZER_FILES, WEIGHT_FILES[0]])
        )
        if not (directory / WEIGHT_FILES[0]).exists():
            directory = Path(snapshot_download(repo_id, allow_patterns=[WEIGHT_FILES[1]]))
    except Exception as error:  # offline, unknown repo, gated: all end the same way for the user
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"model.init=hf:{repo_id}: could not fetch it from the Hugging Face Hub "
            f"({first_line}); offline, download it elsewhere and set model.init=DIR"
        ) from None
    return directory


# ---- config ---------------------------------------------------------------------------


def read_hf_config(directory: str | Path) -> dict:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no {CONFIG_FILE}; not a Hugging Face BERT directory")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    model_type = config.get("model_type", "bert")
    if modernbert.is_modernbert(config):
        return config
    if model_type != "bert":
        raise ValueError(
            f"{path}: model_type={model_type!r}; bertlab loads BERT (model_type 'bert')"
        )
    position_type = config.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ValueError(
            f"{path}: position_embedding_type={position_type!r}; bertlab has absolute positions only"
        )
    return config


def hf_model_config(directory: str | Path) -> dict:
    """The bertlab `model` keys described by a Hugging Face `config.json`."""
    config = read_hf_config(directory)
    if modernbert.is_modernbert(config):
        model = modernbert.model_config(config, str(Path(directory) / CONFIG_FILE))
    else:
        model = {ours: config[theirs] for theirs, ours in CONFIG_NAMES.items() if theirs in config}
    if "hidden_act" in model:
        activation = model["hidden_act"]
        if activation not in ACTIVATION_NAMES:
            raise ValueError(
                f"{Path(directory) / CONFIG_FILE}: hidden_act={activation!r} is not supported "
                f"(supported: {', '.join(ACTIVATION_NAMES)})"
            )
        model["hidden_act"] = ACTIVATION_NAMES[activation]
    return model


def hf_config_from_model(model: dict, vocab_size: int) -> dict:
    """A Hugging Face `config.json` body for a bertlab `model` section (no head-specific keys)."""
    ours_to_theirs = {ours: theirs for theirs, ours in CONFIG_NAMES.items()}
    config = {"model_type": "bert", "position_embedding_type": "absolute", "pad_token_id": 0}
    config |= {ours_to_theirs[k]: v for k, v in model.items() if k in ours_to_theirs}
    config["vocab_size"] = vocab_size
    return config


# ---- weights --------------------------------------------------------------------------


def load_hf_state_dict(directory: str | Path) -> dict[str, torch.Tensor]:
    """Weights of a Hugging Face BERT directory under bertlab's (= BertForPreTraining's) names."""
    directory = Path(directory)
    state = _read_weights(directory)
    config_path = directory / CONFIG_FILE
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    if modernbert.is_modernbert(config):  # its names differ: bertlab/modernbert.py maps them
        return modernbert.bertlab_state_dict(state, config)
    return {
        standard_name(key): value
        for key, value in state.items()
        if standard_name(key) not in REDUNDANT_KEYS
    }


def standard_name(key: str) -> str:
    """`LayerNorm.gamma` -> `LayerNorm.weight`; BertModel's `encoder.*` -> `bert.encoder.*`."""
    for old, new in LEGACY_SUFFIXES.items():
        if key.endswith(old):
            key = key.removesuffix(old) + new
    if key.startswith(ENCODER_PREFIXES):
        key = "bert." + key
    return key


def _read_weights(directory: Path) -> dict[str, torch.Tensor]:
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return _read_weight_file(directory / name)
        index = directory / f"{name}.index.json"
        if index.is_file():  # sharded: the index maps each tensor to its shard
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return {
                k: v for shard in shards for k, v in _read_weight_file(directory / shard).items()
            }
    raise FileNotFoundError(
        f"{directory}: no {' or '.join(WEIGHT_FILES)}; not a Hugging Face BERT directory"
    )


def _read_weight_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    from bertlab.checkpoint import load_checkpoint  # weights_only: a .bin never runs code

    return load_checkpoint(path)


# ---- tokenizer ------------------------------------------------------------------------


def load_hf_tokenizer(directory: str | Path) -> Tokenizer:
    """tokenizer.json, else vocab.txt cased or not as `tokenizer_config.json` says."""
    from bertlab.tokenizer import load_tokenizer

    directory = Path(directory)
    lowercase = None
    settings = directory / "tokenizer_config.json"
    if settings.is_file():
        lowercase = json.loads(settings.read_text(encoding="utf-8")).get("do_lower_case")
    return load_tokenizer(directory, lowercase=lowercase)
