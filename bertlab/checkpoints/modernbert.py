"""Hugging Face ModernBERT directories: config.json and weight names, both ways.

bertlab builds ModernBERT from `bertlab/model.py`'s switches (pre-LN, GeGLU, no biases,
rotary positions, local/global attention, final LayerNorm, ModernBERT's heads); only the
names differ from transformers' `ModernBertModel` / `ModernBertFor*`, so this module is a
config mapping and a name table:

| transformers                         | bertlab                                                  |
|--------------------------------------|----------------------------------------------------------|
| model.embeddings.tok_embeddings      | bert.embeddings.word_embeddings                          |
| model.embeddings.norm                | bert.embeddings.LayerNorm                                |
| model.layers.i.attn_norm             | bert.encoder.layer.i.attention.LayerNorm                 |
| model.layers.i.attn.Wqkv (3H x H)    | ....attention.self.query / key / value (H x H each)      |
| model.layers.i.attn.Wo               | ....attention.output.dense                               |
| model.layers.i.mlp_norm              | ....intermediate.LayerNorm                               |
| model.layers.i.mlp.Wi / mlp.Wo       | ....intermediate.dense / output.dense                    |
| model.final_norm                     | bert.encoder.LayerNorm                                   |
| head (dense, norm)                   | cls.predictions.transform, bert.pooler or qa_transform   |
| decoder.weight / decoder.bias        | cls.predictions.decoder.weight (untied) / .bias          |
| classifier                           | classifier (sequence classification), qa_outputs (spans) |

transformers' heads share the name `head`, so `from_pretrained` of a classifier from a
masked-LM checkpoint starts from the MLM head's dense + norm; loading gives that tensor
under all three bertlab names to do the same.

This module imports neither transformers nor `bertlab.hf` (which dispatches here).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer
from torch import nn

from bertlab.errors import CheckpointError
from bertlab.model import (
    BertConfig,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
)

MODEL_TYPE = "modernbert"
# transformers' ModernBertConfig defaults: save_pretrained leaves out keys at their default.
DEFAULTS = {
    "vocab_size": 50368,
    "hidden_size": 768,
    "intermediate_size": 1152,
    "num_hidden_layers": 22,
    "num_attention_heads": 12,
    "hidden_activation": "gelu",
    "max_position_embeddings": 8192,
    "initializer_range": 0.02,
    "norm_eps": 1e-5,
    "norm_bias": False,
    "attention_bias": False,
    "mlp_bias": False,
    "classifier_bias": False,
    "attention_dropout": 0.0,
    "mlp_dropout": 0.0,
    "global_attn_every_n_layers": 3,
    "local_attention": 128,
    "global_rope_theta": 160000.0,
    "local_rope_theta": 10000.0,
    "classifier_pooling": "cls",
    "classifier_activation": "gelu",
    "tie_word_embeddings": True,
}
BIAS_KEYS = ("norm_bias", "attention_bias", "mlp_bias", "classifier_bias")
# The switches that make bertlab's encoder a ModernBERT; `hf_representable` checks them.
MODERNBERT_SWITCHES = {
    "layer_norm_position": "pre",
    "feed_forward": "glu",
    "position_embedding_type": "rotary",
    "type_vocab_size": 0,
    "embedding_layer_norm": True,
    "final_layer_norm": True,
}
BERT_SWITCHES = {
    "layer_norm_position": "post",
    "feed_forward": "mlp",
    "position_embedding_type": "absolute",
    "local_attention": None,
    "embedding_layer_norm": True,
    "final_layer_norm": False,
    "bias": True,
    "pooling": "pooler",
}
# bertlab activation -> a transformers name computing the same function
ACTIVATIONS_OUT = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_new"}

# transformers architecture -> (bertlab class, where `classifier` goes)
ARCHITECTURES = {
    "ModernBertForMaskedLM": BertForPreTraining,
    "ModernBertForSequenceClassification": BertForSequenceClassification,
    "ModernBertForQuestionAnswering": BertForQuestionAnswering,
}
HEAD_NAMES = ("cls.predictions.transform", "bert.pooler", "qa_transform")

# One encoder layer's names: transformers suffix -> bertlab suffix (q, k, v handled apart).
LAYER_NAMES = {
    "attn_norm": "attention.LayerNorm",
    "attn.Wo": "attention.output.dense",
    "mlp_norm": "intermediate.LayerNorm",
    "mlp.Wi": "intermediate.dense",
    "mlp.Wo": "output.dense",
}
ENCODER_NAMES = {
    "model.embeddings.tok_embeddings": "bert.embeddings.word_embeddings",
    "model.embeddings.norm": "bert.embeddings.LayerNorm",
    "model.final_norm": "bert.encoder.LayerNorm",
}
LAYER_KEY = re.compile(r"model\.layers\.(\d+)\.(.+)\.(weight|bias)")


def is_modernbert(config: dict) -> bool:
    return config.get("model_type") == MODEL_TYPE


# ---- config.json -> model keys ---------------------------------------------------------


def model_config(config: dict, where: str) -> dict:
    """The bertlab `model` keys of a ModernBERT `config.json` (`where` names it in errors).

    `hidden_act` keeps transformers' activation name; `bertlab.hf` maps it as for BERT.
    """
    config = {**DEFAULTS, **config}
    biases = {key: config[key] for key in BIAS_KEYS}
    if len(set(biases.values())) > 1:
        raise CheckpointError(
            f"{where}: {biases}: bertlab has one switch for biases (model.bias); these differ"
        )
    if config["classifier_activation"] != config["hidden_activation"]:
        raise CheckpointError(
            f"{where}: classifier_activation={config['classifier_activation']!r} differs from "
            f"hidden_activation={config['hidden_activation']!r}; bertlab's heads use hidden_act"
        )
    every_n = _global_every_n(config, where)
    global_theta, local_theta = _rope_thetas(config, where)
    return {
        "num_layers": config["num_hidden_layers"],
        "hidden_size": config["hidden_size"],
        "num_heads": config["num_attention_heads"],
        "intermediate_size": config["intermediate_size"],
        "vocab_size": config["vocab_size"],
        "max_position_embeddings": config["max_position_embeddings"],
        "layer_norm_eps": config["norm_eps"],
        "hidden_act": config["hidden_activation"],
        "hidden_dropout": config["mlp_dropout"],
        "attention_dropout": config["attention_dropout"],
        "initializer_range": config["initializer_range"],
        **MODERNBERT_SWITCHES,
        "bias": biases["norm_bias"],
        "global_rope_theta": global_theta,
        "local_attention": None if every_n == 1 else config["local_attention"],
        "global_attn_every_n_layers": every_n,
        "local_rope_theta": local_theta,
        "tie_word_embeddings": config["tie_word_embeddings"],
        "pooling": config["classifier_pooling"],
    }


def _global_every_n(config: dict, where: str) -> int:
    """n such that layer i is global when i % n == 0 (1: every layer global)."""
    layer_types = config.get("layer_types")
    if not layer_types:
        return int(config["global_attn_every_n_layers"])
    global_layers = [i for i, kind in enumerate(layer_types) if kind == "full_attention"]
    n = global_layers[1] if len(global_layers) > 1 else len(layer_types)
    n = max(n, 1)
    expected = ["sliding_attention" if i % n else "full_attention" for i in range(len(layer_types))]
    if layer_types != expected:
        raise CheckpointError(
            f"{where}: layer_types={layer_types}; bertlab makes every n-th layer global "
            "(model.global_attn_every_n_layers), starting with the first"
        )
    return n


def _rope_thetas(config: dict, where: str) -> tuple[float, float]:
    parameters = config.get("rope_parameters") or {}
    thetas = []
    for kind, legacy in (
        ("full_attention", "global_rope_theta"),
        ("sliding_attention", "local_rope_theta"),
    ):
        settings = parameters.get(kind) or {}
        if settings.get("rope_type", "default") != "default":
            raise CheckpointError(
                f"{where}: rope_parameters.{kind}.rope_type={settings['rope_type']!r}; "
                "bertlab has the default rotary positions only"
            )
        thetas.append(float(settings.get("rope_theta", config[legacy])))
    return thetas[0], thetas[1]


# ---- weights: transformers -> bertlab --------------------------------------------------


def bertlab_state_dict(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """A ModernBERT state dict under bertlab's names (see the table above)."""
    architecture = (config.get("architectures") or ["ModernBertForMaskedLM"])[0]
    classifier = "qa_outputs" if architecture == "ModernBertForQuestionAnswering" else "classifier"
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(("embeddings.", "layers.", "final_norm.")):  # a bare ModernBertModel
            key = "model." + key
        for name, ours in _bertlab_names(key, value, classifier):
            renamed[name] = ours
    # transformers saves a tied decoder once, as the word embeddings; bertlab lists both names.
    word_embeddings = renamed.get("bert.embeddings.word_embeddings.weight")
    if config.get("tie_word_embeddings", True) and word_embeddings is not None:
        renamed.setdefault("cls.predictions.decoder.weight", word_embeddings)
    return renamed


def _bertlab_names(key: str, value: torch.Tensor, classifier: str):
    """(bertlab name, tensor) pairs for one transformers tensor."""
    layer = LAYER_KEY.fullmatch(key)
    if layer:
        yield from _layer_names(*layer.groups(), value)
        return
    stem, _, kind = key.rpartition(".")
    if stem in ENCODER_NAMES:
        yield f"{ENCODER_NAMES[stem]}.{kind}", value
    elif stem in ("head.dense", "head.norm"):
        part = "dense" if stem == "head.dense" else "LayerNorm"
        for head in HEAD_NAMES:
            yield f"{head}.{part}.{kind}", value
    elif key in ("decoder.bias", "decoder.weight"):
        yield (
            {"decoder.bias": "cls.predictions.bias"}.get(key, "cls.predictions.decoder.weight"),
            value,
        )
    elif stem == "classifier":
        yield f"{classifier}.{kind}", value


def _layer_names(index: str, name: str, kind: str, value: torch.Tensor):
    """An encoder layer's tensor; the fused Q/K/V matrix becomes bertlab's three."""
    prefix = f"bert.encoder.layer.{index}."
    if name == "attn.Wqkv":
        for part, chunk in zip(("query", "key", "value"), value.chunk(3), strict=True):
            yield f"{prefix}attention.self.{part}.{kind}", chunk
    elif name in LAYER_NAMES:
        yield f"{prefix}{LAYER_NAMES[name]}.{kind}", value


# ---- bertlab -> transformers -----------------------------------------------------------


def hf_representable(model_cfg: dict) -> str | None:
    """None when transformers' BERT or ModernBERT represents this `model` section, else why not."""
    config = BertConfig.from_dict(model_cfg)
    bert = _differences(config, BERT_SWITCHES)
    modern = _differences(config, MODERNBERT_SWITCHES)
    if config.pooling == "pooler":
        modern.append("model.pooling=cls or mean (is pooler)")
    if not bert or not modern:
        return None
    return (
        "neither transformers' BERT nor ModernBERT has this architecture; BERT needs "
        f"{', '.join(bert)}; ModernBERT needs {', '.join(modern)}"
    )


def is_modernbert_architecture(config: BertConfig) -> bool:
    """True when transformers' ModernBERT, not its BERT, is the class that represents `config`."""
    return bool(_differences(config, BERT_SWITCHES)) and hf_representable(vars(config)) is None


def _differences(config: BertConfig, wanted: dict) -> list[str]:
    return [
        f"model.{key}={_show(value)} (is {_show(getattr(config, key))})"
        for key, value in wanted.items()
        if getattr(config, key) != value
    ]


def _show(value) -> str:
    return (
        "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    )


def hf_config(
    model: nn.Module,
    tokenizer: Tokenizer | None = None,
    label_names: list[str] | None = None,
    regression: bool = False,
) -> dict:
    """A transformers ModernBERT `config.json` body for a bertlab network, a classifier's labels."""
    config: BertConfig = model.config
    reason = hf_representable(vars(config))
    if _differences(config, MODERNBERT_SWITCHES) or config.pooling == "pooler":
        raise CheckpointError(reason or "the model is a BERT: export it as model_type 'bert'")
    n = config.global_attn_every_n_layers
    layer_types = [
        "full_attention" if config.is_global(i) else "sliding_attention"
        for i in range(config.num_layers)
    ]
    architecture = next(name for name, cls in ARCHITECTURES.items() if isinstance(model, cls))
    body = {
        "architectures": [architecture],
        "model_type": MODEL_TYPE,
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "hidden_activation": ACTIVATIONS_OUT[config.hidden_act],
        "classifier_activation": ACTIVATIONS_OUT[config.hidden_act],
        "max_position_embeddings": config.max_position_embeddings,
        "initializer_range": config.initializer_range,
        "norm_eps": config.layer_norm_eps,
        **dict.fromkeys(BIAS_KEYS, config.bias),
        "decoder_bias": True,
        "attention_dropout": config.attention_dropout,
        "mlp_dropout": config.hidden_dropout,
        "embedding_dropout": config.hidden_dropout,
        "classifier_dropout": config.hidden_dropout,
        # All-global models still need a window value; the layer types make it unused.
        "local_attention": config.local_attention or 2 * config.max_position_embeddings,
        "layer_types": layer_types,
        "global_attn_every_n_layers": n,  # older transformers read these three
        "global_rope_theta": config.global_rope_theta,
        "local_rope_theta": config.local_rope_theta,
        "rope_parameters": {
            "full_attention": {"rope_type": "default", "rope_theta": config.global_rope_theta},
            "sliding_attention": {"rope_type": "default", "rope_theta": config.local_rope_theta},
        },
        "classifier_pooling": "cls" if config.pooling == "pooler" else config.pooling,
        "tie_word_embeddings": config.tie_word_embeddings,
    }
    if isinstance(model, BertForQuestionAnswering):
        body["num_labels"] = 2
    if isinstance(model, BertForSequenceClassification):
        names = label_names or [f"LABEL_{i}" for i in range(model.num_labels)]
        body["id2label"] = dict(enumerate(names))
        body["label2id"] = {name: i for i, name in enumerate(names)}
        body["problem_type"] = "regression" if regression else "single_label_classification"
    return body | _special_token_ids(tokenizer)


def _special_token_ids(tokenizer: Tokenizer | None) -> dict:
    """ModernBERT's config names its special tokens; its defaults are beyond a small vocabulary."""
    tokens = ("[PAD]", "[CLS]", "[SEP]")
    # Without a tokenizer: bertlab vocabularies begin [PAD] [UNK] [CLS] [SEP] [MASK].
    pad, cls, sep = [tokenizer.token_to_id(t) for t in tokens] if tokenizer else (0, 2, 3)
    return {
        "pad_token_id": pad,
        "cls_token_id": cls,
        "bos_token_id": cls,
        "sep_token_id": sep,
        "eos_token_id": sep,
    }


def hf_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A bertlab ModernBERT-style network's weights under transformers' names."""
    ours = {key: value.detach() for key, value in model.state_dict().items()}
    classifier = "qa_outputs" if isinstance(model, BertForQuestionAnswering) else "classifier"
    head = {
        BertForPreTraining: "cls.predictions.transform",
        BertForSequenceClassification: "bert.pooler",
        BertForQuestionAnswering: "qa_transform",
    }[type(model)]
    theirs: dict[str, torch.Tensor] = {}
    for stem, name in ENCODER_NAMES.items():
        _copy(ours, theirs, name, stem)
    for i in range(model.config.num_layers):
        prefix = f"bert.encoder.layer.{i}."
        for kind in ("weight", "bias"):
            parts = [
                ours.get(f"{prefix}attention.self.{p}.{kind}") for p in ("query", "key", "value")
            ]
            if parts[0] is not None:
                theirs[f"model.layers.{i}.attn.Wqkv.{kind}"] = torch.cat(parts)
        for name, ours_name in LAYER_NAMES.items():
            _copy(ours, theirs, prefix + ours_name, f"model.layers.{i}.{name}")
    _copy(ours, theirs, f"{head}.dense", "head.dense")
    _copy(ours, theirs, f"{head}.LayerNorm", "head.norm")
    if isinstance(model, BertForPreTraining):
        theirs["decoder.bias"] = ours["cls.predictions.bias"]
        if not model.config.tie_word_embeddings:  # tied: transformers ties it again
            theirs["decoder.weight"] = ours["cls.predictions.decoder.weight"]
    else:
        _copy(ours, theirs, classifier, "classifier")
    return {key: value.contiguous() for key, value in theirs.items()}


def _copy(ours: dict, theirs: dict, our_stem: str, their_stem: str) -> None:
    for kind in ("weight", "bias"):
        if f"{our_stem}.{kind}" in ours:
            theirs[f"{their_stem}.{kind}"] = ours[f"{our_stem}.{kind}"]


def write_hf_directory(
    model: nn.Module,
    out: str | Path,
    tokenizer: Tokenizer | None = None,
    label_names: list[str] | None = None,
    regression: bool = False,
) -> Path:
    """config.json + model.safetensors that transformers' ModernBertFor* loads, same outputs.

    `model` is a bertlab BertForPreTraining (-> ModernBertForMaskedLM; an NSP head, which
    ModernBERT lacks, is left out), BertForSequenceClassification or
    BertForQuestionAnswering built with ModernBERT's switches. The tokenizer files are
    the exporter's (`bertlab-export`); `tokenizer` here only names the special token ids.
    """
    config = hf_config(model, tokenizer, label_names, regression)  # raises before any write
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(hf_state_dict(model), str(out / "model.safetensors"), metadata={"format": "pt"})
    return out
