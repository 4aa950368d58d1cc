"""`ExactResume`: `resume=true` continues with the same RNG states and the same position in the
epoch.
"""

from __future__ import annotations

import logging
import random
import warnings
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.warnings import PossibleUserWarning
from torch.utils.data import DataLoader

log = logging.getLogger(__name__)

MID_EPOCH_WARNING = "You're resuming from a checkpoint that ended before the epoch ended"


class ExactResume(Callback):
    """`resume=true` continues as if never stopped: same RNG states, same place in the epoch.

    Lightning restores weights, optimizer, LR schedule, precision scaler and loop counters.
    Two things it leaves out:

    - RNG states (dropout): saved with every checkpoint, restored when training restarts.
      Every rank gets rank 0's states; with one seed for all ranks, they were equal anyway.
    - The data position. Lightning restores it only for a DataLoader with `state_dict()`,
      and not at all when `configure_optimizers` reads `trainer.estimated_stepping_batches`
      (as bertlab's does: Lightning issue 20550). So the position is taken from the
      checkpoint's loop counters, and the train sampler is told, via `resume_at(epoch,
      start)`, before its first iterator is made. Samplers without `resume_at` restart the
      epoch (Lightning's behaviour, with its warning).

    Two Lightning details would still break exactness, and are worked around here: after a
    resume from an end-of-epoch checkpoint it gives the sampler an epoch one ahead, and a
    new DataLoader iterator draws its seed from the global RNG that dropout uses.

    The W&B run continues by its id (bertlab/runtime/wandb_run.py); metrics.csv is appended
    to (bertlab/runtime/loggers.py).
    """

    def __init__(self) -> None:
        self._rng_states: dict | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"rng": capture_rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._rng_states = state_dict.get("rng")

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module, checkpoint: dict) -> None:
        position = training_position(checkpoint)
        fitting = trainer.state.fn == TrainerFn.FITTING  # not trainer.validate(ckpt_path=...)
        if position is not None and fitting and trainer.datamodule is not None:
            resume_train_sampler(trainer.datamodule, *position)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        give_loaders_own_generators(trainer)
        if self._rng_states is not None:
            restore_rng_states(self._rng_states)
            self._rng_states = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning sets the sampler epoch from its "processed" counter, which after a resume
        # from an end-of-epoch checkpoint runs one ahead of trainer.current_epoch.
        sampler = getattr(trainer.train_dataloader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(trainer.current_epoch)


def training_position(checkpoint: dict) -> tuple[int, int] | None:
    """(epoch, batches of it already trained) from a Lightning checkpoint's loop counters."""
    fit_loop = checkpoint.get("loops", {}).get("fit_loop")
    if not fit_loop:
        return None
    return checkpoint["epoch"], fit_loop["epoch_loop.batch_progress"]["current"]["processed"]


def resume_train_sampler(datamodule: pl.LightningDataModule, epoch: int, batches: int) -> None:
    """Have the next `train_dataloader()` start `epoch` after `batches` batches."""
    make_loader = datamodule.train_dataloader

    def train_dataloader():
        del datamodule.train_dataloader  # once: later reloads start epochs from their beginning
        loader = make_loader()
        sampler = getattr(loader, "sampler", None)
        if not hasattr(sampler, "resume_at"):
            log.warning("%s cannot skip to the resumed position", type(sampler).__name__)
            return loader
        if batches >= len(loader):  # saved as the epoch ended: the next one starts afresh
            sampler.resume_at(epoch + 1, 0)
        else:  # a sampler of indices counts items; one of whole batches (batch_size=None) batches
            sampler.resume_at(epoch, batches * (loader.batch_size or 1))
        # Lightning cannot see that this loader resumes mid-epoch and would warn otherwise.
        warnings.filterwarnings("ignore", message=MID_EPOCH_WARNING, category=PossibleUserWarning)
        return loader

    datamodule.train_dataloader = train_dataloader


def give_loaders_own_generators(trainer: pl.Trainer) -> None:
    """Each new DataLoader iterator draws a seed, from the global RNG unless the loader has a
    generator. Whether Lightning makes a new train iterator right after a resume depends on
    where in the epoch the checkpoint was taken, so those draws would shift dropout's RNG."""
    val_loaders = trainer.val_dataloaders
    if not isinstance(val_loaders, (list, tuple)):
        val_loaders = [val_loaders]
    for loader in [trainer.train_dataloader, *val_loaders]:
        if isinstance(loader, DataLoader) and loader.generator is None:
            loader.generator = torch.Generator().manual_seed(torch.initial_seed())


def capture_rng_states() -> dict[str, Any]:
    """Every RNG a training step may draw from, as tensors and plain values (weights_only loads
    it).
    """
    numpy_state = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    random.setstate(_as_tuples(states["python"]))
    cuda_states = states.get("cuda")
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)


def _as_tuples(value):
    """random.setstate wants the nested tuples that a checkpoint round trip may turn into lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
