"""A bertlab checkpoint as a Hugging Face directory, ONNX or TorchScript (`bertlab-export`).

Every export also writes `config.json` (with `id2label` and `label2id` for classification)
and the tokenizer. ONNX and TorchScript models take `input_ids`, `token_type_ids`,
`attention_mask` (int64, batch x sequence, both axes dynamic) and return `logits`
(classification), `score` (regression) or `start_logits` + `end_logits` (QA).
`quantize=int8` (ONNX only) stores the weights of every matrix product as int8 and
quantizes activations at run time (ONNX Runtime's dynamic quantization).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import warnings
from pathlib import Path

import torch
from tokenizers import Tokenizer
from torch import nn

from bertlab.checkpoints import modernbert
from bertlab.checkpoints.hf import (
    CONFIG_FILE,
    WEIGHT_FILES,
    write_config,
    write_tokenizer,
    write_weights,
)
from bertlab.checkpoints.restore import load_module
from bertlab.errors import CheckpointError, ConfigError, UserError
from bertlab.model import BertConfig, BertForSequenceClassification, join_projections
from bertlab.tasks.base import BertTaskModule
from bertlab.tasks.classify import ClassificationModule
from bertlab.tasks.qa import QuestionAnsweringModule

FORMATS = ("hf", "onnx", "torchscript")
QUANTIZATIONS = ("int8",)
INPUT_NAMES = ["input_ids", "token_type_ids", "attention_mask"]
DEFAULT_OPSET = 17


class ServingModel(nn.Module):
    """The task network with the deployed inputs and outputs (regression: scores (B,)).

    The encoder always applies the padding mask: a traced graph must not keep the
    shortcut for unpadded batches (it branches on tensor values). Query, key and value are
    joined first (as the torch inference path runs them), so every export holds one (H, 3H)
    weight, which int8 quantization then stores as int8 too, whoever loaded the module.
    """

    def __init__(self, module: BertTaskModule):
        super().__init__()
        self.model = join_projections(module.model)
        self.model.bert.always_mask_keys = True
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
    raise CheckpointError(
        f"{type(module).__name__} checkpoint: format=onnx and format=torchscript export "
        "classification, regression and question answering checkpoints (format=hf exports any)"
    )


def example_inputs(config: BertConfig) -> tuple[torch.Tensor, ...]:
    """A padded batch of two, so the traced graph keeps the padding mask."""
    length = min(16, config.max_position_embeddings)
    input_ids = torch.randint(0, config.vocab_size, (2, length))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, length // 2 :] = 0
    return input_ids, torch.zeros_like(input_ids), attention_mask


def export_onnx(module: BertTaskModule, out: Path, opset: int = DEFAULT_OPSET) -> Path:
    outputs = output_axes(module)
    serving = ServingModel(module).eval()
    dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES} | outputs
    path = out / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and legacy-exporter notices
        # The TorchScript-based exporter: the torch.export one needs onnxscript, which the
        # `onnx` extra does not install.
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


def export_torchscript(module: BertTaskModule, out: Path) -> Path:
    output_axes(module)  # refuses pretraining checkpoints
    serving = ServingModel(module).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notices
        traced = torch.jit.trace(serving, example_inputs(module.model.config), check_trace=False)
    path = out / "model.pt"
    torch.jit.save(traced, str(path))
    return path


def export(
    checkpoint: str | Path,
    format: str,
    out: str | Path,
    opset: int = DEFAULT_OPSET,
    quantize: str | None = None,
) -> Path:
    """Write `checkpoint` as `format` into `out`; returns the model file."""
    if format not in FORMATS:
        raise ConfigError(f"format={format}: choose one of {', '.join(FORMATS)}")
    check_quantize(format, quantize)
    module, tokenizer = load_module(checkpoint)
    return export_module(module, tokenizer, str(checkpoint), format, Path(out), opset, quantize)


def check_quantize(format: str, quantize: str | None) -> None:
    if quantize is None:
        return
    if quantize not in QUANTIZATIONS:
        raise ConfigError(
            f"quantize={quantize}: choose {', '.join(QUANTIZATIONS)} (or leave it out)"
        )
    if format != "onnx":
        raise ConfigError(f"quantize={quantize}: only format=onnx quantizes")


def export_module(
    module: BertTaskModule,
    tokenizer: Tokenizer,
    source: str,
    format: str,
    out: Path,
    opset: int = DEFAULT_OPSET,
    quantize: str | None = None,
) -> Path:
    """`export` of a loaded task module; `source` names it in errors."""
    out.mkdir(parents=True, exist_ok=True)
    config = module.model.config
    unrepresentable = modernbert.hf_representable(dataclasses.asdict(config))
    if format == "hf":
        if unrepresentable:  # bertlab's own format (the .ckpt) is the one that holds it
            raise CheckpointError(
                f"{source}: format=hf: {unrepresentable}; keep the .ckpt (bertlab's own "
                "format, loadable with model.init), or export format=onnx / torchscript"
            )
        path = write_hf_weights(module, tokenizer, out)
    elif format == "onnx":
        path = export_onnx(module, out, opset)
        if quantize == "int8":
            quantize_int8(path, path)
    else:
        path = export_torchscript(module, out)
    if not unrepresentable:
        write_hf_config(module, tokenizer, out)
    write_tokenizer(tokenizer, out, config.max_position_embeddings)
    return path


def require_onnxruntime() -> None:
    """A one-line UserError instead of an ImportError when onnxruntime is not installed."""
    if importlib.util.find_spec("onnxruntime") is None:
        raise UserError(
            "onnxruntime is not installed: pip install 'bertlab[onnx]' (or onnxruntime)"
        )


def quantize_int8(source: Path, target: Path) -> None:
    """ONNX Runtime's dynamic quantization: int8 weights for every MatMul and Gemm, activations
    quantized per batch at run time (uint8), computed in integers (VNNI where the CPU has it).

    The embeddings, LayerNorms, softmax and GELU stay float32.
    """
    require_onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pre-processing advice, printed for every model
        quantize_dynamic(
            source, target, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"]
        )


def write_hf_weights(module: BertTaskModule, tokenizer: Tokenizer, out: Path) -> Path:
    """`model.safetensors` under transformers' BERT or ModernBERT names, whichever fits."""
    if not modernbert.is_modernbert_architecture(module.model.config):
        return write_weights(module, out)
    directory = modernbert.write_hf_directory(module.model, out, tokenizer, **_labels(module))
    return directory / WEIGHT_FILES[0]


def write_hf_config(module: BertTaskModule, tokenizer: Tokenizer, out: Path) -> None:
    if not modernbert.is_modernbert_architecture(module.model.config):
        write_config(module, out)
        return
    config = modernbert.hf_config(module.model, tokenizer, **_labels(module))
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


def _labels(module: BertTaskModule) -> dict:
    if not isinstance(module.model, BertForSequenceClassification):
        return {}
    names = module.hparams.get("label_names") or [
        f"LABEL_{i}" for i in range(module.hparams.num_labels)
    ]
    return {"label_names": list(names), "regression": bool(module.hparams.get("regression"))}
