"""The build steps of a run: data module, tokenizer, task module, trainer (docs/architecture.md).

`bertlab-train` and `bertlab-prepare` are a few lines on top of these functions; what a
run needs from Hydra, W&B and its run directory is in bertlab/runtime/.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from tokenizers import Tokenizer

from bertlab.callbacks.summary import ParameterSummary
from bertlab.checkpoints.init import ResolvedInit, init_model_config, load_pretrained
from bertlab.checkpoints.io import AtomicCheckpointIO
from bertlab.data.base import BertDataModule
from bertlab.data.cache import cached_dir, fingerprint
from bertlab.errors import CheckpointError, ConfigError
from bertlab.runtime.loggers import build_loggers
from bertlab.runtime.quiet import quiet_lightning
from bertlab.runtime.rundir import RunDir
from bertlab.runtime.wandb_run import WandbRunId
from bertlab.tasks.base import BertTaskModule
from bertlab.tokenizer import TOKENIZER_FILE, load_tokenizer, save_tokenizer, train_wordpiece

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
        raise ConfigError(f"task {cfg.task.name}: {error} (check the task.* keys)") from None


def resolve_tokenizer(
    cfg: DictConfig, datamodule: BertDataModule, init: ResolvedInit | None
) -> Tokenizer:
    """tokenizer.path, else the one saved with model.init (`init`), else one trained on the data."""
    if cfg.tokenizer.path:
        return load_tokenizer(cfg.tokenizer.path, lowercase=cfg.tokenizer.lowercase)
    if init is not None:
        if init.tokenizer is None:
            raise CheckpointError(
                f"model.init={init.spec} carries no tokenizer; set tokenizer.path"
            )
        return init.tokenizer
    settings = to_dict(cfg.tokenizer)
    settings.pop("path")
    key = fingerprint(datamodule.data_fingerprint(), settings)

    def train(directory: Path) -> dict:
        tokenizer = train_wordpiece(datamodule.training_texts, **settings)
        save_tokenizer(tokenizer, directory)
        return {"vocab_size": tokenizer.get_vocab_size()}

    return load_tokenizer(cached_dir(cfg.cache_dir, "tokenizer", key, train) / TOKENIZER_FILE)


def build_module(
    cfg: DictConfig,
    datamodule: BertDataModule,
    tokenizer: Tokenizer,
    init: ResolvedInit | None,
    overrides: Sequence[str] = (),
) -> BertTaskModule:
    """The task module; `init` is `model.init` resolved (None without one)."""
    # model.init's architecture (config.json or the checkpoint's) wins over the model group,
    # unless the command line set it (`model=base`, `model.num_layers=4`): then both must agree.
    model_cfg = init_model_config(to_dict(cfg.model), init, overrides)
    module_class = get_class(cfg.task.module)
    module = module_class(
        model=model_cfg,
        optimizer=to_dict(cfg.optimizer),
        vocab_size=tokenizer.get_vocab_size(),
        **datamodule.module_kwargs(),
    )
    if init is not None:
        load_pretrained(module.model, init)
    module.tokenizer_json = tokenizer.to_str()
    return module


def build_run(
    cfg: DictConfig, init: ResolvedInit | None, overrides: Sequence[str] = ()
) -> tuple[BertDataModule, Tokenizer, BertTaskModule]:
    """Seed, prepared data, tokenizer and task module: what every command running a task needs."""
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    tokenizer = resolve_tokenizer(cfg, datamodule, init)
    datamodule.set_tokenizer(tokenizer)
    datamodule.prepare_data()
    return datamodule, tokenizer, build_module(cfg, datamodule, tokenizer, init, overrides)


def build_trainer(
    cfg: DictConfig, run_dir: RunDir, recorder: pl.Callback, overrides: Sequence[str] = ()
) -> pl.Trainer:
    """The Lightning Trainer of `cfg.trainer`, with the run's loggers and callbacks."""
    quiet_lightning()
    callbacks = [instantiate(section) for section in cfg.callbacks.values() if section is not None]
    # bertlab's summary replaces Lightning's (whose FLOPs column is always 0), same switch.
    if cfg.trainer.get("enable_model_summary", True):
        callbacks.append(ParameterSummary())
    return instantiate(
        cfg.trainer,
        logger=build_loggers(cfg, run_dir, overrides) or False,
        callbacks=[*callbacks, WandbRunId(), recorder],
        enable_model_summary=False,
        plugins=[AtomicCheckpointIO()],  # a kill mid-save never leaves a truncated last.ckpt
    )
