"""Pretraining step: bertlab vs transformers.BertForPreTraining in a plain PyTorch loop.

Both sides: the same architecture (conf/model/<name>.yaml), vocabulary 30522 (that of
bert-base-uncased, what Hugging Face users train with), batch 32 of full 128-token
sequence pairs (equal work: no padding on either side), 15% masking (19 positions per
sequence, BERT's max_predictions_per_seq 20), MLM + NSP loss, fused AdamW with weight
decay off biases and LayerNorms, a linear schedule, dropout on. transformers runs with
SDPA attention and the fused AdamW kernel, its fastest documented settings; fp32 by
default, `--precision bf16` puts both sides under bf16 autocast (what the transformers
docs recommend on CPUs with bf16 instructions and on GPUs); `--compile` compiles both.

bertlab's MLM head gathers the masked positions first and runs transform + tied decoder
on those only; transformers' head runs over all 32 x 128 positions and its loss ignores
the unmasked ones (labels -100).

Besides the samples/s and their ratio, each side's useful model FLOP/s is printed as a
share of the matrix-multiply rate the script measures on the same device, precision and
thread count (common.matmul_rate; FLOPs counted by common.pretraining_flops, the same
figure for both sides).

    python benchmarks/pretrain_step.py                  # model=tiny and model=mini
    python benchmarks/pretrain_step.py --models mini --repetitions 9
    python benchmarks/pretrain_step.py --models tiny --steps 1 --repetitions 1   # a smoke run
    python benchmarks/pretrain_step.py --breakdown      # + where each side's step time goes
    python benchmarks/pretrain_step.py --device cuda --precision bf16 --models base \
        --batch-size 256 --steps 20
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from common import (
    MatmulLimit,
    bertlab_allocator,
    breakdown_lines,
    hf_config,
    interleaved_rates,
    load,
    machine,
    model_settings,
    pretraining_flops,
    pretraining_loss,
    report,
    step_breakdown,
    synchronize,
)

from bertlab.model import BertConfig, BertForPreTraining
from bertlab.optim import configure_optimizer

VOCAB_SIZE = 30522
MASKED_LM_PROB = 0.15
MAX_PREDICTIONS = 20
FIRST_ORDINARY_ID = 1000  # ids below are [PAD], [unused], [CLS], [SEP], [MASK] in BERT's vocab
MASK_ID = 103


def masked_batch(batch_size: int, seq_len: int, generator: torch.Generator) -> dict:
    """Random sequence pairs with BERT masking; both sides' label layouts."""
    input_ids = torch.randint(
        FIRST_ORDINARY_ID, VOCAB_SIZE, (batch_size, seq_len), generator=generator
    )
    input_ids[:, 0], input_ids[:, seq_len // 2], input_ids[:, -1] = 101, 102, 102
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, seq_len // 2 + 1 :] = 1
    per_row = min(MAX_PREDICTIONS, round(seq_len * MASKED_LM_PROB))
    candidates = [p for p in range(1, seq_len - 1) if p != seq_len // 2]
    positions = (
        torch.stack(
            [
                torch.tensor(candidates)[
                    torch.randperm(len(candidates), generator=generator)[:per_row]
                ]
                for _ in range(batch_size)
            ]
        )
        .sort(dim=1)
        .values
    )  # (B, P)
    rows = torch.arange(batch_size)[:, None]
    masked_labels = input_ids[rows, positions]
    labels = torch.full_like(input_ids, -100)
    labels[rows, positions] = masked_labels
    input_ids[rows, positions] = MASK_ID
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": torch.ones_like(input_ids),
        "masked_positions": positions,
        "masked_labels": masked_labels,
        "labels": labels,  # transformers: -100 where nothing is predicted
        "next_sentence_labels": torch.randint(0, 2, (batch_size,), generator=generator),
    }


def optimizer_settings() -> dict:
    return {
        "_target_": "torch.optim.AdamW",
        "lr": 1e-4,
        "betas": [0.9, 0.999],
        "eps": 1e-6,
        "weight_decay": 0.01,
        "fused": True,  # conf/optimizer/adamw.yaml: fused kernel on CUDA and CPU
        "warmup_ratio": 0.06,
    }


def autocast(device: str, precision: str):
    return torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16")


def bertlab_step(
    settings: dict, batch: dict, device: str, precision: str, compile_backend: str | None = None
) -> Callable[[], None]:
    """One training step of bertlab's model; `compile_backend` as `model.compile=true` does."""
    model = BertForPreTraining(BertConfig.from_dict(settings, vocab_size=VOCAB_SIZE))
    model = model.to(device).train()
    built = configure_optimizer(model, optimizer_settings(), total_steps=10_000)
    optimizer, scheduler = built["optimizer"], built["lr_scheduler"]["scheduler"]
    network = torch.compile(model, backend=compile_backend) if compile_backend else model

    def step() -> None:
        with autocast(device, precision):  # as PretrainingModule's training step
            loss = pretraining_loss(network, batch)
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def transformers_step(
    settings: dict, batch: dict, device: str, precision: str, compile_backend: str | None = None
) -> Callable[[], None]:
    """One training step of transformers' BertForPreTraining (SDPA, fused AdamW)."""
    from transformers import BertForPreTraining as HFBertForPreTraining
    from transformers import get_linear_schedule_with_warmup

    model = HFBertForPreTraining(hf_config(settings, VOCAB_SIZE, attn_implementation="sdpa"))
    model = model.to(device).train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-4,
        eps=1e-6,
        fused=True,  # as bertlab's config, and the transformers Trainer's default optimizer
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, 600, 10_000)
    network = torch.compile(model, backend=compile_backend) if compile_backend else model

    def step() -> None:
        with autocast(device, precision):
            output = network(
                input_ids=batch["input_ids"],
                token_type_ids=batch["token_type_ids"],
                attention_mask=batch["attention_mask"],
                labels=batch["labels"],
                next_sentence_label=batch["next_sentence_labels"],
            )
        output.loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def steps_of(
    step: Callable[[], None], steps: int, batch_size: int, device: str
) -> Callable[[], int]:
    def run() -> int:
        for _ in range(steps):
            step()
        synchronize(device)  # kernels are asynchronous: time them to their end
        return steps * batch_size

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "mini"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="steps per timed repetition")
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--compile", action="store_true", help="torch.compile both sides")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="profile each side's step: its matrix products' time and rate, and the rest (CPU)",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"machine: {machine()}; {bertlab_allocator()}; {load()}")
    if args.device.startswith("cuda"):
        print(f"device: {torch.cuda.get_device_name(args.device)}")
    limit = MatmulLimit(args.device, args.precision)
    batch = masked_batch(args.batch_size, args.seq_len, torch.Generator().manual_seed(0))
    batch = {key: value.to(args.device) for key, value in batch.items()}
    masked = batch["masked_positions"].shape[1]
    backend = "inductor" if args.compile else None
    for name in args.models:
        settings = model_settings(name)
        steps = {
            side: build(settings, batch, args.device, args.precision, backend)
            for side, build in (("transformers", transformers_step), ("bertlab", bertlab_step))
        }
        sides = {
            side: steps_of(step, args.steps, args.batch_size, args.device)
            for side, step in steps.items()
        }
        rates = interleaved_rates(sides, args.repetitions, limit=limit)
        print(limit)
        report(
            f"pretraining step, model={name}, batch {args.batch_size}, seq {args.seq_len}, "
            f"vocab {VOCAB_SIZE}, {args.precision}, {args.device}"
            + (", compiled" if args.compile else ""),
            rates,
            baseline="transformers",
            candidate="bertlab",
            flops_per_sample=pretraining_flops(settings, args.seq_len, masked, VOCAB_SIZE),
            limit=limit.rate,
        )
        if args.breakdown and args.device == "cpu":
            for side, step in steps.items():
                print(breakdown_lines(side, step_breakdown(step, args.steps), limit.rate))


if __name__ == "__main__":
    main()
