"""Optuna `hparams_search` files and the SLURM experiment: their shape, composition, and a sweep of
a stand-in for bertlab-train.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from support.runs import CONF_DIR

HPARAMS_SEARCHES = sorted((CONF_DIR / "hparams_search").glob("*.yaml"))


SEARCHED_KEYS = {"optimizer.lr", "task.batch_size", "optimizer.warmup_ratio", "trainer.max_epochs"}


OPTUNA_DIRECTION = {"max": "maximize", "min": "minimize"}


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


# ---------------------------------------------------------------- Optuna hparams_search


@pytest.mark.parametrize("path", HPARAMS_SEARCHES, ids=lambda p: p.name)
def test_hparams_search_file_shape(path: Path) -> None:
    assert path.read_text().startswith("# @package _global_\n")
    config = load_yaml(path)
    assert {"override /hydra/sweeper": "optuna"} in config["defaults"]
    sweeper = config["hydra"]["sweeper"]
    assert sweeper["sampler"]["_target_"] == "optuna.samplers.TPESampler"
    assert set(sweeper["params"]) == SEARCHED_KEYS
    parser = OverridesParser.create()
    for key, space in sweeper["params"].items():
        assert parser.parse_override(f"{key}={space}").is_sweep_override(), key


@pytest.mark.parametrize(
    ("search", "tasks"),
    [
        ("glue_optuna", sorted((CONF_DIR / "task" / "glue").glob("*.yaml"))),
        ("squad_optuna", sorted((CONF_DIR / "task" / "squad").glob("*.yaml"))),
    ],
    ids=["glue", "squad"],
)
def test_optuna_direction_matches_every_task_objective(search: str, tasks: list[Path]) -> None:
    direction = load_yaml(CONF_DIR / "hparams_search" / f"{search}.yaml")["hydra"]["sweeper"][
        "direction"
    ]
    assert tasks
    for task in tasks:
        assert OPTUNA_DIRECTION[load_yaml(task)["objective_mode"]] == direction, task


@pytest.mark.parametrize(
    ("search", "task"), [("glue_optuna", "glue/mrpc"), ("squad_optuna", "squad/v1")]
)
def test_hparams_search_composes_with_the_optuna_sweeper(search: str, task: str) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"hparams_search={search}", f"task={task}"],
            return_hydra_config=True,
        )
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.sweeper.direction == "maximize"
    assert cfg.trainer.max_steps == -1  # epochs are searched


STUB_TRAIN = """
import math, sys
import hydra

@hydra.main(config_path={conf!r}, config_name="train", version_base="1.3")
def train(cfg) -> float:
    # stands in for bertlab-train: same config tree, an objective that peaks at lr 3e-5
    return -((math.log10(cfg.optimizer.lr) + 4.5) ** 2) + 0.001 * cfg.trainer.max_epochs

if __name__ == "__main__":
    train()
"""


def run_stub_sweep(tmp_path: Path, *overrides: str) -> Path:
    script = tmp_path / "stub_train.py"
    script.write_text(STUB_TRAIN.format(conf=str(CONF_DIR)))
    sweep_dir = tmp_path / "multirun"
    command = [sys.executable, str(script), "-m", f"hydra.sweep.dir={sweep_dir}", *overrides]
    finished = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return sweep_dir


def test_optuna_sweep_of_three_trials_reports_the_best(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep_dir = run_stub_sweep(
        tmp_path, "hparams_search=glue_optuna", "task=glue/mrpc", "hydra.sweeper.n_trials=3"
    )

    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["0", "1", "2"]
    best = load_yaml(sweep_dir / "optimization_results.yaml")
    assert set(best["best_params"]) == SEARCHED_KEYS
    assert isinstance(best["best_value"], float)


# ---------------------------------------------------------------- SLURM via submitit


def test_slurm_experiment_asks_one_task_per_device() -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["experiment=slurm_ddp", "trainer.devices=8", "trainer.num_nodes=2"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert cfg.trainer.strategy._target_.endswith("DDPStrategy")
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes) == (8, 8, 2)
    assert launcher.timeout_min > 0


def test_slurm_experiment_sweep_runs_locally_with_submitit_local(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep_dir = run_stub_sweep(
        tmp_path,
        "experiment=slurm_ddp",
        "hydra/launcher=submitit_local",
        "trainer.devices=1",
        "optimizer.lr=1e-5,3e-5",
    )

    jobs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())
    assert jobs == ["0", "1"]
    assert (sweep_dir / "1" / ".hydra" / "overrides.yaml").is_file()
