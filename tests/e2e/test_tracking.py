"""W&B runs unattended and reproducibility: what a sweep relies on."""

from __future__ import annotations

import json

import pytest
import torch

from bertlab.cli.train import train

from support.runs import FAST_PRETRAINING


def test_wandb_offline_without_credentials_logs_the_resolved_config(
    make_config, corpus_file, tmp_path, monkeypatch
):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc credentials
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = make_config(
        *FAST_PRETRAINING, f"task.corpus={corpus_file}", "trainer.max_steps=4", "logger=[csv,wandb]"
    )
    train(cfg, overrides=["logger=[csv,wandb]", "trainer.max_steps=4"])

    run_dir = tmp_path / "run"
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    run_id = runs[0].name.rsplit("-", 1)[-1]
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["wandb_run_id"] == run_id  # resume=true continues this run
    import wandb

    assert wandb.run is None  # finished after the job


def test_same_config_and_seed_give_identical_results(make_config, corpus_file, tmp_path):
    metrics = []
    for name in ("first", "second"):
        cfg = make_config(
            *FAST_PRETRAINING,
            f"task.corpus={corpus_file}",
            "trainer.max_steps=8",
            "trainer.deterministic=true",
            "seed=7",
            run_dir=tmp_path / name,
        )
        train(cfg)
        metrics.append(json.loads((tmp_path / name / "results.json").read_text())["metrics"])
    assert metrics[0] == metrics[1]
    third = make_config(
        *FAST_PRETRAINING,
        f"task.corpus={corpus_file}",
        "trainer.max_steps=8",
        "seed=8",
        run_dir=tmp_path / "third",
    )
    train(third)
    other = json.loads((tmp_path / "third" / "results.json").read_text())["metrics"]
    assert other["val/loss"] != metrics[0]["val/loss"]  # the seed matters
