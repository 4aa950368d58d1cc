"""PretrainingModule: per-step values logged only on the steps the loggers write, epoch
accuracies over every batch; `task.dropout=false` pretrains without dropout and keeps the
model's rates for fine-tuning."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger

from bertlab.checkpoints.init import init_model_config, resolve
from bertlab.model import BertConfig
from bertlab.tasks.pretrain import PretrainingModule

from support.data import pretraining_batch
from support.models import BERTLAB_MODEL

VOCAB, BATCH, LENGTH, PREDICTIONS = 50, 4, 16, 3
STEPS, LOG_EVERY = 10, 4


def batches(seed: int = 0) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    return [pretraining_batch(generator, VOCAB, BATCH, LENGTH, PREDICTIONS) for _ in range(STEPS)]


def test_epoch_accuracies_count_every_batch_and_steps_log_only_when_written(tmp_path: Path):
    model = dict(BERTLAB_MODEL, hidden_dropout=0.0, attention_dropout=0.0)
    # lr 0: the weights stay as they are, so each batch's predictions can be recomputed after.
    optimizer = {"_target_": "torch.optim.SGD", "lr": 0.0, "warmup_ratio": 0.0}
    module = PretrainingModule(model=model, optimizer=optimizer, vocab_size=VOCAB)
    data = batches()
    logged = Counter()
    log = module.log

    def counting_log(name, *args, **kwargs):
        logged[name] += 1
        return log(name, *args, **kwargs)

    module.log = counting_log
    trainer = pl.Trainer(
        max_steps=STEPS,
        log_every_n_steps=LOG_EVERY,
        logger=CSVLogger(tmp_path, name="", version=""),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(data, batch_size=None))

    correct = total = nsp_correct = 0
    with torch.no_grad():
        for batch in data:
            _, predictions, labels, nsp_logits = module._mlm(batch)
            correct += int((predictions == labels).sum())
            total += labels.numel()
            nsp_correct += int((nsp_logits.argmax(-1) == batch["next_sentence_labels"]).sum())
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    epoch = next(row for row in rows if row.get("train/mlm_accuracy_epoch"))
    assert float(epoch["train/mlm_accuracy_epoch"]) == pytest.approx(correct / total)
    assert float(epoch["train/nsp_accuracy_epoch"]) == pytest.approx(nsp_correct / (STEPS * BATCH))

    # The progress bar's loss every step; the rest on the first batch and the written steps.
    assert logged["train/loss"] == STEPS
    assert logged["train/mlm_accuracy"] == logged["train/samples_per_sec"] == 3
    stepped = [row for row in rows if row.get("train/loss")]
    assert [int(row["step"]) for row in stepped] == [3, 7]  # global steps 4 and 8
    for row in stepped:
        assert row["train/mlm_accuracy_step"] and row["train/nsp_loss"], row
        assert row["train/samples_per_sec"], row


def test_without_dropout_training_steps_repeat_and_the_checkpoint_keeps_the_models_rates(
    tmp_path: Path,
):
    model = dict(BERTLAB_MODEL, hidden_dropout=0.3, attention_dropout=0.2)
    optimizer = {"_target_": "torch.optim.SGD", "lr": 0.0, "warmup_ratio": 0.0}
    batch = batches()[0]

    def two_training_losses(module: PretrainingModule) -> tuple[float, float]:
        module.train()
        with torch.no_grad():
            return tuple(float(module._mlm(batch)[0]) for _ in range(2))

    with_dropout = PretrainingModule(model=model, optimizer=optimizer, vocab_size=VOCAB)
    first, second = two_training_losses(with_dropout)
    assert first != second  # dropout draws new masks each pass

    module = PretrainingModule(model=model, optimizer=optimizer, vocab_size=VOCAB, dropout=False)
    first, second = two_training_losses(module)
    assert first == second
    with torch.no_grad():
        assert float(module.eval()._mlm(batch)[0]) == first  # as evaluation computes it
    module.train()

    trainer = pl.Trainer(
        max_steps=1,
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader([batch], batch_size=None))
    checkpoint = tmp_path / "pretrained.ckpt"
    trainer.save_checkpoint(checkpoint)
    # Fine-tuning from the checkpoint (model.init) inherits the model's rates, not zero.
    fine_tuning = init_model_config(dict(model, hidden_dropout=0.1), resolve(checkpoint))
    config = BertConfig.from_dict(fine_tuning)
    assert (config.hidden_dropout, config.attention_dropout) == (0.3, 0.2)
    reloaded = PretrainingModule.load_from_checkpoint(checkpoint, map_location="cpu")
    assert reloaded.model.bert.embeddings.dropout.p == 0.0  # resuming pretraining: still none
