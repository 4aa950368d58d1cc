"""Samplers that shard across DDP ranks themselves and know the epoch.

bertlab trainers set `use_distributed_sampler: false`: these samplers give each rank
its own slice (validation: every example exactly once, no padding duplicates) and pass
the epoch on to the dataset, which dynamic masking needs.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def rank_and_world_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochSampler(Sampler):
    """Yields `(epoch, index)` pairs: a seeded shuffle per epoch, this rank's share of it.

    Training (`shuffle=True`) drops the last few indices so every rank gets the same count;
    evaluation (`shuffle=False`) deals indices round-robin, each exactly once.
    """

    def __init__(self, num_items: int, shuffle: bool, seed: int = 0):
        self.num_items, self.shuffle, self.seed = num_items, shuffle, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # called by Lightning at every epoch start
        self.epoch = epoch

    def _indices(self) -> list[int]:
        rank, world = rank_and_world_size()
        if not self.shuffle:
            return list(range(rank, self.num_items, world))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.num_items, generator=generator).tolist()
        per_rank = self.num_items // world
        return order[rank * per_rank : (rank + 1) * per_rank]

    def __iter__(self):
        return iter([(self.epoch, index) for index in self._indices()])

    def __len__(self) -> int:
        rank, world = rank_and_world_size()
        if not self.shuffle:
            return len(range(rank, self.num_items, world))
        return self.num_items // world
