"""The steps of a run, from a composed config to results.json (docs/architecture.md).

`bertlab-train` and `bertlab-prepare` are a few lines on top of these functions.
"""

from __future__ import annotations

import json
import logging
import netrc
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only
from tokenizers import Tokenizer

from bertlab.checkpoint import (
    init_model_config,
    load_pretrained,
    tokenizer_from_checkpoint,
)
from bertlab.checkpoint_io import AtomicCheckpointIO
from bertlab.data.base import BertDataModule
from bertlab.data.cache import cached_dir, fingerprint
from bertlab.tasks.base import BertTaskModule
from bertlab.tokenizer import TOKENIZER_FILE, load_tokenizer, save_tokenizer, train_wordpiece

log = logging.getLogger(__name__)

# Task keys that describe the task rather than configure its data module.
TASK_KEYS = ("name", "datamodule", "module", "objective", "objective_mode")


def to_dict(section: DictConfig) -> dict:
    return OmegaConf.to_container(section, resolve=True)


def build_datamodule(cfg: DictConfig) -> BertDataModule:
    """The task's data module, given every task key except the descriptive ones."""
    settings = {k: v for k, v in to_dict(cfg.task).items() if k not in TASK_KEYS}
    datamodule_class = get_class(cfg.task.datamodule)
    try:
        return datamodule_class(**settings, cache_dir=cfg.cache_dir, seed=cfg.seed)
    except TypeError as error:
        raise ValueError(f"task {cfg.task.name}: {error} (check the task.* keys)") from None


def resolve_tokenizer(cfg: DictConfig, datamodule: BertDataModule) -> Tokenizer:
    """tokenizer.path, else the one saved with model.init, else one trained on the task's text."""
    if cfg.tokenizer.path:
        return load_tokenizer(cfg.tokenizer.path, lowercase=cfg.tokenizer.lowercase)
    if cfg.model.init:
        tokenizer = tokenizer_from_checkpoint(cfg.model.init)
        if tokenizer is None:
            raise ValueError(
                f"model.init={cfg.model.init} carries no tokenizer; set tokenizer.path"
            )
        return tokenizer
    settings = to_dict(cfg.tokenizer)
    settings.pop("path")
    key = fingerprint(datamodule.data_fingerprint(), settings)

    def train(directory: Path) -> dict:
        tokenizer = train_wordpiece(datamodule.training_texts(), **settings)
        save_tokenizer(tokenizer, directory)
        return {"vocab_size": tokenizer.get_vocab_size()}

    return load_tokenizer(cached_dir(cfg.cache_dir, "tokenizer", key, train) / TOKENIZER_FILE)


def build_module(
    cfg: DictConfig,
    datamodule: BertDataModule,
    tokenizer: Tokenizer,
    overrides: Sequence[str] = (),
) -> BertTaskModule:
    # model.init's architecture (config.json or the checkpoint's) wins over the model group,
    # unless the command line set it (`model=base`, `model.num_layers=4`): then both must agree.
    model_cfg = init_model_config(to_dict(cfg.model), overrides)
    module_class = get_class(cfg.task.module)
    module = module_class(
        model=model_cfg,
        optimizer=to_dict(cfg.optimizer),
        vocab_size=tokenizer.get_vocab_size(),
        **datamodule.module_kwargs(),
    )
    if model_cfg.get("init"):
        load_pretrained(module.model, model_cfg["init"])
    module.tokenizer_json = tokenizer.to_str()
    return module


def build_trainer(
    cfg: DictConfig, recorder: pl.Callback, overrides: list[str] | None = None
) -> pl.Trainer:
    loggers = build_loggers(cfg, overrides or [])
    callbacks = [instantiate(section) for section in cfg.callbacks.values() if section is not None]
    return instantiate(
        cfg.trainer,
        logger=loggers or False,
        callbacks=[*callbacks, recorder],
        plugins=[AtomicCheckpointIO()],  # a kill mid-save never leaves a truncated last.ckpt
    )


def build_loggers(cfg: DictConfig, overrides: list[str]) -> list:
    """Instantiate `cfg.logger`; each logger is given the whole resolved config as its run config."""
    loggers = []
    for section in (cfg.get("logger") or {}).values():
        settings = to_dict(section)
        if settings["_target_"].endswith("WandbLogger"):
            settings = wandb_settings(settings, cfg, overrides)
        loggers.append(instantiate(settings))
    resolved = to_dict(cfg)
    for logger in loggers:
        logger.log_hyperparams(resolved)
    return loggers


def wandb_settings(settings: dict, cfg: DictConfig, overrides: list[str]) -> dict:
    """W&B defaults that make sweeps readable and runs unattended.

    Named by the job's overrides, grouped by the multirun it belongs to, offline (no prompt)
    without credentials unless WANDB_MODE says otherwise, and the same run continued on resume.
    """
    settings = dict(settings)
    if not settings.get("name"):
        settings["name"] = " ".join(_swept(overrides)) or Path(cfg.run_dir).name
    if not settings.get("group"):
        settings["group"] = _sweep_name()
    if not settings.get("tags"):  # a GLUE suite's jobs told apart by task and checkpoint
        settings["tags"] = [cfg.task.name, f"init={cfg.model.init}"[-64:]]  # W&B: 64 chars a tag
    if not settings.get("mode"):
        settings["mode"] = os.environ.get("WANDB_MODE") or (
            "online" if _wandb_credentials() else "offline"
        )
    run_id = _wandb_run_id_to_resume(cfg)
    if run_id:
        settings.update(id=run_id, resume="allow")
    return settings


def _swept(overrides: list[str]) -> list[str]:
    """In a multirun, the overrides that vary between its jobs (what tells runs apart)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN):
        return overrides
    from hydra.core.override_parser.overrides_parser import OverridesParser

    arguments = [arg for arg in sys.argv[1:] if "=" in arg and not arg.startswith("-")]
    parsed = OverridesParser.create().parse_overrides(arguments)
    swept = {override.get_key_element() for override in parsed if override.is_sweep_override()}
    swept |= set(HydraConfig.get().sweeper.get("params") or {})  # Optuna's search space
    return [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in swept] or overrides


def _sweep_name() -> str | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return str(Path(HydraConfig.get().sweep.dir))
    return None


def _wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def _wandb_run_id_to_resume(cfg: DictConfig) -> str | None:
    last = Path(cfg.run_dir) / "checkpoints" / "last.ckpt"
    if not cfg.resume or not last.exists():
        return None
    from bertlab.checkpoint import load_checkpoint

    return load_checkpoint(last).get("wandb_run_id")


class ValidationRecorder(pl.Callback):
    """Keeps the metrics of the latest validation, so the final ones need no extra pass."""

    def __init__(self):
        self.metrics: dict[str, float] = {}
        self.step = -1

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.step = trainer.global_step
        self.metrics = {
            name: float(value)
            for name, value in trainer.callback_metrics.items()
            if "/" in name and not name.startswith("train/") and value.numel() == 1
        }


def final_metrics(
    trainer: pl.Trainer, module, datamodule, recorder: ValidationRecorder
) -> dict[str, float]:
    if recorder.step != trainer.global_step:  # weights changed since the last validation
        trainer.validate(module, datamodule=datamodule, verbose=False)
    return {**recorder.metrics, **datamodule.baseline_metrics()}


def resume_checkpoint(cfg: DictConfig) -> str | None:
    if not cfg.resume:
        return None
    last = Path(cfg.run_dir) / "checkpoints" / "last.ckpt"
    if not last.exists():
        raise FileNotFoundError(
            f"resume=true but {last} does not exist; set hydra.run.dir to the run dir to continue"
        )
    return str(last)


@rank_zero_only
def write_results(
    cfg: DictConfig, trainer: pl.Trainer, metrics: dict, started: float, overrides: list[str]
) -> dict:
    checkpoint = next((c for c in trainer.checkpoint_callbacks), None)
    results = {
        "task": cfg.task.name,
        "metrics": metrics,
        "best_checkpoint": getattr(checkpoint, "best_model_path", "") or "",
        "last_checkpoint": getattr(checkpoint, "last_model_path", "") or "",
        "steps": trainer.global_step,
        "wall_seconds": round(time.time() - started, 2),
        "overrides": overrides,
    }
    path = Path(cfg.run_dir) / "results.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    log.info("results: %s", path)
    return results


@rank_zero_only
def save_run_tokenizer(cfg: DictConfig, tokenizer: Tokenizer) -> None:
    save_tokenizer(tokenizer, Path(cfg.run_dir) / "checkpoints")
