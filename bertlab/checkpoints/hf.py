"""Hugging Face BERT directories, both ways: config, weights and tokenizer in and out; Hub names.

A Hugging Face BERT directory holds `config.json`, `model.safetensors` or
`pytorch_model.bin` (possibly sharded, with an `.index.json`), and `tokenizer.json` or
`vocab.txt`. bertlab parameter names are the Hugging Face ones, so weights load through
a small name table for the older spellings; nothing is ever unpickled beyond tensors.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer

from bertlab.checkpoints import modernbert
from bertlab.checkpoints.io import load_weight_file
from bertlab.errors import CheckpointError
from bertlab.tasks.base import BertTaskModule
from bertlab.tasks.classify import ClassificationModule
from bertlab.tokenizer import SPECIAL_TOKENS, load_tokenizer, save_tokenizer

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
# Parameters that are views of others: transformers ties them again when loading.
TIED_KEYS = ("cls.predictions.decoder.weight",)


# ---- Hub --------------------------------------------------------------------------------


def download(repo_id: str, key: str | None = "model.init") -> Path:
    """Config, tokenizer and one weights file (safetensors preferred) of a Hub BERT.

    `key` is the setting that named it, for the error message (None: a command argument).
    """
    named = f"{key}={HUB_PREFIX}{repo_id}" if key else f"{HUB_PREFIX}{repo_id}"
    local = f"set {key}=DIR" if key else "pass DIR instead"
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        raise CheckpointError(
            f"{named} needs huggingface_hub: pip install 'bertlab[hub]'"
        ) from None
    try:
        directory = Path(
            snapshot_download(repo_id, allow_patterns=[*TOKENIZER_FILES, WEIGHT_FILES[0]])
        )
        if not (directory / WEIGHT_FILES[0]).exists():
            directory = Path(snapshot_download(repo_id, allow_patterns=[WEIGHT_FILES[1]]))
    except LocalEntryNotFoundError:  # offline (HF_HUB_OFFLINE or no network) and not cached
        raise CheckpointError(
            f"{named}: the Hugging Face Hub cannot be reached and {repo_id} is not in the local "
            f"cache; download it where there is a network (huggingface-cli download {repo_id} "
            f"--local-dir DIR) and {local}, a local Hugging Face BERT directory"
        ) from None
    except Exception as error:  # unknown repo, gated, ...: all end the same way for the user
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(
            f"{named}: could not fetch it from the Hugging Face Hub ({first_line}); "
            f"offline, download it elsewhere and {local}"
        ) from None
    return directory


# ---- reading ----------------------------------------------------------------------------


def read_hf_config(directory: str | Path) -> dict:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory}: no {CONFIG_FILE}; not a Hugging Face BERT directory")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    model_type = config.get("model_type", "bert")
    if modernbert.is_modernbert(config):
        return config
    if model_type != "bert":
        raise CheckpointError(
            f"{path}: model_type={model_type!r}; bertlab loads BERT (model_type 'bert')"
        )
    position_type = config.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise CheckpointError(
            f"{path}: position_embedding_type={position_type!r}; "
            "bertlab has absolute positions only"
        )
    return config


def model_section(config: dict, path: str | Path) -> dict:
    """The bertlab `model` keys described by a Hugging Face `config.json` body read from `path`."""
    if modernbert.is_modernbert(config):
        model = modernbert.model_config(config, str(path))
    else:
        model = {ours: config[theirs] for theirs, ours in CONFIG_NAMES.items() if theirs in config}
    if "hidden_act" in model:
        activation = model["hidden_act"]
        if activation not in ACTIVATION_NAMES:
            raise CheckpointError(
                f"{path}: hidden_act={activation!r} is not supported "
                f"(supported: {', '.join(ACTIVATION_NAMES)})"
            )
        model["hidden_act"] = ACTIVATION_NAMES[activation]
    return model


def hf_model_config(directory: str | Path) -> dict:
    """The bertlab `model` keys described by a directory's `config.json`."""
    return model_section(read_hf_config(directory), Path(directory) / CONFIG_FILE)


def load_hf_state_dict(directory: str | Path) -> dict[str, torch.Tensor]:
    """Weights of a Hugging Face BERT directory under bertlab's (= BertForPreTraining's) names."""
    directory = Path(directory)
    state = _read_weights(directory)
    config_path = directory / CONFIG_FILE
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    if modernbert.is_modernbert(config):  # its names differ: modernbert.py maps them
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
            return load_weight_file(directory / name)
        index = directory / f"{name}.index.json"
        if index.is_file():  # sharded: the index maps each tensor to its shard
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return {
                k: v for shard in shards for k, v in load_weight_file(directory / shard).items()
            }
    raise CheckpointError(
        f"{directory}: no {' or '.join(WEIGHT_FILES)}; not a Hugging Face BERT directory"
    )


def load_hf_tokenizer(directory: str | Path) -> Tokenizer:
    """tokenizer.json, else vocab.txt cased or not as `tokenizer_config.json` says."""
    directory = Path(directory)
    lowercase = None
    settings = directory / "tokenizer_config.json"
    if settings.is_file():
        lowercase = json.loads(settings.read_text(encoding="utf-8")).get("do_lower_case")
    return load_tokenizer(directory, lowercase=lowercase)


# ---- writing ----------------------------------------------------------------------------


def hf_config_from_model(model: dict, vocab_size: int) -> dict:
    """A Hugging Face `config.json` body for a bertlab `model` section (no head-specific keys)."""
    ours_to_theirs = {ours: theirs for theirs, ours in CONFIG_NAMES.items()}
    config = {"model_type": "bert", "position_embedding_type": "absolute", "pad_token_id": 0}
    config |= {ours_to_theirs[k]: v for k, v in model.items() if k in ours_to_theirs}
    config["vocab_size"] = vocab_size
    return config


def hf_architecture(module: BertTaskModule) -> str:
    return type(module.model).__name__  # bertlab's heads carry transformers' class names


def hf_config(module: BertTaskModule) -> dict:
    """config.json for transformers: the architecture, and the labels of a classifier."""
    # From the built network's config: the hyperparameters may leave keys at their defaults.
    bert_config = module.model.config
    config = hf_config_from_model(dataclasses.asdict(bert_config), bert_config.vocab_size)
    config |= {"architectures": [hf_architecture(module)], "tie_word_embeddings": True}
    if isinstance(module, ClassificationModule):
        names = module.hparams.get("label_names") or [
            f"LABEL_{i}" for i in range(module.hparams.num_labels)
        ]
        config["id2label"] = dict(enumerate(names))
        config["label2id"] = {name: i for i, name in enumerate(names)}
        regression = module.hparams.regression
        config["problem_type"] = "regression" if regression else "single_label_classification"
    return config


def write_config(module: BertTaskModule, out: Path) -> None:
    (out / CONFIG_FILE).write_text(json.dumps(hf_config(module), indent=2) + "\n")


def write_tokenizer(tokenizer: Tokenizer, out: Path, max_length: int) -> None:
    """tokenizer.json + vocab.txt, and tokenizer_config.json: AutoTokenizer picks BertTokenizer."""
    save_tokenizer(tokenizer, out)
    pad, unk, cls, sep, mask = SPECIAL_TOKENS
    settings = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": lowercases(tokenizer),
        "model_max_length": max_length,
        "pad_token": pad,
        "unk_token": unk,
        "cls_token": cls,
        "sep_token": sep,
        "mask_token": mask,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(settings, indent=2) + "\n")


def lowercases(tokenizer: Tokenizer) -> bool:
    normalizer = json.loads(tokenizer.to_str()).get("normalizer") or {}
    return bool(normalizer.get("lowercase", False))


def write_weights(module: BertTaskModule, out: Path) -> Path:
    """`model.safetensors` under transformers' names (tied copies left out)."""
    weights = {
        key: value.detach().contiguous()
        for key, value in module.model.state_dict().items()
        if key not in TIED_KEYS
    }
    save_file(weights, str(out / WEIGHT_FILES[0]), metadata={"format": "pt"})
    return out / WEIGHT_FILES[0]
