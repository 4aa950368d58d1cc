"""One owner per setting (issue 12): a preset gives what its file says, for every combination.

The precedence is: command line > experiment recipe > the group option chosen > task defaults.
Optimizer presets own the optimizer's settings, trainer presets the hardware and mechanics,
tasks (conf/training_defaults/) the training regime; no two of them write the same key, so
whichever is chosen, each value is the one written in its owner's file.
"""

from __future__ import annotations

import pytest
import yaml
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from support.runs import CONF_DIR, CONF_MODULE

OPTIMIZERS = sorted(p.stem for p in (CONF_DIR / "optimizer").glob("*.yaml"))


TRAINERS = sorted(p.stem for p in (CONF_DIR / "trainer").glob("*.yaml"))


TASKS = sorted(
    str(p.relative_to(CONF_DIR / "task").with_suffix(""))
    for p in (CONF_DIR / "task").rglob("*.yaml")
)


def written(path) -> dict:
    """The keys a preset file writes itself (its `defaults:` list excluded)."""
    values = yaml.safe_load(path.read_text()) or {}
    values.pop("defaults", None)
    return values


def preset(group: str, option: str) -> dict:
    """A group option's values, its own `defaults` (e.g. trainer=gpu builds on cpu) applied
    first.
    """
    path = CONF_DIR / group / f"{option}.yaml"
    base = {}
    for entry in (yaml.safe_load(path.read_text()) or {}).get("defaults", []):
        if isinstance(entry, str) and entry != "_self_":
            base |= preset(group, entry)
    return base | written(path)


def task_regime(task: str) -> dict:
    """What the task's training defaults set, by group (`optimizer`, `trainer`, `task`)."""
    entries = (yaml.safe_load((CONF_DIR / "task" / f"{task}.yaml").read_text()) or {})["defaults"]
    regime: dict = {}
    for entry in entries:
        if isinstance(entry, str) and entry.startswith("/training_defaults/"):
            name = entry.removeprefix("/training_defaults/").split("@")[0]
            regime |= written(CONF_DIR / "training_defaults" / f"{name}.yaml")
    return regime


@pytest.fixture(scope="module")
def composed():
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONF_MODULE, version_base="1.3"):
        yield lambda *overrides: OmegaConf.to_container(compose("train", overrides=list(overrides)))
    GlobalHydra.instance().clear()


def test_every_task_brings_a_regime_that_no_preset_also_sets():
    for task in TASKS:
        regime = task_regime(task)
        assert {"lr", "warmup_ratio", "schedule"} <= set(regime["optimizer"]), task
        assert "max_epochs" in regime["trainer"], task
        for option in OPTIMIZERS:
            assert not set(regime["optimizer"]) & set(preset("optimizer", option)), (task, option)
        for option in TRAINERS:
            assert not set(regime["trainer"]) & set(preset("trainer", option)), (task, option)


@pytest.mark.parametrize("task", TASKS)
def test_every_optimizer_and_trainer_with_every_task_gives_what_the_files_say(composed, task):
    regime = task_regime(task)
    pairs = max(len(OPTIMIZERS), len(TRAINERS))  # every optimizer and every trainer, per task
    for i in range(pairs):
        optimizer, trainer = OPTIMIZERS[i % len(OPTIMIZERS)], TRAINERS[i % len(TRAINERS)]
        cfg = composed(f"task={task}", f"optimizer={optimizer}", f"trainer={trainer}")
        for key, value in preset("optimizer", optimizer).items():
            assert cfg["optimizer"][key] == value, (task, optimizer, key)
        for key, value in regime["optimizer"].items():
            assert cfg["optimizer"][key] == value, (task, optimizer, key)
        for key, value in preset("trainer", trainer).items():
            if key not in ("defaults", "default_root_dir"):  # an interpolation of run_dir
                assert cfg["trainer"][key] == value, (task, trainer, key)
        assert cfg["trainer"]["max_epochs"] == regime["trainer"]["max_epochs"], task


def test_lamb_gives_its_own_settings_and_its_regime_is_a_recipe(composed):
    cfg = composed("optimizer=lamb")
    assert cfg["optimizer"]["_target_"] == "bertlab.optim.Lamb"
    assert cfg["optimizer"]["lr"] == 1.0e-3  # the pretraining regime, not AdamW's preset
    recipe = composed("experiment=pretrain_lamb")
    assert recipe["optimizer"]["_target_"] == "bertlab.optim.Lamb"
    assert (recipe["optimizer"]["lr"], recipe["optimizer"]["warmup_ratio"]) == (6.0e-3, 0.2843)


def test_command_line_beats_recipe_beats_option_beats_task(composed):
    recipe = composed("experiment=glue_mnli_base")  # recipe: eps 1e-8 over bertadam's 1e-6
    assert recipe["optimizer"]["eps"] == 1.0e-8
    assert composed("experiment=glue_mnli_base", "optimizer.eps=1e-7")["optimizer"]["eps"] == 1e-7
    assert composed("task=glue/rte", "trainer=debug")["trainer"]["max_steps"] == 5
    assert composed("task=glue/rte", "trainer.max_epochs=7")["trainer"]["max_epochs"] == 7
    assert composed("task=squad/v1", "optimizer.lr=1e-4")["optimizer"]["lr"] == 1e-4
