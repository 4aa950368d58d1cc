"""`bertlab-eval`: score a fine-tuned checkpoint on a task's validation files, no training.

Same config tree as bertlab-train; writes results.json in the same schema (steps 0), and
with task.predict_test=true the test predictions (GLUE submission files). SQuAD writes
its predictions files and official scores as a training run's validation does.

bertlab-eval task=glue/mrpc model.init=RUN/checkpoints/best.ckpt task.data_dir=glue_data/MRPC
bertlab-eval task=glue/mnli model.init=RUN/checkpoints/best.ckpt task.data_dir=...
task.predict_test=true
bertlab-eval task=squad/v1 model.init=RUN/checkpoints/best.ckpt task.data_dir=squad/
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from bertlab import pipeline
from bertlab.checkpoints.init import ResolvedInit
from bertlab.cli.errors import exit_on_user_errors
from bertlab.errors import CheckpointError, ConfigError
from bertlab.runtime import results, wandb_run
from bertlab.runtime.allocator import keep_freed_memory
from bertlab.runtime.rundir import RunDir, claimed
from bertlab.tasks.base import BertTaskModule
from bertlab.validation import validate_config


def evaluate(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict:
    """Validate `model.init` on the task's validation splits; returns results.json's content."""
    started = time.time()
    if not cfg.model.init:
        raise ConfigError(
            "model.init is not set: bertlab-eval scores a fine-tuned checkpoint, "
            "e.g. model.init=RUN/checkpoints/best.ckpt"
        )
    init = validate_config(cfg)
    run_dir = RunDir.of(cfg)
    with claimed(run_dir, cfg.resume), wandb_run.finished_after():
        datamodule, tokenizer, module = pipeline.build_run(cfg, init, overrides)
        require_task_head(module, init)

        recorder = results.ValidationRecorder()
        trainer = pipeline.build_trainer(cfg, run_dir, recorder, overrides)
        trainer.validate(module, datamodule=datamodule, verbose=False)
        if getattr(datamodule, "predict_test", False) and hasattr(module, "write_test_predictions"):
            module.write_test_predictions()
        metrics = {**recorder.metrics, **datamodule.baseline_metrics()}
        return results.write_results(run_dir, cfg.task.name, trainer, metrics, started, overrides)


def require_task_head(module: BertTaskModule, init: ResolvedInit) -> None:
    """Scoring a checkpoint without this task's head would score a random classifier."""
    missing = sorted(set(module.model.state_dict()) - set(init.state_dict))
    if missing:
        raise CheckpointError(
            f"model.init={init.spec} has no weights for {', '.join(missing[:3])}"
            f"{' ...' if len(missing) > 3 else ''}: evaluate a checkpoint fine-tuned on this task"
        )


@hydra.main(version_base="1.3", config_path="pkg://bertlab.conf", config_name="train")
@exit_on_user_errors
def main(cfg: DictConfig) -> float:
    keep_freed_memory()
    results = evaluate(cfg, overrides=list(HydraConfig.get().overrides.task))
    return (results or {}).get("metrics", {}).get(cfg.task.objective, float("nan"))


if __name__ == "__main__":
    main()
