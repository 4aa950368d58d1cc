"""Samplers that shard across DDP ranks themselves and know the epoch.

bertlab trainers set `use_distributed_sampler: false`: these samplers give each rank
its own slice (validation: every example exactly once, no padding duplicates) and pass
the epoch on to the dataset, which dynamic masking needs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def rank_and_world_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochSampler(Sampler):
    """Yields `(epoch, index)` pairs: a seeded shuffle per epoch, this rank's share of it.

    Training (`shuffle=True`) drops the last few indices so every rank gets the same count,
    then deals the order round-robin: rank r takes `order[r::world]`, so the ranks' i-th
    batches together are exactly the i-th batch one process would draw at world x the batch
    size (DDP reproduces single-process training). Evaluation (`shuffle=False`) deals
    indices round-robin too, each exactly once.
    """

    def __init__(
        self,
        num_items: int,
        shuffle: bool,
        seed: int = 0,
        lengths: Sequence[int] | None = None,
        step_items: int = 1,
    ):
        """With `lengths` (training), each optimizer step's `step_items` items per rank (batch
        size x gradient accumulation) are of similar length; see `group_by_length`."""
        self.num_items, self.shuffle, self.seed = num_items, shuffle, seed
        self.lengths, self.step_items = lengths, step_items
        self.epoch = 0
        self.resume_epoch, self.resume_start = -1, 0

    def set_epoch(self, epoch: int) -> None:  # called by Lightning at every epoch start
        self.epoch = epoch

    def resume_at(self, epoch: int, start: int) -> None:
        """Exact resume (bertlab/callbacks.py): `epoch` continues at this rank's `start`-th item."""
        self.epoch, self.resume_epoch, self.resume_start = epoch, epoch, start

    def _indices(self) -> list[int]:
        rank, world = rank_and_world_size()
        if not self.shuffle:
            return list(range(rank, self.num_items, world))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.num_items, generator=generator).tolist()
        kept = self.num_items // world * world
        order = order[:kept]
        if self.lengths is not None:
            order = group_by_length(order, self.lengths, self.step_items * world, generator)
        return order[rank::world]

    def __iter__(self):
        start = self.resume_start if self.epoch == self.resume_epoch else 0
        return iter([(self.epoch, index) for index in self._indices()[start:]])

    def __len__(self) -> int:
        rank, world = rank_and_world_size()
        if not self.shuffle:
            return len(range(rank, self.num_items, world))
        return self.num_items // world


def group_by_length(
    order: list[int],
    lengths: Sequence[int],
    global_batch: int,
    generator: torch.Generator,
    batches_per_group: int = 50,
) -> list[int]:
    """Reorder a shuffled epoch so each batch holds items of similar length.

    Batches are padded to their longest item, so a random batch of mostly short sequences
    costs as much as a full one. Each run of `batches_per_group` batches of the shuffled
    order is sorted by length and cut into batches, and the batches are shuffled again
    (the "sortish" order of fairseq and Hugging Face's `group_by_length`). Full batches
    come first and a short last batch stays last, so every global batch (all ranks' batches
    of one step) is `global_batch` consecutive items and DDP dealing stays step-aligned.
    """
    group = global_batch * batches_per_group
    batches = []
    for start in range(0, len(order), group):
        chunk = sorted(order[start : start + group], key=lengths.__getitem__)
        batches += [chunk[i : i + global_batch] for i in range(0, len(chunk), global_batch)]
    full = len(batches)
    if batches and len(batches[-1]) < global_batch:
        full -= 1  # groups are whole numbers of batches: only the very last can be short
    shuffled = [batches[i] for i in torch.randperm(full, generator=generator).tolist()]
    return [index for batch in shuffled + batches[full:] for index in batch]
