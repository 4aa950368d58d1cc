"""Pretraining: masked LM + next sentence prediction."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import BinaryAccuracy, MulticlassAccuracy

from bertlab.model import BertConfig, BertForPreTraining
from bertlab.tasks.base import BertTaskModule


class PretrainingModule(BertTaskModule):
    """Loss = MLM cross-entropy over masked tokens + NSP cross-entropy."""

    def __init__(self, model: dict, optimizer: dict, vocab_size: int, **task_settings):
        super().__init__(model, optimizer, vocab_size, **task_settings)
        self.model = BertForPreTraining(BertConfig.from_dict(model, vocab_size=vocab_size))
        self.metrics = nn.ModuleDict(
            {
                f"{split}_{name}": metric
                for split in ("train", "val")
                for name, metric in (
                    (
                        "mlm_accuracy",
                        MulticlassAccuracy(vocab_size, average="micro", validate_args=False),
                    ),
                    ("nsp_accuracy", BinaryAccuracy(validate_args=False)),
                )
            }
        )

    def _shared_step(self, batch: dict, split: str):
        masked_positions = batch["masked_positions"]
        mlm_logits, nsp_logits = self.network(
            batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], masked_positions
        )
        masked_labels = batch["masked_labels"][masked_positions >= 0]  # (N,), logits' order
        mlm_loss = F.cross_entropy(mlm_logits.float(), masked_labels)
        nsp_loss = F.cross_entropy(nsp_logits.float(), batch["next_sentence_labels"])
        loss = mlm_loss + nsp_loss

        mlm_accuracy = self.metrics[f"{split}_mlm_accuracy"]
        nsp_accuracy = self.metrics[f"{split}_nsp_accuracy"]
        mlm_accuracy(mlm_logits.argmax(-1), masked_labels)
        nsp_accuracy(nsp_logits.argmax(-1), batch["next_sentence_labels"])
        on_step = split == "train"
        batch_size = batch["input_ids"].shape[0]
        log = {"loss": loss, "mlm_loss": mlm_loss, "nsp_loss": nsp_loss}
        for name, value in log.items():
            self.log(
                f"{split}/{name}",
                value,
                on_step=on_step,
                on_epoch=not on_step,
                batch_size=batch_size,
                prog_bar=name == "loss",
                sync_dist=not on_step,
            )
        self.log(
            f"{split}/mlm_accuracy",
            mlm_accuracy,
            on_step=on_step,
            on_epoch=True,
            prog_bar=split == "val",
        )
        self.log(f"{split}/nsp_accuracy", nsp_accuracy, on_step=on_step, on_epoch=True)
        return loss

    def training_step(self, batch: dict, batch_idx: int):
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int):
        return self._shared_step(batch, "val")
