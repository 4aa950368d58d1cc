"""Config validation (issue 8): each bad value fails before heavy work, naming key, value and
what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from bertlab.cli.errors import EXIT_USER_ERROR, exit_on_user_errors
from bertlab.cli.train import train
from bertlab.errors import ConfigError
from bertlab.validation import validate_config

from support.runs import CONF_DIR, FAST_PRETRAINING, compose_config

SQUAD = ["task=squad/v1", "task.max_seq_length=256"]
PARSER = OverridesParser.create()


@pytest.fixture(scope="module")
def composed(composed_tasks, tmp_path_factory) -> Callable[[str], DictConfig]:
    """The composed config of each task (composed once per session), run_dir an empty directory."""
    run_dir = tmp_path_factory.mktemp("run")

    def compose_task(task: str) -> DictConfig:
        cfg = composed_tasks(task)
        with open_dict(cfg):
            cfg.run_dir = str(run_dir)
        return cfg

    return compose_task


@pytest.fixture
def make_config(composed):
    """Like conftest's make_config for `task=...` plus dotted `key=value` overrides, but fast."""

    def make(*overrides: str) -> DictConfig:
        task = next((o.split("=", 1)[1] for o in overrides if o.startswith("task=")), "pretrain")
        cfg = composed(task)
        for override in PARSER.parse_overrides([o for o in overrides if not o.startswith("task=")]):
            OmegaConf.update(cfg, override.key_or_group, override.value(), force_add=True)
        return cfg

    return make


def rejected(make_config, *overrides: str) -> str:
    with pytest.raises(ValueError) as error:
        validate_config(make_config(*overrides))
    return str(error.value)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["optimizer.lr=0"], "optimizer.lr=0: must be a number > 0"),
        (["optimizer.lr=-1e-05"], "optimizer.lr=-1e-05: must be a number > 0"),
        (["optimizer.lr=fast"], "optimizer.lr='fast': must be a number > 0"),
        (["optimizer.warmup_ratio=1.0"], "optimizer.warmup_ratio=1.0: must be a number in [0, 1)"),
        (
            ["optimizer.warmup_ratio=-0.1"],
            "optimizer.warmup_ratio=-0.1: must be a number in [0, 1)",
        ),
        (["optimizer.warmup_steps=-5"], "optimizer.warmup_steps=-5: must be an integer >= 0"),
        (["optimizer.weight_decay=-1"], "optimizer.weight_decay=-1: must be a number >= 0"),
        (["task.batch_size=0"], "task.batch_size=0: must be an integer >= 1"),
        (["task.batch_size=2.5"], "task.batch_size=2.5: must be an integer >= 1"),
        (["task.eval_batch_size=0"], "task.eval_batch_size=0: must be an integer >= 1"),
        (
            ["trainer.accumulate_grad_batches=0"],
            "trainer.accumulate_grad_batches=0: must be an integer >= 1",
        ),
        (
            ["task.max_seq_length=1024"],
            "task.max_seq_length=1024: must be <= model.max_position_embeddings=512",
        ),
        (["task.max_seq_length=2"], "task.max_seq_length=2: must be an integer >= 3"),
        (
            [*SQUAD, "task.doc_stride=256"],
            "task.doc_stride=256: must be an integer in [1, task.max_seq_length=256)",
        ),
        ([*SQUAD, "task.doc_stride=0"], "task.doc_stride=0: must be an integer in [1, "),
        (
            [*SQUAD, "task.max_query_length=256"],
            "task.max_query_length=256: must be an integer in [1, 252]",
        ),
        (["task.masked_lm_prob=0"], "task.masked_lm_prob=0: must be a number in (0, 1)"),
        (["task.masked_lm_prob=1.5"], "task.masked_lm_prob=1.5: must be a number in (0, 1)"),
        (["task.dupe_factor=0"], "task.dupe_factor=0: must be an integer >= 1"),
        (["task.val_fraction=1"], "task.val_fraction=1: must be a number in (0, 1)"),
        (
            ["model.hidden_size=129"],
            "model.hidden_size=129: must be a multiple of model.num_heads=2",
        ),
        (["model.num_layers=0"], "model.num_layers=0: must be an integer >= 1"),
        (["trainer.max_steps=0"], "trainer.max_steps=0: must be an integer >= 1, or -1"),
        (["trainer.max_epochs=0"], "trainer.max_epochs=0: must be an integer >= 1"),
        (
            ["callbacks.step_checkpoint.every_n_train_steps=0"],
            "callbacks.step_checkpoint.every_n_train_steps=0: must be an integer >= 1",
        ),
        (
            ["callbacks.nonfinite.action=ignore"],
            "callbacks.nonfinite.action='ignore': allowed values are stop, skip",
        ),
        (
            ["task=glue/mrpc", "task.metrics=[accuracy,bleu]"],
            "task.metrics: unknown metric 'bleu'; allowed: ",
        ),
        (
            ["task=glue/stsb", "task.metrics=[accuracy]"],
            "task.metrics: 'accuracy' does not apply to a regression task",
        ),
        (["task=glue/mrpc", "task.metrics=accuracy"], "task.metrics='accuracy': must be a list"),
        (["task=glue/mrpc", "task.labels=[yes,yes]"], "task.labels=['yes', 'yes']: must name"),
        (["model.init=/no/such/model.ckpt"], "model.init='/no/such/model.ckpt': no such file"),
    ],
    ids=lambda value: value if isinstance(value, str) and "=" not in value else None,
)
def test_bad_value_names_key_value_and_what_is_allowed(make_config, overrides, expected):
    assert rejected(make_config, *overrides).startswith(expected)


def test_labels_contradicting_the_init_checkpoint(make_config, tmp_path):
    checkpoint = tmp_path / "mnli.ckpt"
    labels = ["contradiction", "entailment", "neutral"]
    torch.save({"hyper_parameters": {"label_names": labels, "num_labels": 3}}, checkpoint)
    message = rejected(make_config, "task=glue/mrpc", f"model.init={checkpoint}")
    assert message.startswith("task.labels=['0', '1']: ")
    assert f"model.init={checkpoint} was fine-tuned on labels {labels}" in message


def test_labels_matching_the_init_checkpoint_pass(make_config, tmp_path):
    checkpoint = tmp_path / "mrpc.ckpt"
    torch.save({"hyper_parameters": {"label_names": ["0", "1"]}}, checkpoint)
    validate_config(make_config("task=glue/mrpc", f"model.init={checkpoint}"))


def test_resume_without_a_checkpoint_fails_first(make_config):
    with pytest.raises(ConfigError, match="set hydra.run.dir to the run dir"):
        validate_config(make_config("resume=true"))


TASKS = sorted(
    str(path.relative_to(CONF_DIR / "task").with_suffix(""))
    for path in (CONF_DIR / "task").rglob("*.yaml")
)


@pytest.mark.parametrize("task", TASKS)
def test_every_shipped_task_config_passes(make_config, task):
    validate_config(make_config(f"task={task}"))


def test_command_line_prints_one_line_and_exits_2(make_config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        exit_on_user_errors(validate_config)(make_config("optimizer.lr=0"))
    assert exit_info.value.code == EXIT_USER_ERROR
    assert capsys.readouterr().err == "error: optimizer.lr=0: must be a number > 0\n"


def test_train_rejects_before_building_data(corpus_file, tmp_path):
    overrides = [*FAST_PRETRAINING, f"task.corpus={corpus_file}", "optimizer.warmup_ratio=2"]
    cfg = compose_config(overrides, tmp_path / "run", tmp_path / "cache")
    with pytest.raises(ValueError, match=re.escape("optimizer.warmup_ratio=2: must be")):
        train(cfg)
    assert not (tmp_path / "cache").exists()  # no tokenizer, no shards: nothing heavy ran


# ---- Lightning's settings, checked with the rest of the config (issue 15) --------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.precision=17"], "trainer.precision=17: allowed values are 32-true, bf16-mixed"),
        (["trainer.devices=abc"], "trainer.devices='abc': must be an integer >= 1, -1"),
        (["trainer.devices=0"], "trainer.devices=0: must be an integer >= 1, -1"),
        (["trainer.accelerator=gpu"], "trainer.accelerator='gpu': this machine has no GPU"),
        (["trainer=gpu"], "trainer.accelerator='gpu': this machine has no GPU"),
        (["trainer.accelerator=abacus"], "trainer.accelerator='abacus': allowed values are auto"),
        (["+trainer.strategy=ddq"], "trainer.strategy='ddq': allowed names are auto, ddp"),
        (
            ["trainer.precision=16-mixed"],
            "trainer.precision='16-mixed': fp16 mixed precision needs a GPU",
        ),
        (["trainer.devices=-1"], "trainer.devices=-1: on a CPU, the number of processes"),
    ],
)
def test_lightning_settings_are_refused_before_any_data_is_read(
    tmp_path, monkeypatch, overrides, message
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a CPU-only machine
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    missing = tmp_path / "no-such-corpus.txt"  # reading data first would fail on this instead
    cfg = compose_config([f"task.corpus={missing}", *overrides], tmp_path / "run", tmp_path)
    with pytest.raises(ConfigError) as refused:
        train(cfg)
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "run").exists()  # refused before the run dir was even claimed
