"""Pretraining: masked LM, plus next sentence prediction unless `task.nsp=false`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import BinaryAccuracy, MulticlassAccuracy

from bertlab.model import BertConfig, BertForPreTraining
from bertlab.tasks.base import BertTaskModule

# The logged name of masked-LM accuracy on the held-out instances masked at BERT's 15%.
MLM_AT_15 = "val/mlm_accuracy_at_15"
# What `dropout=False` turns off while pretraining (the model preset's rates are kept in the
# checkpoint, so fine-tuning from it applies them).
NO_DROPOUT = {"hidden_dropout": 0.0, "attention_dropout": 0.0}


class PretrainingModule(BertTaskModule):
    """Loss = MLM cross-entropy over masked tokens (+ NSP cross-entropy).

    `dropout=False` pretrains without dropout, whatever the model preset's rates (cramming's
    `pretrain_in_train_mode: false`): the network is built with rate 0, while the
    hyperparameters, and so the checkpoint, keep the preset's rates for fine-tuning.

    Validation also reports masked-LM accuracy at 15% masking (`val/mlm_accuracy_at_15`):
    from the same pass when training masks as BERT does, else from a second validation
    loader (`separate_mlm_at_15`) holding the same instances masked at 15%.
    """

    def __init__(
        self,
        model: dict,
        optimizer: dict,
        vocab_size: int,
        nsp: bool = True,
        separate_mlm_at_15: bool = False,
        dropout: bool = True,
        **task_settings,
    ):
        super().__init__(
            model,
            optimizer,
            vocab_size,
            nsp=nsp,
            separate_mlm_at_15=separate_mlm_at_15,
            dropout=dropout,
            **task_settings,
        )
        self.nsp = nsp
        rates = {} if dropout else NO_DROPOUT
        self.model = BertForPreTraining(
            BertConfig.from_dict(model, vocab_size=vocab_size, **rates), next_sentence=nsp
        )

        def mlm_accuracy() -> MulticlassAccuracy:
            return MulticlassAccuracy(vocab_size, average="micro", validate_args=False)

        metrics = {
            "train_mlm_accuracy": mlm_accuracy(),
            "val_mlm_accuracy": mlm_accuracy(),
            "val_mlm_accuracy_at_15": mlm_accuracy(),
        }
        if nsp:
            metrics |= {
                f"{split}_nsp_accuracy": BinaryAccuracy(validate_args=False)
                for split in ("train", "val")
            }
        self.metrics = nn.ModuleDict(metrics)

    def _mlm(self, batch: dict) -> tuple[torch.Tensor, ...]:
        """(MLM loss, predictions (N,), their labels (N,), NSP logits (B, 2) or None)."""
        masked_positions, masked_labels = batch["masked_positions"], batch["masked_labels"]
        mlm_loss, predictions, nsp_logits = self.network(
            batch["input_ids"],
            batch["token_type_ids"],
            batch["attention_mask"],
            masked_positions,
            masked_labels,
        )
        return mlm_loss, predictions, masked_labels[masked_positions >= 0], nsp_logits

    def _shared_step(self, batch: dict, split: str, log_all: bool = True):
        """The loss. `log_all=False`, on the training steps the loggers skip: the accuracies
        are only accumulated for the epoch, and only the progress bar's loss is logged."""
        mlm_loss, predictions, masked_labels, nsp_logits = self._mlm(batch)
        log = {"loss": mlm_loss, "mlm_loss": mlm_loss}
        if self.nsp:
            nsp_loss = F.cross_entropy(nsp_logits.float(), batch["next_sentence_labels"])
            log |= {"loss": mlm_loss + nsp_loss, "nsp_loss": nsp_loss}
        accuracies = {"mlm_accuracy": (predictions, masked_labels)}
        if self.nsp:
            accuracies["nsp_accuracy"] = (nsp_logits.argmax(-1), batch["next_sentence_labels"])

        on_step = split == "train"
        for name, value in (log if log_all else {"loss": log["loss"]}).items():
            self.log(
                f"{split}/{name}",
                value,
                on_step=on_step,
                on_epoch=not on_step,
                batch_size=batch["input_ids"].shape[0],
                prog_bar=name == "loss",
                sync_dist=not on_step,
                add_dataloader_idx=False,
            )
        for name, (predicted, labels) in accuracies.items():
            metric = self.metrics[f"{split}_{name}"]
            if not log_all:  # forward() would also compute the batch's own accuracy
                metric.update(predicted, labels)
                continue
            metric(predicted, labels)
            # Logging the metric object lets Lightning compute (synced) and reset it per epoch.
            self.log(
                f"{split}/{name}",
                metric,
                on_step=on_step,
                on_epoch=True,
                prog_bar=split == "val" and name == "mlm_accuracy",
                add_dataloader_idx=False,
            )
        if split == "val" and not self.hparams.separate_mlm_at_15:  # training masks at 15%
            self.metrics["val_mlm_accuracy_at_15"](predictions, masked_labels)
            self.log(MLM_AT_15, self.metrics["val_mlm_accuracy_at_15"], **_EPOCH)
        return log["loss"]

    def training_step(self, batch: dict, batch_idx: int):
        return self._shared_step(batch, "train", log_all=self.logs_this_step(batch_idx))

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0):
        if dataloader_idx == 0:
            return self._shared_step(batch, "val")
        # The second loader: the same instances masked at 15%; accuracy only.
        _, predictions, masked_labels, _ = self._mlm(batch)
        self.metrics["val_mlm_accuracy_at_15"](predictions, masked_labels)
        self.log(MLM_AT_15, self.metrics["val_mlm_accuracy_at_15"], **_EPOCH)
        return None


_EPOCH = {"on_step": False, "on_epoch": True, "add_dataloader_idx": False}
