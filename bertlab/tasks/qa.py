"""Extractive question answering (SQuAD v1.1 / v2.0): a start and an end logit per token."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from bertlab.metrics import SquadMetric
from bertlab.model import BertConfig, BertForQuestionAnswering
from bertlab.qa.decode import write_answer_files
from bertlab.tasks.base import BertTaskModule

# What `bertlab-squad-eval dev.json predictions.json [--na-prob-file null_odds.json]` prints.
SCORES_FILE = "squad_eval.json"


class QuestionAnsweringModule(BertTaskModule):
    """Loss = mean of start and end cross-entropy; validation decodes and scores officially.

    Decoding needs the questions and window offsets, which are data, not hyperparameters:
    they come from the trainer's datamodule (`eval_set()`) when validation starts.
    """

    def __init__(
        self,
        model: dict,
        optimizer: dict,
        vocab_size: int,
        max_seq_length: int = 384,
        n_best_size: int = 20,
        max_answer_length: int = 30,
        null_score_diff_threshold: float = 0.0,
        version_2_with_negative: bool = False,
        **task_settings,
    ):
        super().__init__(model, optimizer, vocab_size, **task_settings)
        self.model = BertForQuestionAnswering(BertConfig.from_dict(model, vocab_size=vocab_size))
        self.squad_metric = SquadMetric(
            max_seq_length,
            n_best_size,
            max_answer_length,
            null_score_diff_threshold,
            version_2_with_negative,
        )

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return self.network(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        start_logits, end_logits = self(batch)
        start_loss = F.cross_entropy(start_logits.float(), batch["start_positions"])
        end_loss = F.cross_entropy(end_logits.float(), batch["end_positions"])
        loss = (start_loss + end_loss) / 2
        self.log(
            "train/loss", loss, on_step=True, prog_bar=True, batch_size=batch["input_ids"].shape[0]
        )
        return loss

    def on_validation_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "eval_set"):
            raise RuntimeError(
                "QuestionAnsweringModule validates with a QuestionAnsweringDataModule "
                "(trainer.fit(datamodule=...))"
            )
        self.squad_metric.eval_set = datamodule.eval_set()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        start_logits, end_logits = self(batch)
        self.squad_metric.update(batch["feature_index"], start_logits, end_logits)

    def on_validation_epoch_end(self) -> None:
        figures = self.squad_metric.compute()  # identical on every rank: computed from all of them
        for name, value in figures.items():
            self.log(f"val/{name}", value, prog_bar=name in ("exact_match", "f1"), sync_dist=True)
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            self._write_answers(Path(self.trainer.default_root_dir))
        self.squad_metric.reset()

    def _write_answers(self, run_dir: Path) -> None:
        """The official output files, and the official scores unrounded (logging keeps float32)."""
        if not self.squad_metric.answers:
            return
        write_answer_files(self.squad_metric.answers, run_dir, self.hparams.version_2_with_negative)
        (run_dir / SCORES_FILE).write_text(json.dumps(self.squad_metric.official, indent=2) + "\n")
