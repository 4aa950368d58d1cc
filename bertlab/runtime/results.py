"""What a run leaves for its readers: `results.json`, and the tokenizer files beside the
checkpoints.

Rank zero writes them, each atomically (bertlab/atomic.py), so a reader never sees half a
file and a symlink planted in the run directory is replaced rather than followed.
The format of `results.json` is fixed by DESIGN.md; `bertlab-report` reads it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only
from tokenizers import Tokenizer

from bertlab.atomic import write_text_atomically
from bertlab.runtime.rundir import RunDir
from bertlab.tokenizer import save_tokenizer

log = logging.getLogger(__name__)


class ValidationRecorder(pl.Callback):
    """Keeps the metrics of the latest validation, so the final ones need no extra pass."""

    def __init__(self):
        self.metrics: dict[str, float] = {}
        self.step = -1

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.step = trainer.global_step
        self.metrics = {
            name: float(value)
            for name, value in trainer.callback_metrics.items()
            if "/" in name and not name.startswith("train/") and value.numel() == 1
        }


def final_metrics(
    trainer: pl.Trainer, module, datamodule, recorder: ValidationRecorder
) -> dict[str, float]:
    if recorder.step != trainer.global_step:  # weights changed since the last validation
        trainer.validate(module, datamodule=datamodule, verbose=False)
    return {**recorder.metrics, **datamodule.baseline_metrics()}


@rank_zero_only
def write_results(
    run_dir: RunDir,
    task: str,
    trainer: pl.Trainer,
    metrics: dict,
    started: float,
    overrides: Sequence[str],
) -> dict:
    checkpoint = next((c for c in trainer.checkpoint_callbacks), None)
    results = {
        "task": task,
        "metrics": metrics,
        "best_checkpoint": getattr(checkpoint, "best_model_path", "") or "",
        "last_checkpoint": getattr(checkpoint, "last_model_path", "") or "",
        "steps": trainer.global_step,
        "wall_seconds": round(time.time() - started, 2),
        "overrides": list(overrides),
        # What the reads skipped or dropped, per split: reported on cached reruns too.
        "data": trainer.datamodule.data_report() if trainer.datamodule is not None else {},
    }
    write_text_atomically(run_dir.results, json.dumps(results, indent=2) + "\n")
    log.info("results: %s", run_dir.results)
    return results


@rank_zero_only
def write_tokenizer_files(run_dir: RunDir, tokenizer: Tokenizer) -> None:
    """`tokenizer.json` and `vocab.txt` beside the checkpoints, for tools that want files."""
    save_tokenizer(tokenizer, run_dir.checkpoints)
