"""`bertlab-eval`: score a fine-tuned checkpoint on a task's validation files, no training.

Same config tree as bertlab-train; writes results.json in the same schema (steps 0), and
with task.predict_test=true the test predictions (GLUE submission files). SQuAD writes
its predictions files and official scores as a training run's validation does.

bertlab-eval task=glue/mrpc model.init=RUN/checkpoints/best.ckpt task.data_dir=glue_data/MRPC
bertlab-eval task=glue/mnli model.init=RUN/checkpoints/best.ckpt task.data_dir=... task.predict_test=true
bertlab-eval task=squad/v1 model.init=RUN/checkpoints/best.ckpt task.data_dir=squad/
"""

from __future__ import annotations

import time

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from bertlab import pipeline
from bertlab.checkpoint import load_pretrained
from bertlab.cli.errors import exit_on_user_errors
from bertlab.cli.train import _finish_wandb
from bertlab.errors import CheckpointError, ConfigError
from bertlab.tasks.base import BertTaskModule
from bertlab.validation import validate_config


def evaluate(cfg: DictConfig, overrides: list[str] | None = None) -> dict:
    """Validate `model.init` on the task's validation splits; returns results.json's content."""
    started = time.time()
    if not cfg.model.init:
        raise ConfigError(
            "model.init is not set: bertlab-eval scores a fine-tuned checkpoint, "
            "e.g. model.init=RUN/checkpoints/best.ckpt"
        )
    validate_config(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = pipeline.build_datamodule(cfg)
    tokenizer = pipeline.resolve_tokenizer(cfg, datamodule)
    datamodule.set_tokenizer(tokenizer)
    datamodule.prepare_data()
    module = pipeline.build_module(cfg, datamodule, tokenizer, overrides or [])
    require_task_head(module, cfg.model.init)

    recorder = pipeline.ValidationRecorder()
    trainer = pipeline.build_trainer(cfg, recorder, overrides)
    try:
        trainer.validate(module, datamodule=datamodule, verbose=False)
        if getattr(datamodule, "predict_test", False) and hasattr(module, "write_test_predictions"):
            module.write_test_predictions()
        metrics = {**recorder.metrics, **datamodule.baseline_metrics()}
        return pipeline.write_results(cfg, trainer, metrics, started, overrides or [])
    finally:
        _finish_wandb()


def require_task_head(module: BertTaskModule, init: str) -> None:
    """Scoring a checkpoint without this task's head would score a random classifier.

    build_module already copied the weights; loading them again is the one way to learn
    which of the module's tensors the checkpoint did not have.
    """
    missing = load_pretrained(module.model, init)["newly_initialized"]
    if missing:
        raise CheckpointError(
            f"model.init={init} has no weights for {', '.join(missing[:3])}"
            f"{' ...' if len(missing) > 3 else ''}: evaluate a checkpoint fine-tuned on this task"
        )


@hydra.main(version_base="1.3", config_path="pkg://bertlab.conf", config_name="train")
@exit_on_user_errors
def main(cfg: DictConfig) -> float:
    results = evaluate(cfg, overrides=list(HydraConfig.get().overrides.task))
    return (results or {}).get("metrics", {}).get(cfg.task.objective, float("nan"))


if __name__ == "__main__":
    main()
