"""W&B sweep specs (conf/wandb_sweeps) and their checker, bertlab/runtime/wandb_sweeps.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from bertlab.errors import ConfigError
from bertlab.runtime.wandb_sweeps import load_wandb_sweep, main, validate_wandb_sweep

from support.runs import CONF_DIR

WANDB_SWEEPS = sorted((CONF_DIR / "wandb_sweeps").glob("*.yaml"))
HPARAMS_SEARCHES = sorted((CONF_DIR / "hparams_search").glob("*.yaml"))
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
        "conf/wandb_sweeps/x.yaml: parameters.task.text_column: "
        "value 'first sentence' contains whitespace"
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
