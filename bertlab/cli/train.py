"""`bertlab-train`: compose the config, build the task, fit, write results.json.

bertlab-train                                   # pretrain BERT-tiny on Python's docs
bertlab-train task=glue/mrpc model=base model.init=PATH optimizer.lr=2e-5
bertlab-train -m optimizer.lr=1e-5,2e-5 seed=1,2,3
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import hydra
from omegaconf import DictConfig

from bertlab import pipeline
from bertlab.cli.errors import exit_on_user_errors
from bertlab.runtime import results, wandb_run
from bertlab.runtime.allocator import keep_freed_memory
from bertlab.runtime.ddp import ddp_relaunch_of_this_job
from bertlab.runtime.hydra import job_overrides
from bertlab.runtime.rundir import RunDir, claimed
from bertlab.validation import validate_config


def train(cfg: DictConfig, overrides: Sequence[str] = ()) -> float:
    """One run. Returns the task's objective metric (what a sweeper optimises)."""
    started = time.time()
    init = validate_config(cfg)  # before any data is read; model.init is opened here, once
    run_dir = RunDir.of(cfg)
    with claimed(run_dir, cfg.resume), wandb_run.finished_after():
        datamodule, tokenizer, module = pipeline.build_run(cfg, init, overrides)
        results.write_tokenizer_files(run_dir, tokenizer)

        recorder = results.ValidationRecorder()
        trainer = pipeline.build_trainer(cfg, run_dir, recorder, overrides)
        # In a multirun, Lightning's DDP ranks must re-run this job only, in this job's directory.
        with ddp_relaunch_of_this_job():
            trainer.fit(
                module, datamodule=datamodule, ckpt_path=run_dir.resume_checkpoint(cfg.resume)
            )
            metrics = results.final_metrics(trainer, module, datamodule, recorder)
            results.write_results(run_dir, cfg.task.name, trainer, metrics, started, overrides)
    return metrics.get(cfg.task.objective, float("nan"))


@hydra.main(version_base="1.3", config_path="pkg://bertlab.conf", config_name="train")
@exit_on_user_errors
def main(cfg: DictConfig) -> float:
    keep_freed_memory()
    return train(cfg, overrides=job_overrides())


if __name__ == "__main__":
    main()
