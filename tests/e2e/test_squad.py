"""`bertlab-train task=squad/v1|v2` end to end: official files, scores, checkpoints, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bertlab.cli.train import train
from bertlab.qa.score import evaluate_file
from bertlab.tasks.qa import QuestionAnsweringModule

from support.data import generated_squad, write_squad
from support.runs import compose_train_config


def _train(tmp_path: Path, version_2: bool, extra: list[str], sizes=(800, 100)) -> dict:
    """`bertlab-train task=squad/v1|v2` in-process on a generated set; returns results.json
    metrics.
    """
    suffix = "v2.0" if version_2 else "v1.1"
    unanswerable = 0.4 if version_2 else 0.0
    data_dir = tmp_path / "data"
    write_squad(data_dir, f"train-{suffix}.json", generated_squad(sizes[0], 0, unanswerable))
    write_squad(data_dir, f"dev-{suffix}.json", generated_squad(sizes[1], 1, unanswerable))
    overrides = [
        f"task=squad/{'v2' if version_2 else 'v1'}", f"task.data_dir={data_dir}",
        "task.max_seq_length=48", "task.doc_stride=16", "task.max_query_length=8",
        "task.batch_size=32", "tokenizer.vocab_size=200", "trainer.max_epochs=2",
        "optimizer.lr=1e-3",  # a tiny model on a toy rule: the reference 3e-5 is far too low
        "~callbacks.progress_bar", "trainer.enable_model_summary=false", *extra,
    ]  # fmt: skip
    train(compose_train_config(overrides, tmp_path))
    run_dir = tmp_path / "run"
    results = json.loads((run_dir / "results.json").read_text())
    official_files = ["predictions.json", "nbest_predictions.json", "squad_eval.json"]
    official_files += ["null_odds.json"] if version_2 else []
    assert all((run_dir / name).exists() for name in official_files)
    print(f"{tmp_path.name}: {results['metrics']} in {results['wall_seconds']} s")  # pytest -s
    return results["metrics"]


@pytest.fixture(scope="module")
def pretrained_tiny(tmp_path_factory) -> Path:
    """BERT-tiny pretrained by bertlab (MLM + NSP, a few seconds) on text like the contexts."""
    work_dir = tmp_path_factory.mktemp("pretrain")
    lines = []
    for paragraph in generated_squad(400, seed=7)["data"][0]["paragraphs"]:
        words = paragraph["context"].split()
        lines += [" ".join(words[i : i + 8]) + "." for i in range(0, len(words), 8)] + [""]
    corpus = work_dir / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    overrides = [
        f"task.corpus={corpus}", "trainer.max_steps=60", "task.batch_size=16",
        "task.max_seq_length=64", "task.dupe_factor=2", "task.num_workers=0",
        "task.val_fraction=0.2", "tokenizer.vocab_size=300", "tokenizer.min_frequency=1",
        "~callbacks.progress_bar", "trainer.enable_model_summary=false",
    ]  # fmt: skip
    train(compose_train_config(overrides, work_dir))
    return work_dir / "run" / "checkpoints" / "last.ckpt"


def _dev_answers(tmp_path: Path) -> list[list]:
    dev = json.loads((tmp_path / "data" / "dev-v2.0.json").read_text())
    return [qa["answers"] for paragraph in dev["data"][0]["paragraphs"] for qa in paragraph["qas"]]


def test_bertlab_train_squad_v2_writes_scores_and_official_files(tmp_path):
    metrics = _train(tmp_path, version_2=True, extra=["trainer.max_steps=2"], sizes=(24, 12))
    assert {"val/exact_match", "val/f1", "val/HasAns_exact", "val/NoAns_f1", "val/best_f1"} <= set(
        metrics
    )
    no_answer_share = 100 * sum(1 for answer in _dev_answers(tmp_path) if not answer) / 12
    assert metrics["val/no_answer_exact_match"] == pytest.approx(no_answer_share)
    run_dir = tmp_path / "run"
    predictions = json.loads((run_dir / "predictions.json").read_text())
    null_odds = json.loads((run_dir / "null_odds.json").read_text())
    assert len(predictions) == len(null_odds) == 12
    # The logged scores are the official script's on the written files.
    dev = json.loads((tmp_path / "data" / "dev-v2.0.json").read_text())
    official = evaluate_file(dev, predictions, null_odds)
    assert json.loads((run_dir / "squad_eval.json").read_text()) == official
    assert metrics["val/f1"] == pytest.approx(official["f1"]) and metrics[
        "val/best_f1"
    ] == pytest.approx(official["best_f1"])
    # The checkpoint rebuilds the module without Hydra or the data.
    module = QuestionAnsweringModule.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    ids = torch.tensor([[2, 7, 3, 9, 3]])
    start_logits, end_logits = module.model.eval()(ids, torch.zeros_like(ids), torch.ones_like(ids))
    assert (
        start_logits.shape == end_logits.shape == (1, 5) and module.hparams.version_2_with_negative
    )


@pytest.mark.slow
def test_pretrained_tiny_learns_squad_v1_rule(pretrained_tiny, tmp_path):
    metrics = _train(tmp_path, version_2=False, extra=[f"model.init={pretrained_tiny}"])
    assert metrics["val/exact_match"] >= 90.0


@pytest.mark.slow
def test_pretrained_tiny_learns_squad_v2_rule_with_unanswerable_questions(
    pretrained_tiny, tmp_path
):
    metrics = _train(
        tmp_path, version_2=True, extra=[f"model.init={pretrained_tiny}", "trainer.max_epochs=3"]
    )
    assert metrics["val/HasAns_exact"] > 80.0 and metrics["val/NoAns_exact"] > 80.0


@pytest.mark.slow
def test_ddp_on_two_ranks_scores_each_question_once(tmp_path):
    """Two CPU ranks (gloo): the figures equal the official script's on rank 0's files."""
    write_squad(tmp_path / "data", "train-v1.1.json", generated_squad(64, 0))
    dev = write_squad(tmp_path / "data", "dev-v1.1.json", generated_squad(31, 1))  # uneven ranks
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "bertlab.cli.train", "task=squad/v1",
        f"task.data_dir={tmp_path / 'data'}", "task.max_seq_length=48", "task.doc_stride=16",
        "task.max_query_length=8", "task.eval_batch_size=4",
        "tokenizer.vocab_size=200", "optimizer.lr=1e-3", "trainer=ddp", "trainer.accelerator=cpu",
        "trainer.devices=2", "trainer.precision=32-true", "trainer.max_steps=2",
        "~callbacks.progress_bar", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    env = {**os.environ, "BERTLAB_CACHE": str(tmp_path / "cache")}
    subprocess.run(command, check=True, env=env, cwd=tmp_path, capture_output=True, timeout=300)
    predictions = json.loads((run_dir / "predictions.json").read_text())
    assert len(predictions) == 31
    official = evaluate_file(json.loads(dev.read_text()), predictions)
    metrics = json.loads((run_dir / "results.json").read_text())["metrics"]
    assert metrics["val/exact_match"] == pytest.approx(official["exact_match"])
    assert metrics["val/f1"] == pytest.approx(official["f1"])
