"""The MLM decoder's loss on a CPU: its products through oneDNN vs torch.mm (MKL).

`bertlab.linear_cross_entropy` multiplies each chunk of masked rows by the (V, H) decoder
weight twice, (c, H) x (H, V) for the logits and (c, V) x (V, H) for the hidden states'
gradient, and a third time for the weight's gradient. On AMD CPUs torch.mm runs the first
two through an MKL sgemm that is slow at few rows by a long side, and oneDNN is faster; on
Intel's MKL is faster. bertlab picks by the CPU's vendor (`DECODER_THROUGH_ONEDNN`, printed
below). This script times the whole loss, forward and backward, both ways in one process,
alternating, at a pretraining step's shapes (batch 32 x 19 masked positions, vocabulary
30,522, `model=tiny`'s hidden size), and each product alone, each as a share of the
machine's measured matmul rate.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import MatmulLimit, bertlab_allocator, interleaved_rates, load, machine, report

import bertlab.linear_cross_entropy as lce
from bertlab.runtime.cpu import cpuinfo

ONEDNN = lce.ONEDNN_LINEAR
CHOSEN = lce.DECODER_THROUGH_ONEDNN  # bertlab's choice on this CPU


def loss_and_gradients(rows: int, hidden: int, vocab: int, onednn: bool, repeat: int):
    """A side: `repeat` forward + backward passes of the loss; returns the rows it scored."""
    generator = torch.Generator().manual_seed(0)
    h = torch.randn(rows, hidden, generator=generator, requires_grad=True)
    w = (0.05 * torch.randn(vocab, hidden, generator=generator)).requires_grad_()
    b = torch.zeros(vocab, requires_grad=True)
    labels = torch.randint(0, vocab, (rows,), generator=generator)

    def run() -> int:
        lce.DECODER_THROUGH_ONEDNN = onednn
        try:
            for _ in range(repeat):
                h.grad = w.grad = b.grad = None
                lce.linear_cross_entropy(h, w, b, labels)[0].backward()
        finally:
            lce.DECODER_THROUGH_ONEDNN = CHOSEN
        return rows * repeat

    return run


def product_rate(x: torch.Tensor, weight: torch.Tensor, onednn: bool, timings: int = 5) -> float:
    """FLOP/s of x @ weight.T through oneDNN or torch.mm, the best of `timings`."""
    lce.DECODER_THROUGH_ONEDNN = onednn
    try:
        lce.times_transposed(x, weight)
        best = float("inf")
        for _ in range(timings):
            started = time.perf_counter()
            for _ in range(5):
                lce.times_transposed(x, weight)
            best = min(best, (time.perf_counter() - started) / 5)
    finally:
        lce.DECODER_THROUGH_ONEDNN = CHOSEN
    return 2 * x.shape[0] * x.shape[1] * weight.shape[0] / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32 * 19, help="masked positions a step")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=30522)
    parser.add_argument("--repeat", type=int, default=3, help="passes per timed repetition")
    parser.add_argument("--repetitions", type=int, default=7)
    args = parser.parse_args()
    if ONEDNN is None:
        raise SystemExit("this PyTorch has no oneDNN (torch.backends.mkldnn): nothing to compare")
    print(f"machine: {machine()}; {bertlab_allocator()}; {load()}")
    limit = MatmulLimit()
    shape = (args.rows, args.hidden, args.vocab)
    sides = {
        "torch.mm (MKL)": loss_and_gradients(*shape, False, args.repeat),
        "oneDNN": loss_and_gradients(*shape, True, args.repeat),
    }
    rates = interleaved_rates(sides, args.repetitions, limit=limit)
    print(limit)
    report(
        f"MLM decoder loss, forward and backward, {args.rows} rows, hidden {args.hidden}, "
        f"vocab {args.vocab}, fp32, cpu (rows/s; three products of 2 x H x V FLOPs a row)",
        rates,
        baseline="torch.mm (MKL)",
        candidate="oneDNN",
        flops_per_sample=3 * 2 * args.hidden * args.vocab,
        limit=limit.rate,
    )
    chunk = max(1, min(args.rows, lce.CHUNK_ELEMENTS["cpu"] // args.vocab))
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(args.vocab, args.hidden, generator=generator)
    products = {
        f"logits ({chunk} x {args.hidden}) x ({args.hidden} x {args.vocab})": (
            torch.randn(chunk, args.hidden, generator=generator),
            weight,
        ),
        f"hidden gradient ({chunk} x {args.vocab}) x ({args.vocab} x {args.hidden})": (
            torch.rand(chunk, args.vocab, generator=generator),
            weight.t(),
        ),
    }
    print(
        f"bertlab's choice on this CPU ({cpuinfo('vendor_id') or 'vendor unknown'}): "
        + ("oneDNN" if CHOSEN else "torch.mm (MKL)")
    )
    print(f"each product alone (best of 5 timings; {load()})")
    for name, (x, w) in products.items():
        mkl, onednn = product_rate(x, w, False), product_rate(x, w, True)
        print(
            f"  {name}: torch.mm {mkl / 1e9:.1f} GFLOP/s = {mkl / limit.rate:.1%}, "
            f"oneDNN {onednn / 1e9:.1f} GFLOP/s = {onednn / limit.rate:.1%} "
            f"of the matmul rate: {onednn / mkl:.2f}x"
        )


if __name__ == "__main__":
    main()
