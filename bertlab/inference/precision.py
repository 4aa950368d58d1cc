"""`--precision bf16` of bertlab-predict and bertlab-embed: the matrix products in bfloat16.

The numbers are torch.autocast's (products in bf16; LayerNorm, softmax and the residual sums
in float32), so bf16 answers what `trainer.precision=bf16-mixed` would compute. Autocast
casts every linear layer's weight to bf16 on every call; for inference the weights are cast
once instead (the same values, so the same outputs; a copy of model=base's 85M product
weights saved on every forward). On CPUs with bf16 matrix instructions (Intel's AMX,
AVX512-BF16) and on GPUs the products run several times faster than in float32; elsewhere
they are emulated, slower than float32, and `native_bf16_note` says so.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from bertlab.runtime.cpu import cpuinfo

PRECISIONS = ("fp32", "bf16")
# /proc/cpuinfo flags of native bf16 products (oneDNN's AMX and AVX512-BF16 kernels).
BF16_CPU_FLAGS = {"amx_bf16", "avx512_bf16"}


def for_precision(model: nn.Module, precision: str) -> nn.Module:
    """`model` with its linear layers' weights in bf16 for `precision="bf16"` (in place).

    Only weights that belong to linear layers alone: a decoder tied to the word embeddings
    keeps the float32 table the embedding lookup reads.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return model
    shared = {
        id(parameter)
        for module in model.modules()
        if not isinstance(module, nn.Linear)
        for parameter in module.parameters(recurse=False)
    }
    for module in model.modules():
        if isinstance(module, nn.Linear) and id(module.weight) not in shared:
            module.to(torch.bfloat16)
    return model


def autocast(precision: str, device: str = "cpu") -> contextlib.AbstractContextManager:
    """The forward's context for `precision`: bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def has_native_bf16(flags: str | None = None) -> bool:
    """Whether this CPU has bf16 matrix instructions, by /proc/cpuinfo's `flags` line (read
    when None; '' where it cannot be read, not Linux)."""
    flags = cpuinfo("flags") if flags is None else flags
    return bool(BF16_CPU_FLAGS & set(flags.split()))


def native_bf16_note(precision: str, flags: str | None = None) -> str | None:
    """A note for the user when bf16 was asked for on a CPU without bf16 instructions.

    `flags`: /proc/cpuinfo's flags line (read when None); where it cannot be read (not
    Linux) nothing is said.
    """
    if precision != "bf16":
        return None
    flags = cpuinfo("flags") if flags is None else flags
    if not flags or has_native_bf16(flags):
        return None
    return (
        "note: this CPU has no bf16 matrix instructions (AMX, AVX512-BF16): --precision bf16 "
        "runs emulated, slower than fp32"
    )
