"""Optimizers and learning-rate schedules: parameter groups, BERTAdam, LAMB, warmup + decay.

The `optimizer` config section is the optimizer class (`_target_`) with its arguments,
plus keys handled here: `weight_decay` (never applied to biases and LayerNorm),
`warmup_steps` / `warmup_ratio`, `schedule` (after warmup: `linear` or `cosine` decay to 0,
`constant`, or `wsd`: warmup, stable, then a decay over the final `decay_ratio` of
training, `decay_shape` linear or 1-sqrt).

Training progress is the share of optimizer steps done, or, with a time budget
(`trainer.max_time`), the larger of that and the share of the budget spent, so a budgeted
run ends with its schedule completed. The budget's clock is Lightning's `Timer`, whose
elapsed time the checkpoints keep: a resumed run continues the same accounting.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import pytorch_lightning as pl
import torch
from hydra.utils import get_class
from pytorch_lightning.callbacks import Timer
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from bertlab.errors import ConfigError

SCHEDULES = ("linear", "constant", "cosine", "wsd")
DECAY_SHAPES = ("linear", "1-sqrt")


def total_gradient_norm(parameters: Iterable[torch.Tensor]) -> torch.Tensor | None:
    """The total 2-norm of the parameters' gradients, None when none has one."""
    gradients = [p.grad for p in parameters if p.grad is not None]
    return torch.nn.utils.get_total_norm(gradients) if gradients else None


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


def configure_optimizer(
    model: nn.Module,
    optimizer: dict,
    total_steps: float,
    budget_spent: Callable[[], float] | None = None,
) -> dict:
    """Build the optimizer and a per-step schedule from the `optimizer` config section.

    Returns Lightning's `configure_optimizers` dict. `total_steps` counts optimizer steps
    (after gradient accumulation), so the schedule is right whatever the accumulation; it
    may be infinite when a time budget alone ends training. `budget_spent()` is the share
    of that budget spent (see `budget_clock`).
    """
    settings = dict(optimizer)
    optimizer_class = get_class(settings.pop("_target_"))
    weight_decay = settings.pop("weight_decay", 0.0)
    warmup_steps = settings.pop("warmup_steps", None)
    warmup_ratio = settings.pop("warmup_ratio", 0.0)
    schedule = settings.pop("schedule", "linear")
    decay = {key: settings.pop(key) for key in ("decay_ratio", "decay_shape") if key in settings}
    if "betas" in settings:
        settings["betas"] = tuple(settings["betas"])
    if settings.get("fused") and not fused_kernels_cover(model):
        settings["fused"] = None  # no fused kernel for these devices: fall back quietly
    built = optimizer_class(parameter_groups(model, weight_decay), **settings)
    if budget_spent is not None:
        multiplier = budgeted(warmup_ratio, total_steps, schedule, budget_spent, **decay)
    else:
        if warmup_steps is None:
            warmup_steps = math.ceil(warmup_ratio * total_steps)
        multiplier = warmup_then_decay(warmup_steps, total_steps, schedule, **decay)
    scheduler = LambdaLR(built, multiplier)
    return {"optimizer": built, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def budget_clock(trainer: pl.Trainer) -> Callable[[], float] | None:
    """With `trainer.max_time`, a function giving the share of the time budget spent; else None.

    It reads Lightning's `Timer`, which stops the run when the budget is spent and keeps
    its elapsed time in every checkpoint (restored on resume).
    """
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    if timer is None or timer.time_remaining() is None:
        return None

    def spent() -> float:
        elapsed = timer.time_elapsed()
        budget = elapsed + timer.time_remaining()
        return min(1.0, elapsed / budget) if budget > 0 else 1.0

    return spent


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


def warmup_then_decay(
    warmup_steps: int,
    total_steps: float,
    schedule: str = "linear",
    decay_ratio: float = 0.1,
    decay_shape: str = "linear",
):
    """LR multiplier by optimizer step: linear warmup from 0 to 1, then `schedule` to 0 at
    total_steps.
    """
    after_warmup = after_warmup_multiplier(schedule, decay_ratio, decay_shape)

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if math.isinf(total_steps) or total_steps <= warmup_steps:
            return 1.0
        done = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        return after_warmup(min(1.0, step / total_steps), done)

    return multiplier


def budgeted(
    warmup_ratio: float,
    total_steps: float,
    schedule: str,
    budget_spent: Callable[[], float],
    decay_ratio: float = 0.1,
    decay_shape: str = "linear",
):
    """LR multiplier by training progress: the larger of steps done and time budget spent.

    Warmup is the first `warmup_ratio` of that progress, so a run that may end on either
    limit warms up, holds and decays in step with whichever comes first.
    """
    after_warmup = after_warmup_multiplier(schedule, decay_ratio, decay_shape)

    def multiplier(step: int) -> float:
        progress = budget_spent()
        if not math.isinf(total_steps) and total_steps > 0:
            progress = max(progress, step / total_steps)
        progress = min(1.0, progress)
        if progress < warmup_ratio:
            return progress / warmup_ratio
        return after_warmup(progress, (progress - warmup_ratio) / (1 - warmup_ratio))

    return multiplier


def after_warmup_multiplier(schedule: str, decay_ratio: float, decay_shape: str):
    """f(progress, done) in [0, 1], the schedule after warmup: `progress` is the share of
    training done, `done` the share of the post-warmup part (linear and cosine decay over it)."""
    if schedule not in SCHEDULES:
        raise ConfigError(
            f"optimizer.schedule={schedule!r}: allowed values are {', '.join(SCHEDULES)}"
        )
    if decay_shape not in DECAY_SHAPES:
        raise ConfigError(
            f"optimizer.decay_shape={decay_shape!r}: allowed values are {', '.join(DECAY_SHAPES)}"
        )
    if not 0 < decay_ratio <= 1:
        raise ConfigError(
            f"optimizer.decay_ratio={decay_ratio}: must be in (0, 1] (the final share of "
            "training spent decaying)"
        )

    def multiplier(progress: float, done: float) -> float:
        if schedule == "constant":
            return 1.0
        if schedule == "wsd":  # stable until the final decay_ratio, then decay to 0
            decayed = (progress - (1 - decay_ratio)) / decay_ratio
            if decayed <= 0:
                return 1.0
            return 1.0 - (math.sqrt(decayed) if decay_shape == "1-sqrt" else decayed)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * done))
        return 1.0 - done

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
    """LAMB (You et al., 2019): Adam direction scaled per tensor by ||w|| / ||update||, for large
    batches.
    """

    def _apply(self, p: torch.Tensor, update: torch.Tensor, lr: float) -> None:
        weight_norm, update_norm = p.norm(), update.norm()
        trust_ratio = (
            (weight_norm / update_norm).item() if weight_norm > 0 and update_norm > 0 else 1.0
        )
        p.add_(update, alpha=-lr * trust_ratio)
