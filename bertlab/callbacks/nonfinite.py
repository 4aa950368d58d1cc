"""`NonFiniteGuard`: a NaN/inf loss or gradient stops the run naming the step, or skips the step."""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from bertlab.errors import ConfigError, NonFiniteError
from bertlab.optim import total_gradient_norm

log = logging.getLogger(__name__)


class NonFiniteGuard(Callback):
    """Checks the loss and the gradients before every optimizer step.

    `action=stop` raises NonFiniteError naming the step; nothing is saved, so `last.ckpt`
    stays the last good state. `action=skip` drops that step's gradients (the optimizer
    leaves every weight and its moments untouched; the LR schedule still advances) and
    reports the count. Costs one device sync per optimizer step. Under fp16 mixed
    precision the GradScaler already skips overflowing steps, so only the loss is checked.
    """

    ACTIONS = ("stop", "skip")

    def __init__(self, action: str = "stop"):
        if action not in self.ACTIONS:
            raise ConfigError(
                f"callbacks.nonfinite.action={action!r}: allowed values are "
                f"{', '.join(self.ACTIONS)}"
            )
        self.action = action
        self.skipped_steps = 0
        self._bad_loss: torch.Tensor | None = None

    def on_before_backward(self, trainer: pl.Trainer, pl_module, loss: torch.Tensor) -> None:
        bad = ~torch.isfinite(loss.detach()).all()
        self._bad_loss = bad if self._bad_loss is None else self._bad_loss | bad

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module, optimizer) -> None:
        bad_loss, self._bad_loss = self._bad_loss, None
        what = self._fault(trainer, pl_module, optimizer, bad_loss)
        if what is None:
            return
        step = trainer.global_step + 1
        where = (
            f"step {step} (epoch {trainer.current_epoch}, batch "
            f"{trainer.fit_loop.epoch_loop.batch_idx})"
        )
        if self.action == "skip":
            optimizer.zero_grad(set_to_none=True)
            self.skipped_steps += 1
            log.warning("%s at %s: step skipped (%d so far)", what, where, self.skipped_steps)
            pl_module.log("train/skipped_steps", float(self.skipped_steps), on_step=True)
            return
        raise NonFiniteError(
            f"{what} at {where}; stopped without saving, so the last checkpoint is the last good "
            "state. Lower optimizer.lr, or set callbacks.nonfinite.action=skip to skip such steps"
        )

    def _fault(
        self, trainer: pl.Trainer, pl_module, optimizer, bad_loss: torch.Tensor | None
    ) -> str | None:
        if bad_loss is not None and bool(bad_loss):
            return "non-finite loss"
        if getattr(trainer.precision_plugin, "scaler", None) is not None:
            return None  # fp16: the GradScaler skips steps with inf/NaN gradients itself
        if hasattr(pl_module, "gradient_norm"):  # bertlab's modules: one norm a step, shared
            norm = pl_module.gradient_norm(optimizer)
        else:
            params = (p for group in optimizer.param_groups for p in group["params"])
            norm = total_gradient_norm(params)
        if norm is not None and not torch.isfinite(norm):
            return "non-finite gradient"
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"skipped_steps": self.skipped_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped_steps = state_dict.get("skipped_steps", 0)
