"""Config validation before any heavy work: each error names the key, its value and what is allowed.

`validate_config(cfg)` runs first in `bertlab-train`; the command line turns its ValueError
into `error: <message>` and exit code 2. Keys a config does not have (say `task.doc_stride`
outside SQuAD) are skipped, so one function serves every task.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from bertlab.metrics import check_metric_names
from bertlab.model import BertConfig

SPECIAL_TOKENS_WITH_QUESTION = 3  # [CLS] question [SEP] context [SEP]
NONFINITE_ACTIONS = ("stop", "skip")


def validate_config(cfg: DictConfig) -> None:
    """Raise ValueError on the first value that cannot work, before data or model are built."""
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
        _check_init,
        _check_resume,
    ):
        check(cfg)


# ---- helpers ------------------------------------------------------------------------------


def _value(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key, default=None)


def _fail(key: str, value, allowed: str) -> None:
    raise ValueError(f"{key}={value!r}: {allowed}")


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


def _check_init(cfg: DictConfig) -> None:
    """model.init must exist; a classification checkpoint's labels must match task.labels."""
    init = _value(cfg, "model.init")
    if init is None:
        return
    path = Path(str(init)).expanduser()
    if not path.exists():
        _fail("model.init", str(init), "no such file or directory (a .ckpt or a Hugging Face dir)")
    labels = _value(cfg, "task.labels")
    if labels is None or path.suffix != ".ckpt":
        return
    trained = _checkpoint_hyperparameters(path).get("label_names")
    if trained is not None and [str(x) for x in trained] != [str(x) for x in labels]:
        _fail(
            "task.labels",
            [str(x) for x in labels],
            f"model.init={init} was fine-tuned on labels {list(trained)}: its classifier has "
            f"{len(trained)} outputs in that order; use those labels or a pretraining checkpoint",
        )


def _checkpoint_hyperparameters(path: Path) -> dict:
    """Memory-mapped, so a large checkpoint costs no read here; unreadable ones fail later, named."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - bertlab.checkpoint reports it properly when loading
        return {}
    return checkpoint.get("hyper_parameters", {}) if isinstance(checkpoint, dict) else {}


def _check_resume(cfg: DictConfig) -> None:
    if not _value(cfg, "resume"):
        return
    last = Path(str(_value(cfg, "run_dir"))) / "checkpoints" / "last.ckpt"
    if not last.exists():  # the same error the pipeline raises, only before the data is built
        raise FileNotFoundError(
            f"resume=true but {last} does not exist; set hydra.run.dir to the run dir to continue"
        )
