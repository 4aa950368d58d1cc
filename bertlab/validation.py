"""Config validation before any heavy work: each error names the key, its value and what is allowed.

`validate_config(cfg)` runs first in `bertlab-train`; the command line turns its ConfigError
into `error: <message>` and exit code 2. Keys a config does not have (say `task.doc_stride`
outside SQuAD) are skipped, so one function serves every task.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.accelerators import AcceleratorRegistry
from pytorch_lightning.strategies import StrategyRegistry

from bertlab.checkpoints.init import ResolvedInit, resolve
from bertlab.checkpoints.io import load_checkpoint
from bertlab.errors import CheckpointError, ConfigError
from bertlab.metrics import check_metric_names
from bertlab.model import BertConfig
from bertlab.runtime.rundir import RunDir

SPECIAL_TOKENS_WITH_QUESTION = 3  # [CLS] question [SEP] context [SEP]
NONFINITE_ACTIONS = ("stop", "skip")
# What Lightning 2.x accepts for Trainer(precision=...): the names, then the short aliases.
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")
PRECISION_ALIASES = (32, 16, 64, "32", "16", "64", "bf16")
DEVICES_ALLOWED = (
    "must be an integer >= 1, -1 (every device), auto, or device indices "
    "(a list such as [0,1], or a string such as '0,1')"
)


def validate_config(cfg: DictConfig) -> ResolvedInit | None:
    """Raise a UserError on the first value that cannot work, before data or model are built.

    Returns `model.init` resolved (None without one): validation has to open it, and the
    run reuses what it read rather than reading the checkpoint again.
    """
    for check in (
        _check_optimizer,
        _check_batches,
        _check_model,
        _check_model_switches,
        _check_lengths,
        _check_pretraining,
        _check_masking,
        _check_metrics,
        _check_training_length,
        _check_callbacks,
        _check_trainer,
        _check_resume,
        _check_model_memory,
    ):
        check(cfg)
    return _check_init(cfg)


# ---- helpers ------------------------------------------------------------------------------


def _value(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key, default=None)


def _fail(key: str, value, allowed: str) -> None:
    raise ConfigError(f"{key}={value!r}: {allowed}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(cfg: DictConfig, key: str, ok: Callable[[object], bool], allowed: str) -> None:
    """Fail when `key` is set and `ok(value)` is false (type checks included in `ok`)."""
    value = _value(cfg, key)
    if value is not None and not ok(value):
        _fail(key, value, allowed)


def _int_at_least(minimum: int) -> Callable[[object], bool]:
    return lambda value: _is_int(value) and value >= minimum


# ---- the checks ---------------------------------------------------------------------------


def _check_optimizer(cfg: DictConfig) -> None:
    _require(cfg, "optimizer.lr", lambda v: _is_number(v) and v > 0, "must be a number > 0")
    _require(
        cfg,
        "optimizer.warmup_ratio",
        lambda v: _is_number(v) and 0 <= v < 1,
        "must be a number in [0, 1) (the share of training steps spent warming up)",
    )
    _require(cfg, "optimizer.warmup_steps", _int_at_least(0), "must be an integer >= 0, or null")
    _require(
        cfg, "optimizer.weight_decay", lambda v: _is_number(v) and v >= 0, "must be a number >= 0"
    )


def _check_batches(cfg: DictConfig) -> None:
    _require(cfg, "task.batch_size", _int_at_least(1), "must be an integer >= 1")
    _require(cfg, "task.eval_batch_size", _int_at_least(1), "must be an integer >= 1, or null")
    _require(cfg, "trainer.accumulate_grad_batches", _int_at_least(1), "must be an integer >= 1")


def _check_model(cfg: DictConfig) -> None:
    for key in ("num_layers", "hidden_size", "num_heads", "intermediate_size"):
        _require(cfg, f"model.{key}", _int_at_least(1), "must be an integer >= 1")
    hidden, heads = _value(cfg, "model.hidden_size"), _value(cfg, "model.num_heads")
    if _is_int(hidden) and _is_int(heads) and hidden % heads:
        _fail("model.hidden_size", hidden, f"must be a multiple of model.num_heads={heads}")
    _require(cfg, "model.max_position_embeddings", _int_at_least(1), "must be an integer >= 1")


def _check_model_switches(cfg: DictConfig) -> None:
    """The architecture switches together; BertConfig raises a ConfigError naming the keys."""
    model = _value(cfg, "model")
    if model is not None:
        BertConfig.from_dict(OmegaConf.to_container(model, resolve=True))


def _check_lengths(cfg: DictConfig) -> None:
    positions = _value(cfg, "model.max_position_embeddings")
    _require(
        cfg, "task.max_seq_length", _int_at_least(3), "must be an integer >= 3 ([CLS] text [SEP])"
    )
    max_seq_length = _value(cfg, "task.max_seq_length")
    if max_seq_length is None:
        return
    if _is_int(positions) and max_seq_length > positions:
        _fail(
            "task.max_seq_length",
            max_seq_length,
            f"must be <= model.max_position_embeddings={positions} (the model has no "
            "position embeddings beyond that)",
        )
    _require(
        cfg,
        "task.doc_stride",
        lambda v: _is_int(v) and 1 <= v < max_seq_length,
        f"must be an integer in [1, task.max_seq_length={max_seq_length}) (windows must overlap)",
    )
    room = max_seq_length - SPECIAL_TOKENS_WITH_QUESTION - 1
    _require(
        cfg,
        "task.max_query_length",
        lambda v: _is_int(v) and 1 <= v <= room,
        f"must be an integer in [1, {room}]: task.max_seq_length={max_seq_length} must leave "
        f"room for {SPECIAL_TOKENS_WITH_QUESTION} special tokens and some context",
    )


def _check_pretraining(cfg: DictConfig) -> None:
    _require(
        cfg,
        "task.masked_lm_prob",
        lambda v: _is_number(v) and 0 < v < 1,
        "must be a number in (0, 1) (the share of tokens masked)",
    )
    _require(
        cfg, "task.short_seq_prob", lambda v: _is_number(v) and 0 <= v <= 1, "must be in [0, 1]"
    )
    _require(cfg, "task.dupe_factor", _int_at_least(1), "must be an integer >= 1")
    _require(cfg, "task.max_predictions_per_seq", _int_at_least(1), "must be an integer >= 1")
    _require(
        cfg,
        "task.val_fraction",
        lambda v: _is_number(v) and 0 < v < 1,
        "must be a number in (0, 1) (the share of documents held out)",
    )


def _check_masking(cfg: DictConfig) -> None:
    """The replace/random/keep split of the masked tokens must be shares that add up to <= 1."""
    for key in ("task.mask_token_prob", "task.random_token_prob"):
        _require(cfg, key, lambda v: _is_number(v) and 0 <= v <= 1, "must be a number in [0, 1]")
    mask, random = _value(cfg, "task.mask_token_prob"), _value(cfg, "task.random_token_prob")
    if _is_number(mask) and _is_number(random) and mask + random > 1:
        _fail(
            "task.random_token_prob",
            random,
            f"task.mask_token_prob={mask} plus it must be <= 1 (the rest keep their token)",
        )


def _check_metrics(cfg: DictConfig) -> None:
    metrics = _value(cfg, "task.metrics")
    if metrics is None:
        return
    if isinstance(metrics, str) or not OmegaConf.is_list(metrics):
        _fail("task.metrics", metrics, "must be a list of metric names, e.g. [accuracy, f1]")
    check_metric_names(list(metrics), bool(_value(cfg, "task.regression")))
    labels = _value(cfg, "task.labels")
    if labels is not None:
        labels = [str(label) for label in labels]
        if len(set(labels)) != len(labels) or len(labels) < 2:
            _fail("task.labels", labels, "must name at least 2 distinct labels, or be null")


def _check_training_length(cfg: DictConfig) -> None:
    _require(
        cfg,
        "trainer.max_steps",
        lambda v: _is_int(v) and (v == -1 or v >= 1),
        "must be an integer >= 1, or -1 (no limit)",
    )
    _require(
        cfg,
        "trainer.max_epochs",
        lambda v: _is_int(v) and (v == -1 or v >= 1),
        "must be an integer >= 1, -1 or null",
    )


def _check_callbacks(cfg: DictConfig) -> None:
    _require(
        cfg,
        "callbacks.step_checkpoint.every_n_train_steps",
        _int_at_least(1),
        "must be an integer >= 1 (optimizer steps between checkpoints/last.ckpt saves), or null",
    )
    _require(
        cfg,
        "callbacks.nonfinite.action",
        lambda v: v in NONFINITE_ACTIONS,
        f"allowed values are {', '.join(NONFINITE_ACTIONS)}",
    )


def _check_trainer(cfg: DictConfig) -> None:
    """Lightning's own settings, checked here so that a typo fails before the data is prepared."""
    _require(
        cfg,
        "trainer.precision",
        lambda v: v in PRECISIONS or v in PRECISION_ALIASES,
        f"allowed values are {', '.join(PRECISIONS)} (or the short forms 32, 16, 64, bf16)",
    )
    _require(cfg, "trainer.devices", _is_devices, DEVICES_ALLOWED)
    strategy = _value(cfg, "trainer.strategy")
    if isinstance(strategy, str) and strategy not in ("auto", *StrategyRegistry):
        _fail(
            "trainer.strategy", strategy, f"allowed names are auto, {', '.join(StrategyRegistry)}"
        )
    accelerator = _value(cfg, "trainer.accelerator")
    if isinstance(accelerator, str):
        _check_accelerator(cfg, accelerator)


def _is_devices(value) -> bool:
    if value == "auto" or (_is_int(value) and (value >= 1 or value == -1)):
        return True
    if isinstance(value, str):
        parts = [part.strip() for part in value.split(",") if part.strip()]
        return value.strip() == "-1" or (bool(parts) and all(part.isdigit() for part in parts))
    if OmegaConf.is_list(value):
        return len(value) > 0 and all(_is_int(v) and v >= 0 for v in value)
    return False


def _check_accelerator(cfg: DictConfig, accelerator: str) -> None:
    """A known name, present on this machine, with devices and precision it can run."""
    names = ("auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators()))
    if accelerator not in names:
        _fail("trainer.accelerator", accelerator, f"allowed values are {', '.join(names)}")
    device = _device_kind(accelerator)
    if device is None:
        _fail(
            "trainer.accelerator",
            accelerator,
            f"this machine has no {accelerator.upper()} that torch can use; "
            "choose trainer=cpu (or trainer.accelerator=cpu)",
        )
    if device == "cpu":
        _check_cpu_settings(cfg)
    else:
        _check_device_count(cfg, device)


def _device_kind(accelerator: str) -> str | None:
    """What Lightning will run on: `gpu` is CUDA, else Apple's MPS; None when absent here."""
    if accelerator == "auto":
        return _gpu_kind() or "cpu"
    if accelerator == "gpu":
        return _gpu_kind()
    return accelerator if AcceleratorRegistry[accelerator]["accelerator"].is_available() else None


def _gpu_kind() -> str | None:
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else None


def _check_cpu_settings(cfg: DictConfig) -> None:
    devices = _value(cfg, "trainer.devices")
    if devices is not None and devices != "auto" and not _int_at_least(1)(_as_number(devices)):
        _fail("trainer.devices", devices, "on a CPU, the number of processes: an integer >= 1")
    precision = _value(cfg, "trainer.precision")
    if precision in ("16-mixed", 16, "16"):
        _fail(
            "trainer.precision",
            precision,
            "fp16 mixed precision needs a GPU; on a CPU use bf16-mixed or 32-true",
        )


def _check_device_count(cfg: DictConfig, device: str) -> None:
    """`devices=N` needs N devices, `devices=[0, 3]` (or '0,3') needs device 3."""
    devices = _value(cfg, "trainer.devices")
    if isinstance(devices, str) and "," in devices:
        needed = max(int(part) for part in devices.split(",") if part.strip()) + 1
    elif OmegaConf.is_list(devices):
        needed = max(devices) + 1
    else:
        needed = _as_number(devices)
    available = AcceleratorRegistry[device]["accelerator"].auto_device_count()
    if _is_int(needed) and needed > available:
        _fail("trainer.devices", devices, f"this machine has {available} {device} device(s)")


def _as_number(value):
    """`devices` may be a number written as a string ("2")."""
    return int(value) if isinstance(value, str) and value.strip().lstrip("-").isdigit() else value


def _check_init(cfg: DictConfig) -> ResolvedInit | None:
    """model.init resolves, its architecture fits, a classifier's labels match task.labels."""
    spec = _value(cfg, "model.init")
    if spec is None:
        return None
    init = resolve(str(spec))
    if init.architecture is not None:
        _check_model_size(init.architecture, f"model.init={spec} has ", _vocab_size(cfg, init))
    labels = _value(cfg, "task.labels")
    trained = init.hyper_parameters.get("label_names")
    if labels is None or trained is None:
        return init
    if [str(x) for x in trained] != [str(x) for x in labels]:
        _fail(
            "task.labels",
            [str(x) for x in labels],
            f"model.init={spec} was fine-tuned on labels {list(trained)}: its classifier has "
            f"{len(trained)} outputs in that order; use those labels or a pretraining checkpoint",
        )
    return init


def _check_resume(cfg: DictConfig) -> None:
    if not _value(cfg, "resume"):
        return
    last = RunDir(Path(str(_value(cfg, "run_dir")))).last_checkpoint
    if not last.exists():  # the same error the pipeline raises, only before the data is built
        raise ConfigError(
            f"resume=true but {last} does not exist; set hydra.run.dir to the run dir to continue"
        )
    try:  # memory-mapped: only the structure is read, Lightning loads the weights later
        load_checkpoint(last, mmap=True)
    except CheckpointError as error:
        raise CheckpointError(
            f"resume=true: {error}; restore it from a copy, or start a new run without resume"
        ) from None


# ---- model size ---------------------------------------------------------------------------

# BERT-large: the yardstick for which dimension of an oversized model is out of proportion.
LARGE = {"hidden_size": 1024, "intermediate_size": 4096, "num_layers": 24}
LARGE |= {"max_position_embeddings": 512, "type_vocab_size": 2}
BYTES_PER_PARAMETER = 4  # float32 weights; training adds gradients and optimizer state


def _check_model_memory(cfg: DictConfig) -> None:
    model = OmegaConf.to_container(cfg.model, resolve=True) if "model" in cfg else {}
    _check_model_size(model, "model.", _vocab_size(cfg))


def _vocab_size(cfg: DictConfig, init: ResolvedInit | None = None) -> int:
    from_init = (init.architecture or {}).get("vocab_size") if init is not None else None
    return int(from_init or _value(cfg, "tokenizer.vocab_size") or BertConfig.vocab_size)


def estimated_parameters(architecture: dict, vocab_size: int) -> int:
    """BERT with pooler and pretraining heads, counted from its dimensions before building it."""
    # From the defaults, not BertConfig(): its checks would refuse a partial architecture.
    defaults = {field.name: field.default for field in dataclasses.fields(BertConfig)}
    config = {**defaults, **architecture, "vocab_size": vocab_size}
    hidden, inner, vocab = config["hidden_size"], config["intermediate_size"], vocab_size
    positions = config["max_position_embeddings"] + config["type_vocab_size"]
    embeddings = (vocab + positions) * hidden + 2 * hidden
    layer = 4 * (hidden * hidden + hidden) + 2 * hidden * inner + inner + 5 * hidden
    pooler = hidden * hidden + hidden
    pretraining_heads = (hidden * hidden + 3 * hidden + vocab) + (2 * hidden + 2)  # MLM, NSP
    return embeddings + config["num_layers"] * layer + pooler + pretraining_heads


def _check_model_size(architecture: dict, source: str, vocab_size: int) -> None:
    """Refuse, before anything is allocated, weights that cannot fit in this machine's memory."""
    dimensions = {k: v for k, v in architecture.items() if k in LARGE}
    if not all(_is_int(v) and v >= 1 for v in dimensions.values()) or not _memory_bytes():
        return  # the type checks name bad values; an unknown memory size checks nothing
    parameters = estimated_parameters(dimensions, vocab_size)
    needed, available = parameters * BYTES_PER_PARAMETER, _memory_bytes()
    if needed <= available or not dimensions:
        return
    key = max(dimensions, key=lambda k: dimensions[k] / LARGE[k])
    raise ConfigError(
        f"{source}{key}={dimensions[key]}: the model would hold about {parameters:.2g} "
        f"parameters ({_size(needed)} in float32), more than this machine's {_size(available)} "
        "of memory; choose a smaller model"
    )


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX
        return None


def _size(size: int) -> str:
    """Bytes in GiB, or the binary unit above it that keeps the number below 1024."""
    value = size / 2**30
    for unit in ("GiB", "TiB", "PiB"):
        if value < 1024:
            return f"{value:.3g} {unit}"
        value /= 1024
    return f"{value:.3g} EiB"
