"""The real config tree through Hydra's compose(), and the steps of bertlab-train, shrunk for a
CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf, open_dict

from bertlab import pipeline
from bertlab.cli.errors import USER_ERRORS
from bertlab.cli.train import train
from bertlab.data.classification import ClassificationDataModule
from bertlab.qa.datamodule import QuestionAnsweringDataModule

from support.data import generated_squad, write_squad

CONF_MODULE = "bertlab.conf"


CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
# tests/, which pytest puts on sys.path: a child process needs it on PYTHONPATH to import `support`.
TESTS_DIR = Path(__file__).resolve().parents[1]


def compose_config(overrides: list[str], run_dir: Path, cache_dir: Path) -> DictConfig:
    """The composed `train` config with `overrides`, writing into run_dir and cache_dir."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONF_MODULE, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.run_dir = str(run_dir)
        cfg.cache_dir = str(cache_dir)
    return cfg


def compose_train_config(overrides: list[str], work_dir: Path) -> DictConfig:
    """The composed `train` config with overrides, writing into work_dir/run and work_dir/cache."""
    return compose_config(overrides, work_dir / "run", work_dir / "cache")


# Overrides that make a pretraining run take seconds on a CPU.
FAST_PRETRAINING = [
    "trainer.max_steps=30",
    "trainer.max_epochs=50",
    "trainer.log_every_n_steps=5",
    "trainer.enable_model_summary=false",
    "task.batch_size=16",
    "task.max_seq_length=64",
    "task.dupe_factor=2",
    "task.num_workers=0",
    "task.val_fraction=0.2",
    "tokenizer.vocab_size=200",
    "tokenizer.min_frequency=1",
    "~callbacks.progress_bar",
]


FAST_FINE_TUNE = [
    "task=glue/sst2",
    "task.batch_size=8",
    "task.max_seq_length=32",
    "trainer.max_steps=2",
    "trainer.max_epochs=1",
    "trainer.enable_model_summary=false",
    "~callbacks.progress_bar",
]


# A small SQuAD task: short windows, a small vocabulary.
SMALL_SQUAD = [
    "tokenizer.vocab_size=120",
    "tokenizer.min_frequency=1",
    "task.max_seq_length=64",
    "task.doc_stride=32",
    "task.max_query_length=16",
]


TINY_MODEL = [
    "model.hidden_size=32",
    "model.num_layers=1",
    "model.num_heads=2",
    "model.intermediate_size=64",
]


# ---- the real task configs -----------------------------------------------------------------


RESERVED_TASK_KEYS = ("name", "datamodule", "module", "objective", "objective_mode")


def task_cfg(task: str, data_dir: Path | None, *overrides: str):
    """The real task file composed by Hydra, with command-line style overrides."""
    data_dir_value = data_dir if data_dir else "null"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(overrides=[f"+task={task}", f"task.data_dir={data_dir_value}", *overrides])


def datamodule_for(task: str, data_dir: Path | None, *overrides: str) -> ClassificationDataModule:
    """What `bertlab-train` builds: every non-reserved task key as a keyword argument."""
    settings = OmegaConf.to_container(task_cfg(task, data_dir, *overrides).task, resolve=True)
    settings = {k: v for k, v in settings.items() if k not in RESERVED_TASK_KEYS}
    return ClassificationDataModule(
        **settings, cache_dir=str(Path(data_dir or ".") / "_cache"), seed=0
    )


def read_split(task: str, data_dir: Path, split: str, *overrides: str):
    """The examples of one split, as the task's data module reads them."""
    return datamodule_for(task, data_dir, *overrides).sources[split].read()


# ---- the data steps of bertlab-train ----------------------------------------------------------


def run_data_steps(cfg: DictConfig) -> object:
    """What bertlab-train does before building the model, in the same order."""
    datamodule = pipeline.build_datamodule(cfg)
    tokenizer = pipeline.resolve_tokenizer(cfg, datamodule, init=None)
    datamodule.set_tokenizer(tokenizer)
    datamodule.prepare_data()
    datamodule.module_kwargs()
    return datamodule


def user_error(cfg: DictConfig) -> str:
    """The one-line message of the user error that the data steps raise on `cfg`."""
    with pytest.raises(USER_ERRORS) as error:
        run_data_steps(cfg)
    message = str(error.value)
    assert "\n" not in message, message
    return message


def shard_arrays(datamodule) -> dict[str, np.ndarray]:
    """A prepared pretraining data module's shards, by file name."""
    return {p.name: np.load(p) for p in sorted(datamodule.shard_dir.glob("*.npy"))}


def squad_datamodule(
    tmp_path, tokenizer, version_2=False, write=True, **settings
) -> QuestionAnsweringDataModule:
    """A prepared data module on tmp_path/data (generated files unless `write` is false)."""
    suffix = "v2.0" if version_2 else "v1.1"
    if write:
        unanswerable = 0.5 if version_2 else 0.0
        write_squad(tmp_path / "data", f"train-{suffix}.json", generated_squad(30, 0, unanswerable))
        write_squad(tmp_path / "data", f"dev-{suffix}.json", generated_squad(12, 1, unanswerable))
    datamodule = QuestionAnsweringDataModule(
        data_dir=str(tmp_path / "data"),
        train_file=f"train-{suffix}.json",
        dev_file=f"dev-{suffix}.json",
        version_2_with_negative=version_2,
        cache_dir=str(tmp_path / "cache"),
        **{
            "max_seq_length": 32,
            "doc_stride": 8,
            "max_query_length": 8,
            "batch_size": 4,
            **settings,
        },
    )
    datamodule.set_tokenizer(tokenizer)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


# ---- short fine-tunes through bertlab-train ---------------------------------------------------


def run_task(tmp_path: Path, task: str, data_dir: Path, *overrides: str) -> dict:
    """train() a tiny model on `task` into tmp_path/run; returns its results.json."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"task={task}",
                f"task.data_dir={data_dir}",
                f"run_dir={tmp_path / 'run'}",
                f"cache_dir={tmp_path / 'cache'}",
                *TINY_MODEL,
                "tokenizer.vocab_size=120",
                "tokenizer.min_frequency=1",
                "~logger",
                "callbacks.progress_bar=null",
                "callbacks.lr_monitor=null",
                "+trainer.enable_progress_bar=false",
                "trainer.enable_model_summary=false",
                "optimizer.lr=3e-3",
                "task.batch_size=16",
                *overrides,
            ],
        )
    train(cfg)
    return json.loads((tmp_path / "run" / "results.json").read_text())
