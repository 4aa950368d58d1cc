"""Sweep configs: W&B sweep specs, Optuna `hparams_search`, the SLURM experiment, and the checker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from bertlab.errors import ConfigError
from bertlab.runtime.wandb_sweeps import load_wandb_sweep, main, validate_wandb_sweep

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
WANDB_SWEEPS = sorted((CONF_DIR / "wandb_sweeps").glob("*.yaml"))
HPARAMS_SEARCHES = sorted((CONF_DIR / "hparams_search").glob("*.yaml"))
SEARCHED_KEYS = {"optimizer.lr", "task.batch_size", "optimizer.warmup_ratio", "trainer.max_epochs"}
OPTUNA_DIRECTION = {"max": "maximize", "min": "minimize"}


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def task_config(task: str) -> dict:
    return load_yaml(CONF_DIR / "task" / f"{task}.yaml")


def good_spec() -> dict:
    return {
        "program": "bertlab-train",
        "method": "grid",
        "metric": {"name": "val/accuracy", "goal": "maximize"},
        "parameters": {"task": {"value": "glue/rte"}, "optimizer.lr": {"values": [1e-5, 2e-5]}},
        "command": ["${env}", "bertlab-train", "${args_no_hyphens}"],
    }


# ---------------------------------------------------------------- W&B sweep specs


def test_there_are_sweep_files() -> None:
    assert WANDB_SWEEPS and HPARAMS_SEARCHES


@pytest.mark.parametrize("path", WANDB_SWEEPS, ids=lambda p: p.name)
def test_wandb_sweep_spec_is_valid_and_targets_the_task_objective(path: Path) -> None:
    spec = load_wandb_sweep(path)

    task = task_config(spec["parameters"]["task"]["value"])
    assert spec["metric"]["name"] == task["objective"]
    assert spec["metric"]["goal"] == OPTUNA_DIRECTION[task["objective_mode"]]


@pytest.mark.parametrize("path", WANDB_SWEEPS, ids=lambda p: p.name)
def test_wandb_sweep_overrides_compose(path: Path) -> None:
    """The fixed values the agent passes are real config keys and group options."""
    parameters = load_yaml(path)["parameters"]
    fixed = [
        f"{key}={p['value']}"
        for key, p in parameters.items()
        if "value" in p and not key.startswith("hydra.")
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=fixed)
    assert cfg.task.objective == load_yaml(path)["metric"]["name"]


def test_value_with_spaces_is_rejected_naming_file_and_key() -> None:
    spec = good_spec()
    spec["parameters"]["task.text_column"] = {"values": ["sentence", "first sentence"]}

    with pytest.raises(ConfigError) as error:
        validate_wandb_sweep(spec, source="conf/wandb_sweeps/x.yaml")

    message = str(error.value)
    assert message.startswith(
        "conf/wandb_sweeps/x.yaml: parameters.task.text_column: value 'first sentence' contains whitespace"
    )
    assert "Use a value without spaces" in message
    assert "'sentence'" not in message  # only the bad value is named


@pytest.mark.parametrize(
    ("parameter", "expected"),
    [
        ({"value": None}, "the string 'None'"),
        ({"values": ["1e-5,2e-5"]}, "is a Hydra sweep"),
        ({"value": "it's"}, "Hydra cannot parse"),
        ({"parameters": {"lr": {"value": 1e-5}}}, "use dotted keys"),
        ({"min": 1e-5}, "needs value, values or distribution"),
    ],
)
def test_values_hydra_would_misread_are_rejected(parameter: dict, expected: str) -> None:
    spec = good_spec()
    spec["parameters"]["optimizer.lr"] = parameter
    with pytest.raises(ConfigError, match=expected):
        validate_wandb_sweep(spec)


def test_command_without_args_no_hyphens_is_rejected() -> None:
    spec = good_spec()
    spec["command"] = ["${env}", "bertlab-train", "${args}"]
    with pytest.raises(
        ConfigError, match=r"command: must run bertlab-train with \$\{args_no_hyphens\}"
    ):
        validate_wandb_sweep(spec)


def test_checker_exits_2_naming_the_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = good_spec()
    spec["metric"] = {"name": "val/accuracy"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(spec))

    assert main([str(WANDB_SWEEPS[0]), str(bad)]) == 2

    captured = capsys.readouterr()
    assert f"{WANDB_SWEEPS[0]}: ok" in captured.out
    assert f"{bad}: metric: needs name" in captured.err


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


# ---------------------------------------------------------------- DDP inside a multirun

RANK_COMMAND_STUB = """
import json, os, sys
import hydra
from hydra.core.hydra_config import HydraConfig
from lightning_fabric.strategies.launchers.subprocess_script import _hydra_subprocess_cmd
from bertlab.runtime.ddp import ddp_relaunch_of_this_job

@hydra.main(config_path={conf!r}, config_name="train", version_base="1.3")
def train(cfg) -> float:
    output_dir = HydraConfig.get().runtime.output_dir
    with ddp_relaunch_of_this_job():
        os.environ["LOCAL_RANK"] = "0"  # as Lightning's launcher leaves it
        command, _ = _hydra_subprocess_cmd(local_rank=1)
    record = {{"command": command[2:], "argv_after": sys.argv[1:], "local_rank_after": os.environ.get("LOCAL_RANK")}}
    (open(os.path.join(output_dir, "rank1_command.json"), "w")).write(json.dumps(record))
    return 0.0

if __name__ == "__main__":
    train()
"""

DDP_STUB = """
import json, os
import hydra
import pytorch_lightning as pl
from pytorch_lightning.demos.boring_classes import BoringModel
from hydra.core.hydra_config import HydraConfig
from bertlab.runtime.ddp import ddp_relaunch_of_this_job

@hydra.main(config_path={conf!r}, config_name="train", version_base="1.3")
def train(cfg) -> float:
    output_dir = HydraConfig.get().runtime.output_dir
    with ddp_relaunch_of_this_job():
        trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=2, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, default_root_dir=output_dir)
        trainer.fit(BoringModel())
    record = {{"world_size": trainer.world_size, "lr": cfg.optimizer.lr}}
    open(os.path.join(output_dir, f"rank{{trainer.global_rank}}.json"), "w").write(json.dumps(record))
    return 0.0

if __name__ == "__main__":
    train()
"""


def run_script_sweep(tmp_path: Path, source: str, *overrides: str) -> Path:
    script = tmp_path / "stub.py"
    script.write_text(source.format(conf=str(CONF_DIR)))
    sweep_dir = tmp_path / "multirun"
    environment = {**os.environ, "PYTHONPATH": str(CONF_DIR.parent)}
    command = [sys.executable, str(script), "-m", f"hydra.sweep.dir={sweep_dir}", *overrides]
    finished = subprocess.run(
        command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    return sweep_dir


def test_ddp_ranks_of_a_multirun_job_rerun_only_that_job(tmp_path: Path) -> None:
    sweep_dir = run_script_sweep(tmp_path, RANK_COMMAND_STUB, "optimizer.lr=1e-5,2e-5")

    for job, lr in (("0", "1e-05"), ("1", "2e-05")):
        record = json.loads((sweep_dir / job / "rank1_command.json").read_text())
        assert record["command"][:2] == [f"optimizer.lr={lr}", f'hydra.run.dir="{sweep_dir / job}"']
        assert "-m" not in record["command"]
        assert record["argv_after"][0] == "-m"  # the sweep's own command line is back
        assert record["local_rank_after"] is None  # so the next job starts its own ranks


@pytest.mark.slow
def test_cpu_ddp_inside_a_multirun_trains_each_job_once(tmp_path: Path) -> None:
    sweep_dir = run_script_sweep(tmp_path, DDP_STUB, "optimizer.lr=1e-5,2e-5")

    for job, lr in (("0", 1e-5), ("1", 2e-5)):
        for rank in (0, 1):
            record = json.loads((sweep_dir / job / f"rank{rank}.json").read_text())
            assert record == {"world_size": 2, "lr": lr}
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["0", "1"]
