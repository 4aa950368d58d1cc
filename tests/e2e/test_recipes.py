"""Pretraining objectives, budgets and the recipes of conf/experiment (docs/recipes.md), end to
end.
"""

from __future__ import annotations

import csv
import json

import pytest
import torch

from bertlab.cli.train import train

from support.runs import FAST_PRETRAINING


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
    overrides = [f"task.corpus={corpus_file}", "task.masked_lm_prob=0.15", "trainer.max_steps=3"]
    train(make_config(*FAST_PRETRAINING, *overrides))
    metrics = results(tmp_path / "run")["metrics"]
    assert metrics["val/mlm_accuracy_at_15"] == metrics["val/mlm_accuracy"]
    assert "val/nsp_accuracy" in metrics


def learning_rates(run_dir) -> list[float]:
    with open(run_dir / "csv" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    name = next(key for key in rows[0] if key.startswith("lr-"))
    return [float(row[name]) for row in rows if row.get(name)]


def test_a_time_budget_ends_with_its_schedule_completed_and_resume_keeps_the_clock(
    make_config, corpus_file, tmp_path
) -> None:
    budget = [
        *FAST_PRETRAINING,
        f"task.corpus={corpus_file}",
        "+trainer.max_time='00:00:00:06'",
        "trainer.max_steps=-1",
        "trainer.max_epochs=-1",
        "trainer.log_every_n_steps=1",
        "optimizer.schedule=wsd",
        "optimizer.decay_ratio=0.5",
    ]
    train(make_config(*budget))
    run_dir = tmp_path / "run"
    steps = results(run_dir)["steps"]
    rates = learning_rates(run_dir)
    assert steps > 5 and max(rates) == pytest.approx(1e-3, rel=0.05)
    assert rates[-1] < 0.25 * max(rates)  # decayed to (near) 0 when the budget ran out
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    (timer,) = [state for name, state in checkpoint["callbacks"].items() if "Timer" in name]
    assert timer["time_elapsed"]["train"] >= 6
    # Resumed with the same budget: the clock says it is spent, so training stops at once.
    train(make_config(*budget, "resume=true"))
    assert results(run_dir)["steps"] <= steps + 1


RECIPES = {
    # experiment: what composing it must give (key: value)
    "bert": {
        "task.dropout": True,
        "task.masking": "static",
        "task.masked_lm_prob": 0.15,
        "optimizer.schedule": "linear",
    },
    "roberta": {
        "task.nsp": False,
        "task.masking": "dynamic",
        "task.masked_lm_prob": 0.15,
        "optimizer.schedule": "linear",
    },
    "cramming": {
        "model.layer_norm_position": "pre",
        "model.feed_forward": "glu",
        "model.bias": False,
        "task.masked_lm_prob": 0.25,
        "optimizer.eps": 1e-12,
        "trainer.gradient_clip_val": 0.5,
        "trainer.max_time": "01:00:00:00",
        "model.hidden_size": 128,  # sized by `model`
    },
    "modernbert": {
        "model.position_embedding_type": "rotary",
        "model.local_attention": 128,
        "model.global_attn_every_n_layers": 3,
        "task.masked_lm_prob": 0.3,
        "optimizer.schedule": "wsd",
        "optimizer.decay_shape": "1-sqrt",
        "model.num_layers": 2,
    },
}


@pytest.mark.parametrize("experiment", sorted(RECIPES))
def test_every_recipe_composes_and_trains_at_tiny_size(
    experiment, make_config, corpus_file, tmp_path
) -> None:
    from omegaconf import OmegaConf

    from bertlab.validation import validate_config

    cfg = make_config(f"experiment={experiment}", *FAST_PRETRAINING, f"task.corpus={corpus_file}")
    for key, value in RECIPES[experiment].items():
        assert OmegaConf.select(cfg, key) == value, key
    validate_config(cfg)
    train(
        make_config(
            f"experiment={experiment}",
            *FAST_PRETRAINING,
            f"task.corpus={corpus_file}",
            "trainer.max_steps=2",
        )
    )
    metrics = results(tmp_path / "run")["metrics"]
    assert results(tmp_path / "run")["steps"] == 2
    assert 0 <= metrics["val/mlm_accuracy_at_15"] <= 1
    assert ("val/nsp_accuracy" in metrics) == cfg.task.nsp  # BERT's recipe alone keeps NSP
