"""`--runtime onnx`: an exported model run by ONNX Runtime on the CPU, as a `TaskModel`.

The source is a `bertlab-export format=onnx` directory (`model.onnx`, `config.json`, the
tokenizer) or a bertlab `.ckpt`, exported once into the cache
(`$BERTLAB_CACHE/onnx`, default `~/.cache/bertlab/onnx`). Before the session starts, ONNX
Runtime's transformer optimizer (`onnxruntime.transformers.optimizer.optimize_model`,
`model_type="bert"`) fuses what it recognises (LayerNorm with its residual, GELU with its
bias, attention); its graph, cached next to the exports, runs when it fused attention, and
otherwise (or when the optimizer fails) the exported graph runs as it is, with a logged note. The
session runs the CPU execution provider with
every graph optimization (`ORT_ENABLE_ALL`) and one intra-op thread per available core.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from tokenizers import Tokenizer

from bertlab.checkpoints.export import (
    DEFAULT_OPSET,
    INPUT_NAMES,
    QUANTIZATIONS,
    export_module,
    quantize_int8,
    require_onnxruntime,
)
from bertlab.checkpoints.hf import CONFIG_FILE, load_hf_tokenizer, model_section, read_hf_config
from bertlab.checkpoints.restore import QA_DEFAULT_MAX_LENGTH, load_module
from bertlab.errors import CheckpointError, ConfigError
from bertlab.inference.task_model import (
    CLASSIFICATION,
    QUESTION_ANSWERING,
    REGRESSION,
    Batch,
    Outputs,
    TaskModel,
    torch_task_model,
)

log = logging.getLogger("bertlab")

MODEL_FILE = "model.onnx"
FUSION_FILE = "fusion.json"  # in a fused-graph cache entry: what the optimizer fused, or why not
ATTENTION_OPERATORS = {"Attention", "MultiHeadAttention"}
OUTPUT_KINDS = {
    ("logits",): CLASSIFICATION,
    ("score",): REGRESSION,
    ("start_logits", "end_logits"): QUESTION_ANSWERING,
}


@dataclasses.dataclass(frozen=True)
class OnnxSource:
    """A model file and what decoding its outputs needs, before a session runs it."""

    model_file: Path
    task: TaskModel | None  # from a .ckpt: the torch task model (settings); None for a directory
    config: dict  # bertlab `model` keys: hidden_size, num_heads, max_position_embeddings
    hf_config: dict  # config.json of an exported directory ({} for a .ckpt)


def load_onnx_task_model(
    source: str | Path,
    quantize: str | None = None,
    threads: int | None = None,
    fuse: bool = True,
) -> tuple[TaskModel, Tokenizer]:
    """An ONNX Runtime `TaskModel` and its tokenizer from an exported directory or a .ckpt.

    `quantize="int8"` quantizes a float32 model (cached); `fuse=False` skips the transformer
    optimizer; `threads` defaults to the available cores.
    """
    require_onnxruntime()
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ConfigError(f"--quantize {quantize}: choose {', '.join(QUANTIZATIONS)}")
    path = Path(source).expanduser()
    onnx_source, tokenizer = _exported(path) if path.is_dir() else _from_checkpoint(path)
    model_file = onnx_source.model_file
    if quantize == "int8" and not is_quantized(model_file):
        model_file = _cached(model_file, "int8", lambda out: quantize_int8(model_file, out))
    if fuse:
        model_file = fused_graph(model_file, onnx_source.config)
    session = new_session(model_file, threads)
    kind = output_kind(session, model_file)
    forward = session_forward(session, kind)
    if onnx_source.task is not None:
        return dataclasses.replace(onnx_source.task, forward=forward), tokenizer
    return _directory_task(kind, onnx_source, forward), tokenizer


# ---- sources: an exported directory or a checkpoint exported into the cache ----------------


def _exported(directory: Path) -> tuple[OnnxSource, Tokenizer]:
    model_file = directory / MODEL_FILE
    if not model_file.is_file():
        raise CheckpointError(
            f"{directory}: no {MODEL_FILE}; --runtime onnx takes a directory written by "
            "bertlab-export CKPT format=onnx out=DIR, or the .ckpt itself"
        )
    hf_config = read_hf_config(directory)
    config = model_section(hf_config, directory / CONFIG_FILE)
    return OnnxSource(model_file, None, config, hf_config), load_hf_tokenizer(directory)


def _from_checkpoint(checkpoint: Path) -> tuple[OnnxSource, Tokenizer]:
    if not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint}: checkpoint not found")
    module, tokenizer = load_module(checkpoint)
    task = torch_task_model(module)  # the settings the torch path decodes with
    config = dataclasses.asdict(module.model.config)

    def export(out: Path) -> None:
        export_module(module, tokenizer, str(checkpoint), "onnx", out.parent, DEFAULT_OPSET)

    model_file = _cached(checkpoint, f"export-opset{DEFAULT_OPSET}", export)
    return OnnxSource(model_file, task, config, {}), tokenizer


def _directory_task(
    kind: str, source: OnnxSource, forward: Callable[[Batch], Outputs]
) -> TaskModel:
    """Decoding settings from config.json, as `bertlab-predict` reads a Hugging Face directory."""
    positions = source.config.get("max_position_embeddings", QA_DEFAULT_MAX_LENGTH)
    if kind == QUESTION_ANSWERING:
        settings: dict = {"max_seq_length": min(QA_DEFAULT_MAX_LENGTH, positions)}
    else:
        id2label = source.hf_config.get("id2label") or {}
        names = [id2label.get(str(i)) for i in range(len(id2label))]  # JSON keys are strings
        usable = kind == CLASSIFICATION and names and None not in names
        settings = {"label_names": names if usable else None}
    return TaskModel(kind, settings, positions, forward)


# ---- the cache --------------------------------------------------------------------------------


def cache_root() -> Path:
    """`$BERTLAB_CACHE/onnx`, as the training cache (`cache_dir`) defaults."""
    return Path(os.environ.get("BERTLAB_CACHE", "~/.cache/bertlab")).expanduser() / "onnx"


def _cached(origin: Path, variant: str, build: Callable[[Path], None]) -> Path:
    """`model.onnx` of the cache entry for (`origin` as it is now, `variant`), built once.

    The key is the origin's path, size and modification time: a re-exported or retrained
    file gets a new entry. `build(out)` writes `out` (a model.onnx) inside a temporary
    directory that becomes the entry only once complete.
    """
    entry = cache_entry(origin, variant)
    if (entry / MODEL_FILE).is_file():
        return entry / MODEL_FILE
    _build_entry(entry, lambda directory: build(directory / MODEL_FILE))
    return entry / MODEL_FILE


def cache_entry(origin: Path, variant: str) -> Path:
    stat = origin.stat()
    identity = f"{origin.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{variant}"
    return cache_root() / f"{variant}-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"


def _build_entry(entry: Path, build: Callable[[Path], None]) -> None:
    temporary = entry.with_name(f".{entry.name}.tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    try:
        build(temporary)
        os.replace(temporary, entry)
    except OSError:
        if not entry.is_dir():  # not another process finishing first: a real failure
            raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


# ---- the graph: int8, fusion --------------------------------------------------------------


def is_quantized(model_file: Path) -> bool:
    """Whether the graph computes its matrix products in integers (dynamic quantization)."""
    import onnx

    graph = onnx.load(str(model_file), load_external_data=False).graph
    return any(node.op_type in ("MatMulInteger", "DynamicQuantizeLinear") for node in graph.node)


def fused_graph(model_file: Path, config: dict) -> Path:
    """The transformer optimizer's graph of `model_file` when it fused attention, else
    `model_file` itself with a logged note.

    Attention fusion is what the optimizer's BERT speed comes from. Without it (bertlab's
    export: see docs/interop.md) the optimizer's residual + LayerNorm and bias + GELU fusions
    measured slower than the exported graph under ONNX Runtime's own optimizations
    (docs/benchmarks.md), so the exported graph runs.
    """
    fused_file, report = optimizer_graph(model_file, config)
    if "failed" in report:
        log.warning(
            "ONNX Runtime's transformer optimizer failed on %s (%s); running the exported "
            "graph, with ONNX Runtime's own graph optimizations",
            model_file,
            report["failed"],
        )
        return model_file
    fused = ", ".join(f"{name} {count}" for name, count in report["fused"].items())
    if not ATTENTION_OPERATORS & set(report["fused"]):
        log.info(
            "ONNX Runtime's transformer optimizer fused no attention in %s (only %s); running "
            "the exported graph, with ONNX Runtime's own graph optimizations",
            model_file,
            fused,
        )
        return model_file
    log.info("ONNX Runtime's transformer optimizer fused %s", fused)
    return fused_file


def optimizer_graph(model_file: Path, config: dict) -> tuple[Path, dict]:
    """`optimize_model(model_type="bert")` of `model_file`, built once into the cache: its
    model file, and a report {"fused": {operator: count}} or {"failed": why}."""
    entry = cache_entry(model_file, "fused")
    if not (entry / FUSION_FILE).is_file():
        _build_entry(entry, lambda directory: _fuse(model_file, config, directory))
    return entry / MODEL_FILE, json.loads((entry / FUSION_FILE).read_text())


def _fuse(model_file: Path, config: dict, out: Path) -> None:
    """Write out/model.onnx and out/fusion.json: the fused operators, or why there are none."""
    from onnxruntime.transformers.optimizer import optimize_model

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimizer = optimize_model(
                str(model_file),
                model_type="bert",
                num_heads=config.get("num_heads", 0),
                hidden_size=config.get("hidden_size", 0),
                opt_level=0,  # the session applies ONNX Runtime's own optimizations
            )
        fused = {k: v for k, v in optimizer.get_fused_operator_statistics().items() if v}
        if not fused:
            raise ValueError("no operator of this graph matched its fusion patterns")
        optimizer.save_model_to_file(str(out / MODEL_FILE))
        report: dict = {"fused": fused}
    # noqa: BLE001 - any failure of the optimizer means: run the plain graph
    except Exception as error:
        report = {"failed": f"{type(error).__name__}: {error}".splitlines()[0]}
    (out / FUSION_FILE).write_text(json.dumps(report, indent=2) + "\n")


# ---- the session --------------------------------------------------------------------------


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def new_session(model_file: Path, threads: int | None = None):
    """A CPU session with every graph optimization and `threads` (default: all cores) intra-op."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or available_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: the NCHWc notice is not for users
    try:
        return onnxruntime.InferenceSession(
            str(model_file), options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own unexported types
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(f"{model_file}: ONNX Runtime cannot load it ({first_line})") from None


def output_kind(session, model_file: Path) -> str:
    names = tuple(output.name for output in session.get_outputs())
    if names not in OUTPUT_KINDS:
        raise CheckpointError(
            f"{model_file}: outputs {', '.join(names)}; --runtime onnx runs the models "
            "bertlab-export writes (logits, score, or start_logits + end_logits)"
        )
    return OUTPUT_KINDS[names]


def session_forward(session, kind: str) -> Callable[[Batch], Outputs]:
    """The session as a `TaskModel.forward`: torch int64 batch in, torch tensors out."""
    input_names = [i.name for i in session.get_inputs()]
    unknown = set(input_names) - set(INPUT_NAMES)
    if unknown:
        raise CheckpointError(f"model.onnx: unexpected inputs {sorted(unknown)}")

    def forward(batch: Batch) -> Outputs:
        feed = {name: batch[name].numpy() for name in input_names}
        outputs = [torch.from_numpy(array) for array in session.run(None, feed)]
        return (outputs[0], outputs[1]) if kind == QUESTION_ANSWERING else outputs[0]

    return forward
