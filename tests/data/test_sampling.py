"""Length-grouped training order: every item once, batches of similar length, resumable."""

import random

import numpy as np
import torch

from bertlab.data.sampling import EpochSampler, group_by_length


def spread(batch: list[int], lengths: list[int]) -> int:
    return max(lengths[i] for i in batch) - min(lengths[i] for i in batch)


def test_groups_keep_every_item_and_make_batches_of_similar_length():
    rng = random.Random(0)
    lengths = [rng.randint(8, 128) for _ in range(5000)]
    order = torch.randperm(5000, generator=torch.Generator().manual_seed(0)).tolist()[:4990]
    grouped = group_by_length(order, lengths, 32, torch.Generator().manual_seed(1))

    assert sorted(grouped) == sorted(order)
    full = [grouped[i : i + 32] for i in range(0, 4990 - 4990 % 32, 32)]
    shuffled = [order[i : i + 32] for i in range(0, 4990 - 4990 % 32, 32)]
    # Every full batch lies inside one sorted group: a short batch anywhere but last would
    # shift the batches after it across group boundaries, with spreads of about 100.
    assert max(spread(b, lengths) for b in full) < 40
    assert np.mean([spread(b, lengths) for b in shuffled]) > 90
    assert spread(grouped[-(4990 % 32) :], lengths) < 20


def test_batch_order_is_shuffled_not_sorted():
    lengths = list(range(3200))
    order = torch.randperm(3200, generator=torch.Generator().manual_seed(0)).tolist()
    grouped = group_by_length(order, lengths, 32, torch.Generator().manual_seed(0), 10)
    first_lengths = [lengths[grouped[i]] for i in range(0, 3200, 32)]
    assert first_lengths != sorted(first_lengths) and first_lengths != sorted(first_lengths)[::-1]


def test_grouped_sampler_is_seeded_per_epoch_and_resumes_mid_epoch():
    lengths = [random.Random(i).randint(8, 128) for i in range(640)]
    sampler = EpochSampler(640, shuffle=True, seed=3, lengths=lengths, step_items=16)
    sampler.set_epoch(1)
    epoch_1 = list(sampler)
    assert sorted(index for _, index in epoch_1) == list(range(640))
    again = EpochSampler(640, shuffle=True, seed=3, lengths=lengths, step_items=16)
    again.set_epoch(1)
    assert list(again) == epoch_1
    again.set_epoch(2)
    assert list(again) != epoch_1

    resumed = EpochSampler(640, shuffle=True, seed=3, lengths=lengths, step_items=16)
    resumed.resume_at(1, 160)
    assert list(resumed) == epoch_1[160:]
    batches = [[index for _, index in epoch_1[i : i + 16]] for i in range(0, 640, 16)]
    assert np.mean([spread(b, lengths) for b in batches]) < 25
