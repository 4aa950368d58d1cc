"""Pretraining step: bertlab vs transformers.BertForPreTraining in a plain PyTorch loop.

Both sides: the same architecture (conf/model/<name>.yaml), vocabulary 30522 (that of
bert-base-uncased, what Hugging Face users train with), batch 32 of full 128-token
sequence pairs, 15% masking (19 positions per sequence, BERT's
max_predictions_per_seq 20), MLM + NSP loss, fused AdamW (torch's CPU kernel; the
transformers Trainer's default optimizer too) with weight decay off biases and
LayerNorms, a linear schedule, dropout on, fp32.

bertlab's MLM head gathers the masked positions first and runs transform + tied decoder
on those only; transformers' head runs over all 32 x 128 positions and its loss ignores
the unmasked ones (labels -100). Both use SDPA attention.

    python benchmarks/pretrain_step.py                  # model=tiny and model=mini
    python benchmarks/pretrain_step.py --models mini --repetitions 9
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from common import hf_config, interleaved_rates, load, machine, model_settings, report

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


def bertlab_step(settings: dict, batch: dict) -> Callable[[], None]:
    model = BertForPreTraining(BertConfig.from_dict(settings, vocab_size=VOCAB_SIZE)).train()
    built = configure_optimizer(model, optimizer_settings(), total_steps=10_000)
    optimizer, scheduler = built["optimizer"], built["lr_scheduler"]["scheduler"]
    masked_positions = batch["masked_positions"]
    masked_labels = batch["masked_labels"][masked_positions >= 0]

    def step() -> None:
        mlm_logits, nsp_logits = model(
            batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], masked_positions
        )
        loss = F.cross_entropy(mlm_logits, masked_labels) + F.cross_entropy(
            nsp_logits, batch["next_sentence_labels"]
        )
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def transformers_step(settings: dict, batch: dict) -> Callable[[], None]:
    from transformers import BertForPreTraining as HFBertForPreTraining
    from transformers import get_linear_schedule_with_warmup

    model = HFBertForPreTraining(
        hf_config(settings, VOCAB_SIZE, attn_implementation="sdpa")
    ).train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-4,
        eps=1e-6,
        fused=True,  # as bertlab's config, and the transformers Trainer's default optimizer
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, 600, 10_000)

    def step() -> None:
        output = model(
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


def steps_of(step: Callable[[], None], steps: int, batch_size: int) -> Callable[[], int]:
    def run() -> int:
        for _ in range(steps):
            step()
        return steps * batch_size

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "mini"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="steps per timed repetition")
    parser.add_argument("--repetitions", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"machine: {machine()}; {load()}")
    batch = masked_batch(args.batch_size, args.seq_len, torch.Generator().manual_seed(0))
    for name in args.models:
        settings = model_settings(name)
        sides = {
            "transformers": steps_of(
                transformers_step(settings, batch), args.steps, args.batch_size
            ),
            "bertlab": steps_of(bertlab_step(settings, batch), args.steps, args.batch_size),
        }
        rates = interleaved_rates(sides, args.repetitions)
        report(
            f"pretraining step, model={name}, batch {args.batch_size}, seq {args.seq_len}, "
            f"vocab {VOCAB_SIZE}, fp32",
            rates,
            baseline="transformers",
            candidate="bertlab",
        )


if __name__ == "__main__":
    main()
