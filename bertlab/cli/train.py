"""`bertlab-train`: compose the config, build the task, fit, write results.json.

bertlab-train                                   # pretrain BERT-tiny on Python's docs
bertlab-train task=glue/mrpc model=base model.init=PATH optimizer.lr=2e-5
bertlab-train -m optimizer.lr=1e-5,2e-5 seed=1,2,3
"""

from __future__ import annotations

import sys
import time

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from bertlab import pipeline
from bertlab.cli.errors import exit_on_user_errors
from bertlab.sweeps import ddp_relaunch_of_this_job
from bertlab.validation import validate_config


def train(cfg: DictConfig, overrides: list[str] | None = None) -> float:
    """One run. Returns the task's objective metric (what a sweeper optimises)."""
    started = time.time()
    init = validate_config(cfg)  # before any data is read; model.init is opened here, once
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = pipeline.build_datamodule(cfg)
    tokenizer = pipeline.resolve_tokenizer(cfg, datamodule, init)
    datamodule.set_tokenizer(tokenizer)
    datamodule.prepare_data()
    module = pipeline.build_module(cfg, datamodule, tokenizer, init, overrides or [])
    pipeline.save_run_tokenizer(cfg, tokenizer)

    recorder = pipeline.ValidationRecorder()
    trainer = pipeline.build_trainer(cfg, recorder, overrides)
    try:
        # In a multirun, Lightning's DDP ranks must re-run this job only, in this job's directory.
        with ddp_relaunch_of_this_job():
            trainer.fit(module, datamodule=datamodule, ckpt_path=pipeline.resume_checkpoint(cfg))
            metrics = pipeline.final_metrics(trainer, module, datamodule, recorder)
            pipeline.write_results(cfg, trainer, metrics, started, overrides or [])
    finally:
        _finish_wandb()
    return metrics.get(cfg.task.objective, float("nan"))


def _finish_wandb() -> None:
    """Close the W&B run even when the job failed, so the next job of a sweep starts clean."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


@hydra.main(version_base="1.3", config_path="pkg://bertlab.conf", config_name="train")
@exit_on_user_errors
def main(cfg: DictConfig) -> float:
    return train(cfg, overrides=list(HydraConfig.get().overrides.task))


if __name__ == "__main__":
    main()
