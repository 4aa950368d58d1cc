"""Dropout with a faster mask on a CPU; elsewhere, and under torch.compile, `F.dropout` itself.

PyTorch's CPU Bernoulli draws one Mersenne Twister number per element, on one thread:
at 2 threads it was 19% of a default-job pretraining step, more than any matrix product
but the largest. Here the mask comes from NumPy's PCG64 (several times faster per draw),
seeded from torch's generator, so `torch.manual_seed` / `seed_everything` still fix it.
The semantics are F.dropout's: every element is zeroed independently with probability p
(32-bit draws against p * 2^32, exact to 2^-32) and the others scaled by 1 / (1 - p).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """`F.dropout(x, p, training)`, drawing the mask with PCG64 for CPU tensors (eager)."""
    if not training or p == 0.0 or p == 1.0 or x.device.type != "cpu" or _compiling():
        return F.dropout(x, p, training)
    keep = _draws(x.shape) >= round(p * 2**32) - 2**31  # P(keep) = 1 - p
    return x * (keep * (1.0 / (1.0 - p))).to(x.dtype)


def _draws(shape: torch.Size) -> torch.Tensor:
    """Uniform int32 draws of `shape`, from a PCG64 stream seeded by torch's generator."""
    count = shape.numel()
    seed = int(torch.randint(0, 2**63 - 1, ()).item())
    words = np.random.PCG64(seed).random_raw((count + 1) // 2)  # uint64: two draws each
    return torch.from_numpy(words.view(np.int32)[:count]).view(shape)


def _compiling() -> bool:
    return torch.compiler.is_compiling()


class Dropout(nn.Dropout):
    """nn.Dropout (same name in a module tree, no parameters) drawing its mask with `dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)
