"""Sentence (pair) classification and regression: GLUE, SNLI, XNLI, IMDB, custom data.

One module for every such task: what differs (number of labels, metrics, validation
splits, regression or not) arrives as plain values from the data module's
`module_kwargs()`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from bertlab.metrics import build_metrics
from bertlab.model import BertConfig, BertForSequenceClassification
from bertlab.tasks.base import BertTaskModule


class ClassificationModule(BertTaskModule):
    """Cross-entropy over `num_labels` classes, or MSE on one output when `regression`."""

    def __init__(
        self,
        model: dict,
        optimizer: dict,
        vocab_size: int,
        num_labels: int,
        metrics: Sequence[str] = ("accuracy",),
        regression: bool = False,
        label_names: Sequence[str] | None = None,
        val_splits: Sequence[str] = ("val",),
        **task_settings,
    ):
        super().__init__(
            model,
            optimizer,
            vocab_size,
            num_labels=num_labels,
            metrics=list(metrics),
            regression=regression,
            label_names=label_names,
            val_splits=list(val_splits),
            **task_settings,
        )
        if regression and num_labels != 1:
            raise ValueError(f"a regression task has one output, got num_labels={num_labels}")
        self.model = BertForSequenceClassification(
            BertConfig.from_dict(model, vocab_size=vocab_size), num_labels
        )
        # Metric state lives in torchmetrics objects, so DDP ranks sync it at compute time.
        self.val_metrics = nn.ModuleDict(
            {
                split: build_metrics(metrics, num_labels, regression).clone(prefix=f"{split}/")
                for split in val_splits
            }
        )
        self.val_losses = nn.ModuleDict({split: MeanMetric() for split in val_splits})

    def forward(self, batch: dict) -> torch.Tensor:
        """Logits (B, num_labels), or scores (B,) for regression."""
        logits = self.network(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        return logits.squeeze(-1) if self.hparams.regression else logits

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.hparams.regression:
            return F.mse_loss(outputs.float(), labels.float())
        return F.cross_entropy(outputs.float(), labels)

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        """Class ids, or the regression scores themselves."""
        return outputs.float() if self.hparams.regression else outputs.argmax(-1)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch), batch["labels"])
        self.log("train/loss", loss, on_step=True, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        split = self.hparams.val_splits[dataloader_idx]
        outputs = self(batch)
        labels = batch["labels"]
        metrics, mean_loss = self.val_metrics[split], self.val_losses[split]
        metrics.update(self.predictions(outputs), labels)
        mean_loss.update(self.loss(outputs, labels), weight=len(labels))
        # Logging the metric objects lets Lightning compute (synced) and reset them per epoch.
        self.log_dict(metrics, on_step=False, on_epoch=True, add_dataloader_idx=False)
        self.log(f"{split}/loss", mean_loss, on_step=False, on_epoch=True, add_dataloader_idx=False)

    # ---- test-set predictions (GLUE submission files) -----------------------------------

    def on_fit_end(self) -> None:
        self.write_test_predictions()

    def write_test_predictions(self) -> None:
        """With `task.predict_test=true`, write each test split's predictions into the run dir."""
        datamodule = self.trainer.datamodule
        if datamodule is None or not getattr(datamodule, "predict_test", False):
            return
        loaders = datamodule.test_dataloader()
        for split, loader in zip(datamodule.test_split_names, loaders, strict=True):
            positions, predicted = gather_from_ranks(self.predict_loader(loader))
            if self.trainer.is_global_zero:
                datamodule.write_predictions(
                    split, positions, predicted, self.trainer.default_root_dir
                )

    @torch.no_grad()
    def predict_loader(self, loader) -> tuple[list[int], list]:
        """(positions in the split, predictions) for this rank's share of a test split."""
        was_training = self.training
        self.eval()
        positions, predicted = [], []
        for batch in loader:
            batch = {key: value.to(self.device) for key, value in batch.items()}
            positions += batch["example_index"].tolist()
            predicted += self.predictions(self(batch)).tolist()
        self.train(was_training)
        return positions, predicted


def gather_from_ranks(shard: tuple[list, list]) -> tuple[list, list]:
    """Concatenate every rank's (positions, predictions); ranks may hold different counts."""
    if not (dist.is_available() and dist.is_initialized()):
        return shard
    shards = [None] * dist.get_world_size()
    dist.all_gather_object(shards, shard)
    return [p for s in shards for p in s[0]], [v for s in shards for v in s[1]]
