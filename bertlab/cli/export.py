"""`bertlab-export`: a bertlab checkpoint as a Hugging Face directory, ONNX or TorchScript.

bertlab-export CKPT format=hf out=DIR            # transformers' from_pretrained loads DIR
bertlab-export CKPT format=onnx out=DIR          # DIR/model.onnx (classification, regression, QA)
bertlab-export CKPT format=torchscript out=DIR   # DIR/model.pt   (classification, regression, QA)

Settings are `key=value` as in bertlab-train: `format` and `out` (required), `opset`
(ONNX opset, default 17). Every export also writes `config.json` (with `id2label` and
`label2id` for classification) and the tokenizer (`tokenizer.json`, `vocab.txt`,
`tokenizer_config.json`). ONNX and TorchScript models take `input_ids`,
`token_type_ids`, `attention_mask` (int64, batch x sequence, both axes dynamic, sequence
up to max_position_embeddings) and return `logits` (classification), `score`
(regression) or `start_logits` + `end_logits` (QA).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from unittest import mock

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer
from torch import nn

from bertlab import model as bert_model
from bertlab.cli.errors import exit_on_user_errors
from bertlab.hf import hf_config_from_model
from bertlab.inference import load_module
from bertlab.tasks.base import BertTaskModule
from bertlab.tasks.classify import ClassificationModule
from bertlab.tasks.qa import QuestionAnsweringModule
from bertlab.tokenizer import SPECIAL_TOKENS, save_tokenizer

FORMATS = ("hf", "onnx", "torchscript")
INPUT_NAMES = ["input_ids", "token_type_ids", "attention_mask"]
DEFAULT_OPSET = 17
# Parameters that are views of others: transformers ties them again when loading.
TIED_KEYS = ("cls.predictions.decoder.weight",)


# ---- Hugging Face directory -----------------------------------------------------------


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
    (out / "config.json").write_text(json.dumps(hf_config(module), indent=2) + "\n")


def write_tokenizer(tokenizer: Tokenizer, out: Path, max_length: int) -> None:
    """tokenizer.json + vocab.txt, and tokenizer_config.json so AutoTokenizer picks BertTokenizer."""
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


def export_hf(module: BertTaskModule, tokenizer: Tokenizer, out: Path) -> Path:
    weights = {
        key: value.detach().contiguous()
        for key, value in module.model.state_dict().items()
        if key not in TIED_KEYS
    }
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out / "model.safetensors"


# ---- ONNX and TorchScript -------------------------------------------------------------


class ServingModel(nn.Module):
    """The task network with the deployed inputs and outputs (regression: scores (B,))."""

    def __init__(self, module: BertTaskModule):
        super().__init__()
        self.model = module.model
        self.regression = bool(module.hparams.get("regression", False))

    def forward(self, input_ids, token_type_ids, attention_mask):
        outputs = self.model(input_ids, token_type_ids, attention_mask)
        return outputs.squeeze(-1) if self.regression else outputs


def output_axes(module: BertTaskModule) -> dict[str, dict[int, str]]:
    """Output names and their dynamic axes."""
    if isinstance(module, QuestionAnsweringModule):
        per_token = {0: "batch", 1: "sequence"}
        return {"start_logits": per_token, "end_logits": per_token}
    if isinstance(module, ClassificationModule):
        return {"score" if module.hparams.regression else "logits": {0: "batch"}}
    raise ValueError(
        f"{type(module).__name__} checkpoint: format=onnx and format=torchscript export "
        "classification, regression and question answering checkpoints (format=hf exports any)"
    )


def example_inputs(config: bert_model.BertConfig) -> tuple[torch.Tensor, ...]:
    """A padded batch of two, so the traced graph keeps the padding mask."""
    length = min(16, config.max_position_embeddings)
    input_ids = torch.randint(0, config.vocab_size, (2, length))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, length // 2 :] = 0
    return input_ids, torch.zeros_like(input_ids), attention_mask


def _key_mask_always(attention_mask: torch.Tensor) -> torch.Tensor:
    return attention_mask.bool()[:, None, None, :]


def traceable(function):
    """Run `function` with the model's unpadded-batch shortcut off.

    `model._key_mask` skips the mask when nothing is padded, a branch on tensor values
    that tracing would freeze into the graph; always applying the mask is exact for
    unpadded inputs too.
    """

    def wrapper(*args, **kwargs):
        with (
            mock.patch.object(bert_model, "_key_mask", _key_mask_always),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")  # tracer and legacy-exporter notices
            return function(*args, **kwargs)

    return wrapper


@traceable
def export_onnx(module: BertTaskModule, out: Path, opset: int = DEFAULT_OPSET) -> Path:
    outputs = output_axes(module)
    serving = ServingModel(module).eval()
    dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES} | outputs
    path = out / "model.onnx"
    # The TorchScript-based exporter: the torch.export one needs onnxscript, not in the `onnx` extra.
    torch.onnx.export(
        serving,
        example_inputs(module.model.config),
        str(path),
        input_names=INPUT_NAMES,
        output_names=list(outputs),
        dynamic_axes=dynamic_axes,
        opset_version=opset,
        dynamo=False,
    )
    return path


@traceable
def export_torchscript(module: BertTaskModule, out: Path) -> Path:
    output_axes(module)  # refuses pretraining checkpoints
    serving = ServingModel(module).eval()
    with torch.no_grad():
        traced = torch.jit.trace(serving, example_inputs(module.model.config), check_trace=False)
    path = out / "model.pt"
    torch.jit.save(traced, str(path))
    return path


# ---- command --------------------------------------------------------------------------


def export(
    checkpoint: str | Path, format: str, out: str | Path, opset: int = DEFAULT_OPSET
) -> Path:
    """Write `checkpoint` as `format` into `out`; returns the model file."""
    if format not in FORMATS:
        raise ValueError(f"format={format}: choose one of {', '.join(FORMATS)}")
    module, tokenizer = load_module(checkpoint)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if format == "hf":
        path = export_hf(module, tokenizer, out)
    elif format == "onnx":
        path = export_onnx(module, out, opset)
    else:
        path = export_torchscript(module, out)
    write_config(module, out)
    write_tokenizer(tokenizer, out, module.model.config.max_position_embeddings)
    return path


def parse_settings(arguments: Sequence[str]) -> tuple[str, dict]:
    """`CKPT key=value ...` -> (CKPT, {key: value}); unknown or repeated keys are errors."""
    allowed = {"format", "out", "opset"}
    positional = [a for a in arguments if "=" not in a]
    if len(positional) != 1:
        raise ValueError("usage: bertlab-export CKPT format=hf|onnx|torchscript out=DIR [opset=N]")
    settings = {}
    for argument in arguments:
        if "=" not in argument:
            continue
        key, value = argument.split("=", 1)
        if key not in allowed:
            raise ValueError(
                f"{key}={value}: unknown setting; allowed: {', '.join(sorted(allowed))}"
            )
        settings[key] = value
    for key in ("format", "out"):
        if key not in settings:
            raise ValueError(f"missing {key}=...; usage: bertlab-export CKPT format=hf out=DIR")
    if "opset" in settings:
        if not settings["opset"].isdigit():
            raise ValueError(f"opset={settings['opset']}: must be an integer")
        settings["opset"] = int(settings["opset"])
    return positional[0], settings


@exit_on_user_errors
def main(argv: Sequence[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0] in ("-h", "--help"):
        print(__doc__)
        return
    checkpoint, settings = parse_settings(arguments)
    path = export(checkpoint, **settings)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
