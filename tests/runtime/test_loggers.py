"""Loggers: the W&B run's config is the resolved config, its name the overrides."""

from __future__ import annotations

import pytest

from bertlab.runtime.loggers import build_loggers
from bertlab.runtime.rundir import RunDir


def test_wandb_run_config_is_the_resolved_config_and_run_is_named_by_overrides(
    make_config, tmp_path, monkeypatch
):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = make_config("logger=wandb", "optimizer.lr=3e-4")
    (tmp_path / "run").mkdir()
    [logger] = build_loggers(cfg, RunDir.of(cfg), ["logger=wandb", "optimizer.lr=3e-4"])
    try:
        config = dict(logger.experiment.config)
        assert config["optimizer"]["lr"] == 3e-4
        assert (
            config["callbacks"]["checkpoint"]["monitor"] == "val/mlm_accuracy"
        )  # resolved, not "${task.objective}"
        assert config["run_dir"] == str(tmp_path / "run")
        assert logger.experiment.name == "logger=wandb optimizer.lr=3e-4"
    finally:
        logger.experiment.finish()
