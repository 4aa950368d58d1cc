"""Every option of every config group composes; the command line reports bad choices clearly."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from omegaconf import OmegaConf

from support.runs import CONF_DIR

GROUPS = (
    "model",
    "task",
    "optimizer",
    "trainer",
    "logger",
    "callbacks",
    "experiment",
    "hparams_search",
)


def options(group: str) -> list[str]:
    return sorted(
        str(p.relative_to(CONF_DIR / group).with_suffix(""))
        for p in (CONF_DIR / group).rglob("*.yaml")
    )


def needs_plugin(path) -> str | None:
    """hparams_search configs switch Hydra's sweeper to Optuna, an optional extra (`sweeps`)."""
    text = path.read_text()
    return "hydra_plugins.hydra_optuna_sweeper" if "sweeper: optuna" in text else None


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_and_resolves(make_config, group, option):
    plugin = needs_plugin(CONF_DIR / group / f"{option}.yaml")
    if plugin:
        pytest.importorskip(plugin)
    cfg = make_config(f"{group}={option}")
    container = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    assert container["task"]["objective"].count("/") == 1
    assert container["task"]["objective_mode"] in ("max", "min")
    assert {"datamodule", "module", "name"} <= set(container["task"])


def test_model_sizes_follow_the_bert_family(make_config):
    expected = {
        "tiny": (2, 128, 2),
        "mini": (4, 256, 4),
        "small": (4, 512, 8),
        "medium": (8, 512, 8),
        "base": (12, 768, 12),
        "large": (24, 1024, 16),
    }
    for name, (layers, hidden, heads) in expected.items():
        model = make_config(f"model={name}").model
        assert (model.num_layers, model.hidden_size, model.num_heads) == (layers, hidden, heads)
        assert model.intermediate_size == 4 * hidden and model.max_position_embeddings == 512


def test_task_brings_training_defaults_but_command_line_wins(make_config):
    assert (
        make_config().trainer.max_epochs == 2
    )  # conf/training_defaults/pretrain.yaml, not trainer/cpu
    cfg = make_config("trainer.max_epochs=4", "optimizer.lr=5e-4")
    assert cfg.trainer.max_epochs == 4 and cfg.optimizer.lr == 5e-4


def test_the_default_job_pretrains_as_measured_in_docs_results(make_config):
    # docs/results.md: no dropout, 30% masking and WSD reach MLM 0.228 in the five minutes.
    cfg = make_config()
    assert (cfg.task.dropout, cfg.task.masked_lm_prob, cfg.task.max_predictions_per_seq) == (
        False,
        0.3,
        20,
    )
    assert (cfg.optimizer.schedule, cfg.optimizer.decay_ratio, cfg.task.batch_size) == (
        "wsd",
        0.1,
        32,
    )
    # BERT's own recipe keeps its 15% and linear decay.
    bert = make_config("experiment=bert")
    assert (bert.task.masked_lm_prob, bert.optimizer.schedule) == (0.15, "linear")


def test_job_chdir_is_off():
    assert yaml.safe_load((CONF_DIR / "train.yaml").read_text())["hydra"]["job"]["chdir"] is False


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bertlab.cli.train", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cfg_job_prints_the_composed_config():
    result = run_cli("--cfg", "job", "model=mini", "optimizer.lr=3e-4")
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["model"]["hidden_size"] == 256 and printed["optimizer"]["lr"] == 3e-4


def test_unknown_group_option_lists_the_available_ones():
    result = run_cli("model=huge")
    assert result.returncode != 0
    assert "Could not find 'model/huge'" in result.stderr and "tiny" in result.stderr


def test_unknown_key_is_rejected():
    result = run_cli("optimizer.learning_rate=1e-4")
    assert result.returncode != 0
    assert "learning_rate" in result.stderr and "not in struct" in result.stderr
