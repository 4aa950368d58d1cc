"""Pretraining objectives, budgets and the recipes of conf/experiment (docs/recipes.md), end to end."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import FAST_PRETRAINING

from bertlab.cli.train import train


def results(run_dir) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def test_masked_lm_only_at_30_percent_also_reports_accuracy_at_15(
    make_config, corpus_file, tmp_path
) -> None:
    cfg = make_config(
        *FAST_PRETRAINING,
        f"task.corpus={corpus_file}",
        "task.nsp=false",
        "task.masked_lm_prob=0.3",
        "task.max_predictions_per_seq=null",
        "trainer.max_steps=6",
    )
    train(cfg)
    metrics = results(tmp_path / "run")["metrics"]
    assert not any("nsp" in name for name in metrics)
    assert 0 <= metrics["val/mlm_accuracy_at_15"] <= 1 and 0 <= metrics["val/mlm_accuracy"] <= 1
    assert metrics["val/mlm_accuracy_at_15"] != metrics["val/mlm_accuracy"]  # a separate pass
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert not any("seq_relationship" in k or "pooler" in k for k in state["state_dict"])


def test_bert_masking_reports_accuracy_at_15_from_the_same_pass(
    make_config, corpus_file, tmp_path
) -> None:
    train(make_config(*FAST_PRETRAINING, f"task.corpus={corpus_file}", "trainer.max_steps=3"))
    metrics = results(tmp_path / "run")["metrics"]
    assert metrics["val/mlm_accuracy_at_15"] == metrics["val/mlm_accuracy"]
    assert "val/nsp_accuracy" in metrics


def test_mask_split_must_leave_a_share_to_keep(make_config) -> None:
    from bertlab.validation import validate_config

    cfg = make_config("task.mask_token_prob=0.8", "task.random_token_prob=0.3")
    with pytest.raises(ValueError, match="task.random_token_prob=0.3: task.mask_token_prob=0.8"):
        validate_config(cfg)
