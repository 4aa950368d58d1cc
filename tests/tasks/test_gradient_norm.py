"""One gradient norm a step: NonFiniteGuard checks it, clipping scales by it, and the loggers
get it as `train/grad_norm` (the norm before clipping, as the transformers Trainer logs it)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import CSVLogger

from bertlab.callbacks.nonfinite import NonFiniteGuard
from bertlab.tasks.pretrain import PretrainingModule

from support.data import pretraining_batch
from support.models import BERTLAB_MODEL

VOCAB, BATCH, LENGTH, STEPS = 50, 4, 16, 6


def batches() -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    return [pretraining_batch(generator, VOCAB, BATCH, LENGTH, 3) for _ in range(STEPS)]


def module(lr: float) -> PretrainingModule:
    torch.manual_seed(0)
    model = dict(BERTLAB_MODEL, hidden_dropout=0.0, attention_dropout=0.0)
    optimizer = {"_target_": "torch.optim.SGD", "lr": lr, "warmup_ratio": 0.0}
    return PretrainingModule(model=model, optimizer=optimizer, vocab_size=VOCAB)


def fit(network: PretrainingModule, tmp_path: Path, clip: float | None, **trainer) -> pl.Trainer:
    trainer = pl.Trainer(
        max_steps=STEPS,
        gradient_clip_val=clip,
        logger=CSVLogger(tmp_path, name="", version=""),
        callbacks=[NonFiniteGuard()],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        **trainer,
    )
    loader = torch.utils.data.DataLoader(batches(), batch_size=None)
    trainer.fit(network, train_dataloaders=loader)
    return trainer


def test_logged_grad_norm_is_the_norm_of_that_steps_gradients(tmp_path: Path):
    network = module(lr=0.0)  # the weights stay: every step's gradients can be recomputed
    fit(network, tmp_path, clip=1.0, log_every_n_steps=2)
    with (tmp_path / "metrics.csv").open() as f:
        logged = {
            int(r["step"]): float(r["train/grad_norm"])
            for r in csv.DictReader(f)
            if r["train/grad_norm"]
        }
    assert sorted(logged) == [1, 3, 5]  # every 2nd step (log_every_n_steps)
    data = batches()
    for step, value in logged.items():
        network.zero_grad()
        batch = data[step]
        mlm_loss, _, nsp_logits = network.model(
            *(batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")),
            batch["masked_positions"],
            batch["masked_labels"],
        )
        (mlm_loss + F.cross_entropy(nsp_logits, batch["next_sentence_labels"])).backward()
        norm = torch.nn.utils.get_total_norm([p.grad for p in network.parameters()])
        assert value == pytest.approx(norm.item(), rel=1e-5)
        assert value > 1.0  # so clip=1.0 clipped these steps (the next test's premise)


@pytest.mark.parametrize("clip", [0.05, 1e6])  # every step clipped; none
def test_clipping_by_the_shared_norm_equals_lightnings_and_computes_it_once(
    tmp_path: Path, monkeypatch, clip: float
):
    ours, lightnings = module(lr=0.5), module(lr=0.5)
    # Lightning's own clipping (a second norm inside torch.nn.utils.clip_grad_norm_).
    lightnings.configure_gradient_clipping = pl.LightningModule.configure_gradient_clipping.__get__(
        lightnings
    )
    fit(lightnings, tmp_path / "lightning", clip=clip)
    norms = []
    get_total_norm = torch.nn.utils.get_total_norm
    monkeypatch.setattr(
        torch.nn.utils, "get_total_norm", lambda *a, **k: norms.append(1) or get_total_norm(*a, **k)
    )
    scaled = []
    clip_grads_with_norm_ = torch.nn.utils.clip_grads_with_norm_
    monkeypatch.setattr(
        torch.nn.utils,
        "clip_grads_with_norm_",
        lambda *a, **k: scaled.append(1) or clip_grads_with_norm_(*a, **k),
    )
    fit(ours, tmp_path / "ours", clip=clip)
    assert len(norms) == STEPS  # the guard's check, the clipping and the log share one
    # an unclipped step skips multiplying every gradient by 1.0
    assert len(scaled) == (STEPS if clip < 1 else 0)
    for (name, mine), (_, theirs) in zip(
        ours.named_parameters(), lightnings.named_parameters(), strict=True
    ):
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-7, msg=name)
    assert not torch.equal(
        ours.model.cls.predictions.decoder.weight, module(0.5).model.cls.predictions.decoder.weight
    )
