"""What every bertlab LightningModule shares: optimizer and schedule, throughput, the tokenizer in
the checkpoint.
"""

from __future__ import annotations

import time

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.precision import MixedPrecision, Precision
from torch import nn

from bertlab.optim import budget_clock, configure_optimizer, total_gradient_norm


class BertTaskModule(pl.LightningModule):
    """Base for task modules. Subclasses build `self.model` (Hugging Face parameter names).

    Constructor arguments are plain values, saved as hyperparameters, so
    `Subclass.load_from_checkpoint(path)` rebuilds the module without Hydra.
    """

    model: nn.Module

    def __init__(self, model: dict, optimizer: dict, vocab_size: int, **task_settings):
        super().__init__()
        self.save_hyperparameters()
        self.tokenizer_json: str | None = None  # set by the entry point; saved in every checkpoint
        self._step_started = 0.0
        self._gradient_norm: tuple[tuple, torch.Tensor | None] | None = None

    @property
    def network(self) -> nn.Module:
        """`self.model`, compiled when `model.compile=true` (kept out of the state dict)."""
        compiled = self.__dict__.get("_compiled_model")  # no `or`: bool() of it raises
        return self.model if compiled is None else compiled

    def setup(self, stage: str) -> None:
        if self.hparams.model.get("compile") and "_compiled_model" not in self.__dict__:
            self.__dict__["_compiled_model"] = torch.compile(self.model)

    def configure_optimizers(self):
        settings = dict(self.hparams.optimizer)
        if settings.get("fused") and self._clips_under_mixed_precision():
            # Lightning refuses to clip gradients for a fused optimizer under mixed precision
            # (such an optimizer may unscale them itself); the default foreach kernels are
            # nearly as fast on GPU.
            settings["fused"] = None
        return configure_optimizer(
            self.model,
            settings,
            self.trainer.estimated_stepping_batches,
            budget_clock(self.trainer),  # trainer.max_time drives the schedule too
        )

    def _clips_under_mixed_precision(self) -> bool:
        return bool(self.trainer.gradient_clip_val) and isinstance(
            self.trainer.precision_plugin, MixedPrecision
        )

    def gradient_norm(self, optimizer) -> torch.Tensor | None:
        """The total 2-norm of this optimizer step's gradients (None without any), computed
        once a step: NonFiniteGuard checks it, clipping scales by it, the loggers get it as
        `train/grad_norm`. Each norm reads every gradient, 1% of a `model=tiny` CPU step."""
        key = (self.trainer.global_step, id(optimizer))
        if self._gradient_norm is None or self._gradient_norm[0] != key:
            norm = total_gradient_norm(self.trainer.precision_plugin.main_params(optimizer))
            self._gradient_norm = (key, norm)
        return self._gradient_norm[1]

    def on_before_optimizer_step(self, optimizer) -> None:
        # The norm before clipping, as the transformers Trainer logs its grad_norm.
        if self.logs_this_step(self.trainer.fit_loop.epoch_loop.batch_idx):
            norm = self.gradient_norm(optimizer)
            if norm is not None:
                self.log("train/grad_norm", norm, on_step=True, on_epoch=False)

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        """Lightning's clipping by norm, scaled by `gradient_norm` instead of a second norm.
        Precision plugins that clip their own way (FSDP, DeepSpeed) keep theirs."""
        plugin = type(self.trainer.precision_plugin)
        own_way = plugin.clip_grad_by_norm is not Precision.clip_grad_by_norm or (
            plugin.clip_gradients not in (Precision.clip_gradients, MixedPrecision.clip_gradients)
        )
        if not gradient_clip_val or gradient_clip_algorithm not in (None, "norm") or own_way:
            super().configure_gradient_clipping(
                optimizer, gradient_clip_val, gradient_clip_algorithm
            )
            return
        norm = self.gradient_norm(optimizer)
        if norm is None:
            return
        # The coefficient as torch computes it: at 1 or more every gradient would be
        # multiplied by exactly 1.0. On a CPU reading it costs no device sync, so an
        # unclipped step skips that pass over every gradient (2% of a fine-tuning step).
        if norm.device.type == "cpu" and gradient_clip_val / (norm + 1e-6) >= 1.0:
            return
        params = self.trainer.precision_plugin.main_params(optimizer)
        # gradients set to None since (a skipped step) are left alone
        torch.nn.utils.clip_grads_with_norm_(params, gradient_clip_val, norm)

    def logs_this_step(self, batch_idx: int) -> bool:
        """Whether a training step's per-step values reach the loggers: the first batch of an
        epoch (which registers the epoch metrics) and every `trainer.log_every_n_steps`.

        Each `self.log` call costs Lightning about 1 ms on a CPU (it copies the metric's
        metadata), 15% of a `model=tiny` step on 2 cores at seven calls a step; values the
        loggers would drop are not logged. `_logger_connector.should_update_logs` is what
        Lightning's own LearningRateMonitor asks.
        """
        return batch_idx == 0 or self.trainer._logger_connector.should_update_logs

    # Throughput: samples and real (non-padding) tokens per second of wall time per batch.
    def on_train_batch_start(self, batch, batch_idx) -> None:
        self._step_started = time.perf_counter()

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        seconds = time.perf_counter() - self._step_started
        if seconds > 0 and self.logs_this_step(batch_idx):
            samples = batch["input_ids"].shape[0]
            tokens = int(batch["attention_mask"].sum()) if "attention_mask" in batch else samples
            self.log("train/samples_per_sec", samples / seconds, on_step=True, on_epoch=False)
            self.log("train/tokens_per_sec", tokens / seconds, on_step=True, on_epoch=False)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Lightning saves the hyperparameters but not the class; checkpoints/restore.py reads this.
        checkpoint["module_class"] = type(self).__name__
        if self.tokenizer_json is not None:
            checkpoint["tokenizer"] = self.tokenizer_json

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.tokenizer_json = checkpoint.get("tokenizer", self.tokenizer_json)
