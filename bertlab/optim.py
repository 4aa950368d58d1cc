"""Optimizers and learning-rate schedules: parameter groups, BERTAdam, LAMB, warmup + decay.

The `optimizer` config section is the optimizer class (`_target_`) with its arguments,
plus three keys handled here: `weight_decay` (never applied to biases and LayerNorm),
`warmup_steps` / `warmup_ratio`, and `schedule` (`linear` or `constant` after warmup).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from hydra.utils import get_class
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

SCHEDULES = ("linear", "constant", "cosine")


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices and embeddings; exempt biases and LayerNorm weights, as BERT does."""
    decay, no_decay, seen = [], [], set()
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad or id(parameter) in seen:  # tied weights appear twice
            continue
        seen.add(id(parameter))
        exempt = parameter.ndim < 2 or "LayerNorm" in name or name.endswith("bias")
        (no_decay if exempt else decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def configure_optimizer(model: nn.Module, optimizer: dict, total_steps: int) -> dict:
    """Build the optimizer and a per-step schedule from the `optimizer` config section.

    Returns Lightning's `configure_optimizers` dict. `total_steps` counts optimizer steps
    (after gradient accumulation), so the schedule is right whatever the accumulation.
    """
    settings = dict(optimizer)
    optimizer_class = get_class(settings.pop("_target_"))
    weight_decay = settings.pop("weight_decay", 0.0)
    warmup_steps = settings.pop("warmup_steps", None)
    warmup_ratio = settings.pop("warmup_ratio", 0.0)
    schedule = settings.pop("schedule", "linear")
    if "betas" in settings:
        settings["betas"] = tuple(settings["betas"])
    if settings.get("fused") and not fused_kernels_cover(model):
        settings["fused"] = None  # no fused kernel for these devices: fall back quietly
    built = optimizer_class(parameter_groups(model, weight_decay), **settings)
    if warmup_steps is None:
        warmup_steps = math.ceil(warmup_ratio * total_steps)
    scheduler = LambdaLR(built, warmup_then_decay(warmup_steps, total_steps, schedule))
    return {"optimizer": built, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def fused_kernels_cover(model: nn.Module) -> bool:
    """Whether torch has fused optimizer kernels for every device the parameters live on.

    CUDA always; CPU since torch 2.4, where fused AdamW is several times faster than the
    per-tensor loop (the 30522 x H embedding matrix makes the optimizer step a large
    share of a small BERT's step).
    """
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError:  # older torch: CUDA only
        supported = {"cuda"}
    else:
        supported = set(_get_fused_kernels_supported_devices())
    return all(p.device.type in supported for p in model.parameters())


def warmup_then_decay(warmup_steps: int, total_steps: int, schedule: str = "linear"):
    """LR multiplier: linear warmup from 0 to 1, then linear (or cosine) decay to 0 at total_steps."""
    if schedule not in SCHEDULES:
        raise ValueError(
            f"optimizer.schedule={schedule!r}: allowed values are {', '.join(SCHEDULES)}"
        )

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if schedule == "constant" or total_steps <= warmup_steps:
            return 1.0
        progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    return multiplier


class _AdamFamily(Optimizer):
    """Adam's moment estimates; subclasses decide how the resulting direction is applied."""

    bias_correction = True

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
    ):
        super().__init__(
            params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        )

    def _direction(self, p: torch.Tensor, group: dict) -> torch.Tensor:
        """m / (sqrt(v) + eps), plus decoupled weight decay, for parameter p."""
        beta1, beta2 = group["betas"]
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.mul_(beta1).add_(p.grad, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
        if self.bias_correction:
            exp_avg = exp_avg / (1 - beta1 ** state["step"])
            exp_avg_sq = exp_avg_sq / (1 - beta2 ** state["step"])
        update = exp_avg / (exp_avg_sq.sqrt() + group["eps"])
        if group["weight_decay"]:
            update.add_(p, alpha=group["weight_decay"])
        return update

    def _apply(self, p: torch.Tensor, update: torch.Tensor, lr: float) -> None:
        p.add_(update, alpha=-lr)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._apply(p, self._direction(p, group), group["lr"])
        return loss


class BertAdam(_AdamFamily):
    """Adam without bias correction and with decoupled weight decay: the original BERT optimizer.

    Dropping bias correction makes the first steps smaller than Adam's, which is why BERT
    fine-tuning recipes tuned on it (e.g. eps 1e-6) differ slightly from AdamW ones.
    """

    bias_correction = False


class Lamb(_AdamFamily):
    """LAMB (You et al., 2019): Adam direction scaled per tensor by ||w|| / ||update||, for large batches."""

    def _apply(self, p: torch.Tensor, update: torch.Tensor, lr: float) -> None:
        weight_norm, update_norm = p.norm(), update.norm()
        trust_ratio = (
            (weight_norm / update_norm).item() if weight_norm > 0 and update_norm > 0 else 1.0
        )
        p.add_(update, alpha=-lr * trust_ratio)
