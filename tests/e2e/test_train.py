"""End to end: a short pretraining run lowers the loss and leaves a self-contained run dir."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap

import pytest

from bertlab.cli.train import train
from bertlab.errors import ConfigError

from support.runs import FAST_PRETRAINING


def train_losses(run_dir) -> list[float]:
    with open(run_dir / "csv" / "metrics.csv") as handle:
        return [float(row["train/loss"]) for row in csv.DictReader(handle) if row.get("train/loss")]


@pytest.fixture
def finished_run(make_config, corpus_file, tmp_path):
    cfg = make_config(*FAST_PRETRAINING, f"task.corpus={corpus_file}")
    objective = train(cfg, overrides=["trainer.max_steps=30"])
    return cfg, objective, tmp_path / "run"


def test_short_run_lowers_loss_and_writes_results(finished_run):
    cfg, objective, run_dir = finished_run
    losses = train_losses(run_dir)
    assert len(losses) >= 5 and losses[-1] < losses[0] - 0.5

    results = json.loads((run_dir / "results.json").read_text())
    assert results["task"] == "pretrain" and results["steps"] == 30
    assert results["overrides"] == ["trainer.max_steps=30"]
    assert results["wall_seconds"] > 0
    metrics = results["metrics"]
    assert {"val/mlm_accuracy", "val/nsp_accuracy", "val/loss", "val/mlm_majority_accuracy"} <= set(
        metrics
    )
    assert objective == metrics["val/mlm_accuracy"]
    assert results["last_checkpoint"].endswith("checkpoints/last.ckpt")
    assert results["best_checkpoint"].endswith("checkpoints/best.ckpt")
    for name in ("last.ckpt", "best.ckpt", "tokenizer.json", "vocab.txt"):
        assert (run_dir / "checkpoints" / name).exists(), name


def test_checkpoint_reloads_in_a_plain_python_session(finished_run):
    _, _, run_dir = finished_run
    script = textwrap.dedent(
        f"""
        import torch
        from tokenizers import Tokenizer
        from bertlab.tasks.pretrain import PretrainingModule
        last = {str(run_dir / "checkpoints" / "last.ckpt")!r}
        module = PretrainingModule.load_from_checkpoint(last)
        tokenizer = Tokenizer.from_str(module.tokenizer_json)
        encoding = tokenizer.encode("river stone cloud", "garden window")
        ids = torch.tensor([encoding.ids]); types = torch.tensor([encoding.type_ids])
        mlm, nsp = module.model.eval()(ids, types, torch.ones_like(ids))
        print(tuple(mlm.shape), tuple(nsp.shape), len(ids[0]), module.hparams.vocab_size)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    vocab_size = len((run_dir / "checkpoints" / "vocab.txt").read_text().splitlines())
    printed = result.stdout.strip().splitlines()[-1]
    length = int(printed.split()[-2])
    assert printed == f"(1, {length}, {vocab_size}) (1, 2) {length} {vocab_size}"
    assert length >= 7  # [CLS] 3 words [SEP] 2 words [SEP]


def test_resume_continues_from_last_checkpoint(make_config, corpus_file, tmp_path):
    run_dir = tmp_path / "resumed"
    train(
        make_config(
            *FAST_PRETRAINING, f"task.corpus={corpus_file}", "trainer.max_steps=10", run_dir=run_dir
        )
    )
    cfg = make_config(
        *FAST_PRETRAINING,
        f"task.corpus={corpus_file}",
        "trainer.max_steps=20",
        "resume=true",
        run_dir=run_dir,
    )
    train(cfg)
    assert json.loads((run_dir / "results.json").read_text())["steps"] == 20
    with open(run_dir / "csv" / "metrics.csv") as handle:
        logged_steps = {int(row["step"]) for row in csv.DictReader(handle) if row.get("train/loss")}
    assert min(logged_steps) < 10 < max(logged_steps)  # the rows before the resume are kept


def test_a_fresh_run_in_the_same_dir_starts_a_fresh_metrics_file(
    make_config, corpus_file, tmp_path
):
    run_dir = tmp_path / "again"
    for max_steps in (20, 10):
        train(
            make_config(
                *FAST_PRETRAINING,
                f"task.corpus={corpus_file}",
                f"trainer.max_steps={max_steps}",
                run_dir=run_dir,
            )
        )
    with open(run_dir / "csv" / "metrics.csv") as handle:
        logged_steps = [int(row["step"]) for row in csv.DictReader(handle) if row.get("train/loss")]
    assert max(logged_steps) < 10 and len(logged_steps) == len(set(logged_steps))


def test_resume_without_checkpoint_says_what_to_set(make_config, corpus_file):
    cfg = make_config(*FAST_PRETRAINING, f"task.corpus={corpus_file}", "resume=true")
    with pytest.raises(ConfigError, match="set hydra.run.dir to the run dir"):
        train(cfg)


def test_cli_runs_and_prepare_cache_is_reused(corpus_file, tmp_path):
    cache = tmp_path / "cache"
    common = [f"task.corpus={corpus_file}", f"cache_dir={cache}", *FAST_PRETRAINING]
    prepare = subprocess.run(
        [
            sys.executable,
            "-m",
            "bertlab.cli.prepare",
            *common,
            f"hydra.run.dir={tmp_path / 'prep'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert prepare.returncode == 0, prepare.stderr
    assert "train:" in prepare.stdout and "val:" in prepare.stdout
    entries = list((cache / "pretraining").iterdir())

    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bertlab.cli.train",
            *common,
            "trainer.max_steps=3",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert list((cache / "pretraining").iterdir()) == entries  # reused, not rebuilt
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["steps"] == 3 and f"task.corpus={corpus_file}" in results["overrides"]
    assert (tmp_path / "run" / ".hydra" / "config.yaml").exists()


# What Lightning and torch printed on every run though the user can do nothing about it
# (bertlab/runtime/quiet.py, bertlab/callbacks/summary.py).
LIBRARY_NOISE = (
    "litlogger",  # Lightning's tip advertising its cloud logger
    "exists and is not empty",  # ModelCheckpoint, about the tokenizer files in checkpoints/
    "LeafSpec",  # a torch deprecation inside Lightning's _pytree
    "FLOPs",  # the model summary's FLOPs column, always 0
    "Flops",
)


def test_a_run_prints_no_library_noise(corpus_file, tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bertlab.cli.train",
            f"task.corpus={corpus_file}",
            f"cache_dir={tmp_path / 'cache'}",
            *FAST_PRETRAINING,
            "trainer.max_steps=3",
            "trainer.enable_model_summary=true",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    output = run.stdout + run.stderr
    assert "Parameters" in output and "BertForPreTraining" in output  # the summary is there
    assert [noise for noise in LIBRARY_NOISE if noise in output] == []
    assert (tmp_path / "run" / "checkpoints" / "tokenizer.json").exists()
