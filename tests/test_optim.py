"""Optimizers, parameter groups, schedules and time budgets."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from bertlab.optim import (
    BertAdam,
    Lamb,
    budget_clock,
    budgeted,
    configure_optimizer,
    parameter_groups,
    warmup_then_decay,
)


def test_no_weight_decay_on_biases_and_layer_norm():
    from bertlab.model import BertConfig, BertForPreTraining

    model = BertForPreTraining(
        BertConfig(vocab_size=50, num_layers=1, hidden_size=16, num_heads=2, intermediate_size=32)
    )
    decay, no_decay = parameter_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(
        not names[id(p)].endswith("bias") and "LayerNorm" not in names[id(p)]
        for p in decay["params"]
    )
    assert {names[id(p)] for p in no_decay["params"]} >= {
        "cls.predictions.bias",
        "bert.embeddings.LayerNorm.weight",
    }
    counted = len(decay["params"]) + len(no_decay["params"])
    assert counted == len(list(model.parameters()))  # tied decoder weight counted once


def test_linear_warmup_then_linear_decay():
    multiplier = warmup_then_decay(warmup_steps=4, total_steps=14)
    assert [round(multiplier(s), 3) for s in (0, 3, 4, 9, 14)] == [0.2, 0.8, 1.0, 0.5, 0.0]


def test_warmup_ratio_and_schedule_per_optimizer_step():
    model = torch.nn.Linear(3, 3)
    config = {"_target_": "torch.optim.AdamW", "lr": 0.1, "weight_decay": 0.0, "warmup_ratio": 0.1}
    built = configure_optimizer(model, config, total_steps=100)
    scheduler = built["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(100):
        lrs.append(built["optimizer"].param_groups[0]["lr"])
        built["optimizer"].step()
        scheduler.step()
    assert lrs.index(max(lrs)) == 10 and lrs[10] == pytest.approx(0.1)
    assert lrs[-1] == pytest.approx(0.1 / 90, rel=1e-6)


def test_unknown_schedule_names_allowed_values():
    with pytest.raises(
        ValueError, match="optimizer.schedule='cosnie': allowed values are linear, constant, cosine"
    ):
        warmup_then_decay(1, 10, "cosnie")


def test_bertadam_has_no_bias_correction():
    # Adam's first step is lr * sign(grad); without bias correction it is lr *
    # (1-b1)/sqrt(1-b2) * sign.
    weight = torch.nn.Parameter(torch.zeros(2))
    optimizer = BertAdam([weight], lr=0.1, betas=(0.9, 0.999), eps=0.0)
    weight.grad = torch.tensor([1.0, -2.0])
    optimizer.step()
    expected = 0.1 * 0.1 / (0.001**0.5)
    torch.testing.assert_close(weight.data, torch.tensor([-expected, expected]))


def test_lamb_scales_update_by_trust_ratio():
    weight = torch.nn.Parameter(torch.full((4,), 3.0))
    optimizer = Lamb([weight], lr=0.1, eps=0.0)
    weight.grad = torch.ones(4)
    optimizer.step()
    # Adam direction is all ones (norm 2), weight norm 6: step = lr * 6/2 * 1
    torch.testing.assert_close(weight.data, torch.full((4,), 3.0 - 0.3))


def test_wsd_warms_up_holds_then_decays_over_the_final_share():
    multiplier = warmup_then_decay(
        warmup_steps=10, total_steps=100, schedule="wsd", decay_ratio=0.2
    )
    assert [round(multiplier(s), 3) for s in (0, 9, 10, 50, 80, 90, 100)] == [
        0.091,
        0.909,
        1.0,
        1.0,
        1.0,
        0.5,
        0.0,
    ]
    root = warmup_then_decay(10, 100, "wsd", decay_ratio=0.2, decay_shape="1-sqrt")
    assert root(85) == pytest.approx(1 - 0.25**0.5)
    with pytest.raises(ValueError, match="optimizer.decay_ratio=0: must be in"):
        warmup_then_decay(10, 100, "wsd", decay_ratio=0)


def test_a_time_budget_drives_the_schedule_by_the_share_spent():
    spent = [0.0]
    multiplier = budgeted(0.1, float("inf"), "wsd", lambda: spent[0], decay_ratio=0.2)
    values = {}
    for share in (0.05, 0.1, 0.5, 0.9, 1.0):
        spent[0] = share
        values[share] = multiplier(step=123)  # the step count does not matter without a limit
    assert values == pytest.approx({0.05: 0.5, 0.1: 1.0, 0.5: 1.0, 0.9: 0.5, 1.0: 0.0})
    # With a step limit as well, whichever is further along leads.
    linear = budgeted(0.0, 100, "linear", lambda: 0.25)
    assert linear(10) == pytest.approx(0.75) and linear(60) == pytest.approx(0.4)


def test_budget_clock_reads_lightnings_timer_and_its_restored_offset():

    trainer = pl.Trainer(max_time={"seconds": 100}, logger=False, enable_checkpointing=False)
    spent = budget_clock(trainer)
    timer = next(c for c in trainer.callbacks if type(c).__name__ == "Timer")
    timer.load_state_dict({"time_elapsed": {"train": 40.0}})  # as resume restores it
    assert spent() == pytest.approx(0.4)
    assert budget_clock(pl.Trainer(logger=False, enable_checkpointing=False)) is None


def test_fused_adamw_runs_on_cpu_and_is_dropped_where_torch_has_no_kernel():
    settings = {"_target_": "torch.optim.AdamW", "lr": 1e-3, "fused": True}
    model = torch.nn.Linear(4, 4)
    optimizer = configure_optimizer(model, settings, total_steps=10)["optimizer"]
    assert optimizer.defaults["fused"]  # torch >= 2.4 has a fused CPU kernel
    model(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    on_meta = torch.nn.Linear(4, 4, device="meta")
    assert not configure_optimizer(on_meta, settings, total_steps=10)["optimizer"].defaults["fused"]
