"""Scale: DDP reproduces one process, accumulation reproduces a big batch, the schedule
counts optimizer steps, bf16-mixed and torch.compile train on CPU.

Exactness needs the same loss normalization on both sides. The MLM loss is a mean over
the masked tokens of a micro-batch, and DDP / accumulation average those means; that
equals the mean over the whole batch only when every sequence has the same number of
masked tokens. `EQUAL_MASKS` makes it so (every instance reaches the
max_predictions_per_seq cap), with dropout off so both sides compute the same function.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from bertlab import pipeline
from bertlab.cli.train import train

from support.data import write_corpus
from support.runs import FAST_PRETRAINING, TESTS_DIR

EQUAL_MASKS = [
    "task.short_seq_prob=0",
    "task.masked_lm_prob=0.5",
    "task.max_predictions_per_seq=4",  # every instance has >= 8 tokens: exactly 4 masks each
    "model.hidden_dropout=0",
    "model.attention_dropout=0",
]


def recorded(path: Path, rank: int = 0) -> list[dict]:
    return json.loads(Path(f"{path}.rank{rank}.json").read_text())


def recorder_overrides(path: Path) -> list[str]:
    return [
        "+callbacks.steps._target_=support.callbacks.StepRecorder",
        f"+callbacks.steps.path={path}",
    ]


@pytest.fixture
def big_corpus(tmp_path) -> Path:
    """Enough instances that 10 steps of 16 stay inside the first epoch."""
    return write_corpus(tmp_path / "corpus.txt", documents=150)


def test_ddp_two_cpu_ranks_give_the_same_losses_as_one_process(make_config, big_corpus, tmp_path):
    common = [
        *FAST_PRETRAINING,
        *EQUAL_MASKS,
        f"task.corpus={big_corpus}",
        "trainer.max_steps=10",
        "+trainer.limit_val_batches=1",
        "trainer.log_every_n_steps=1",
    ]
    single = tmp_path / "single-losses"
    cfg = make_config(*common, "task.batch_size=16", *recorder_overrides(single))
    train(cfg)

    ddp_losses = tmp_path / "ddp-losses"
    command = [
        sys.executable,
        "-m",
        "bertlab.cli.train",
        *common,
        "task.batch_size=8",  # per rank: 2 x 8 = the single process' 16
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
        "trainer.benchmark=false",
        *recorder_overrides(ddp_losses),
        f"cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'ddp-run'}",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), *sys.path])}
    finished = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr[-3000:]

    expected = [row["loss"] for row in recorded(single)]
    rank_losses = [[row["loss"] for row in recorded(ddp_losses, rank)] for rank in (0, 1)]
    # Equal batch halves with equal mask counts: the global loss is the mean of the ranks'.
    global_losses = [(a + b) / 2 for a, b in zip(*rank_losses, strict=True)]
    assert len(expected) == len(global_losses) == 10
    assert global_losses == pytest.approx(expected, abs=1e-4)
    assert rank_losses[0] != pytest.approx(rank_losses[1], abs=1e-3)  # ranks saw different data
    assert expected[-1] < expected[0]
    assert json.loads((tmp_path / "ddp-run" / "results.json").read_text())["steps"] == 10


def weights_after_one_step(make_config, corpus: Path, *overrides: str) -> dict:
    """Fit one optimizer step through the real config; the network's weights afterwards."""
    cfg = make_config(*FAST_PRETRAINING, *EQUAL_MASKS, f"task.corpus={corpus}", *overrides)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = pipeline.build_datamodule(cfg)
    tokenizer = pipeline.resolve_tokenizer(cfg, datamodule, init=None)
    datamodule.set_tokenizer(tokenizer)
    datamodule.prepare_data()
    module = pipeline.build_module(cfg, datamodule, tokenizer, init=None)
    trainer = instantiate(
        cfg.trainer,
        max_steps=1,
        limit_val_batches=0,
        logger=False,
        callbacks=[],
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 1
    return {name: value.detach().clone() for name, value in module.model.state_dict().items()}


def test_accumulating_2_x_16_equals_one_batch_of_32(make_config, corpus_file):
    initial = weights_after_one_step(make_config, corpus_file, "optimizer.lr=0")
    big_batch = weights_after_one_step(make_config, corpus_file, "task.batch_size=32")
    accumulated = weights_after_one_step(
        make_config, corpus_file, "task.batch_size=16", "trainer.accumulate_grad_batches=2"
    )
    moved = max((big_batch[n] - initial[n]).abs().max().item() for n in initial)
    assert moved > 1e-4  # the step did change the weights
    for name in big_batch:
        torch.testing.assert_close(accumulated[name], big_batch[name], atol=1e-6, rtol=0)


def test_schedule_counts_optimizer_steps_not_micro_batches(make_config, tmp_path):
    steps = tmp_path / "steps"
    corpus = write_corpus(tmp_path / "corpus.txt", documents=105)  # 12 full batches of 16
    cfg = make_config(
        *FAST_PRETRAINING,
        f"task.corpus={corpus}",
        "trainer.max_steps=-1",
        "trainer.max_epochs=1",
        "trainer.accumulate_grad_batches=2",
        "+trainer.limit_val_batches=1",
        "optimizer.warmup_ratio=0.25",
        *recorder_overrides(steps),
    )
    train(cfg)
    rows = recorded(steps)
    optimizer_steps = len(rows) // 2  # each pair of micro-batches is one optimizer step
    assert len(rows) >= 8 and len(rows) % 2 == 0
    assert rows[-1]["global_step"] == optimizer_steps
    # The LR changes once per optimizer step (pairs of micro-batches share it) and the
    # linear decay reaches 0 exactly at the last optimizer step, not halfway through.
    lrs = [row["lr"] for row in rows]
    assert lrs[0::2] == lrs[1::2][: len(lrs[0::2])] or lrs[1::2] == lrs[2::2] + lrs[-1:]
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert min(lrs[:-2]) > 0
    warmup = max(1, round(0.25 * optimizer_steps))
    peak_step = max(range(len(rows)), key=lambda i: lrs[i]) // 2
    assert abs(peak_step - warmup) <= 1


def test_bf16_mixed_trains_on_cpu(make_config, corpus_file, tmp_path):
    steps = tmp_path / "steps"
    cfg = make_config(
        *FAST_PRETRAINING,
        f"task.corpus={corpus_file}",
        "trainer.precision=bf16-mixed",
        "trainer.max_steps=6",
        "+trainer.limit_val_batches=1",
        *recorder_overrides(steps),
    )
    train(cfg)
    losses = [row["loss"] for row in recorded(steps)]
    assert len(losses) == 6 and all(map(torch.isfinite, torch.tensor(losses)))
    assert losses[-1] < losses[0]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["steps"] == 6


@pytest.mark.slow
def test_compiled_model_trains(make_config, corpus_file, tmp_path):
    steps = tmp_path / "steps"
    cfg = make_config(
        *FAST_PRETRAINING,
        f"task.corpus={corpus_file}",
        "model.compile=true",
        "trainer.max_steps=10",
        "+trainer.limit_val_batches=1",
        *recorder_overrides(steps),
    )
    train(cfg)
    losses = [row["loss"] for row in recorded(steps)]
    assert len(losses) == 10 and losses[-1] < losses[0]
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert not any("_orig_mod" in key for key in state["state_dict"])  # names stay HF's
