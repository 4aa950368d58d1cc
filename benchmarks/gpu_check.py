"""GPU check: BERT-base bf16 pretraining and SQuAD-length fine-tuning, bertlab vs transformers.

One run prints one table (about 4 to 6 minutes on one H100 or H200, most of it the two
compilations; the whole run must stay under 8 minutes):

- the device's bf16 matrix-multiply rate, measured (8192 x 8192 products), and its peak
  dense bf16 rate from the datasheet table PEAK_BF16_TFLOPS (by device name);
- pretraining, sequence 128, vocabulary 30522, bf16 autocast, fused AdamW: bertlab's
  BertForPreTraining vs transformers' BertForPreTraining (SDPA) in the same plain loop as
  benchmarks/pretrain_step.py, each eager and under torch.compile (bertlab's
  `model.compile=true` path);
- SQuAD-length fine-tuning, full 384-token windows: bertlab's QuestionAnsweringModule under
  a Lightning Trainer with conf/trainer/gpu.yaml's settings (bf16-mixed, gradient clipping
  1.0, cuDNN benchmark) vs the transformers Trainer with BertForQuestionAnswering (SDPA) at
  its fastest documented settings (common.fast_training_arguments: bf16, fused AdamW,
  length-grouped batches), both timed from step `--warmup` to the last step, so neither
  side's start-up counts.

Each row gives samples/s, tokens/s, the useful model TFLOP/s (common.pretraining_flops and
common.question_answering_flops, the same count for both sides), the model FLOPs
utilisation against the datasheet peak (MFU) and against the measured matmul rate, and
bertlab's ratio to the transformers row of the same kind.

    python benchmarks/gpu_check.py                                # cuda, model=base
    python benchmarks/gpu_check.py --device cpu --model tiny --steps 2 --repetitions 1 \\
        --batch-size 2 --squad-batch-size 2 --seq-len 32 --squad-seq-len 64 \\
        --matmul-size 256 --compile-backend eager                 # the test's CPU run
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from common import (
    MatmulLimit,
    fast_training_arguments,
    hf_config,
    interleaved_rates,
    load,
    machine,
    model_settings,
    pretraining_flops,
    question_answering_flops,
    synchronize,
)
from pretrain_step import (
    VOCAB_SIZE,
    bertlab_step,
    masked_batch,
    optimizer_settings,
    steps_of,
    transformers_step,
)
from torch.utils.data import DataLoader

from bertlab.tasks.qa import QuestionAnsweringModule

# Dense (no sparsity) bf16 tensor-core peak, TFLOP/s, from NVIDIA's datasheets (SXM parts
# unless named). First match in this order wins, so "L40S" is tried before "L4".
PEAK_BF16_TFLOPS = {
    "GH200": 989,
    "H200": 989,
    "H100 NVL": 835,
    "H100 PCIe": 756,
    "H100": 989,
    "B200": 2250,
    "A100": 312,
    "L40S": 362,
    "L40": 181,
    "L4": 121,
}

ROWS = (
    "bf16 matmul (measured)",
    "pretrain bertlab",
    "pretrain transformers",
    "pretrain bertlab compiled",
    "pretrain transformers compiled",
    "squad bertlab (Lightning)",
    "squad transformers Trainer",
)
BASELINES = {
    "pretrain bertlab": "pretrain transformers",
    "pretrain bertlab compiled": "pretrain transformers compiled",
    "squad bertlab (Lightning)": "squad transformers Trainer",
}


def peak_flops(device_name: str) -> float | None:
    """The datasheet's dense bf16 FLOP/s of this device, None when it is not in the table."""
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key.lower() in device_name.lower():
            return tflops * 1e12
    return None


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else machine()


# ---- Pretraining: the loops of pretrain_step.py, eager and compiled ---------------------


def pretraining_rates(args: argparse.Namespace, settings: dict, batch: dict) -> dict[str, float]:
    """Samples/s of the four pretraining rows, interleaved repetition by repetition."""
    builders = {
        "pretrain bertlab": (bertlab_step, None),
        "pretrain transformers": (transformers_step, None),
        "pretrain bertlab compiled": (bertlab_step, args.compile_backend),
        "pretrain transformers compiled": (transformers_step, args.compile_backend),
    }
    sides = {
        name: steps_of(
            build(settings, batch, args.device, "bf16", backend),
            args.steps,
            args.batch_size,
            args.device,
        )
        for name, (build, backend) in builders.items()
    }
    return interleaved_rates(sides, args.repetitions)  # its warm-up call compiles


# ---- SQuAD-length fine-tuning: Lightning vs the transformers Trainer --------------------


def squad_windows(count: int, seq_len: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Full-length question + passage windows with random answer spans."""
    generator = torch.Generator().manual_seed(seed)
    question = min(64, seq_len // 4)
    windows = []
    for _ in range(count):
        input_ids = torch.randint(1000, VOCAB_SIZE, (seq_len,), generator=generator)
        input_ids[0], input_ids[question], input_ids[-1] = 101, 102, 102
        token_type_ids = torch.zeros(seq_len, dtype=torch.long)
        token_type_ids[question + 1 :] = 1
        start = int(torch.randint(question + 1, seq_len - 11, (1,), generator=generator))
        windows.append(
            {
                "input_ids": input_ids,
                "token_type_ids": token_type_ids,
                "attention_mask": torch.ones(seq_len, dtype=torch.long),
                "start_positions": torch.tensor(start),
                "end_positions": start + torch.randint(0, 10, (), generator=generator),
            }
        )
    return windows


class StepTimer:
    """Seconds from the start of step `warmup` to the end of the last step (device synced)."""

    def __init__(self, device: str, warmup: int, steps: int):
        self.device, self.first, self.last = device, warmup, warmup + steps - 1
        self.started = self.seconds = 0.0

    def step_started(self, completed_steps: int) -> None:
        if completed_steps == self.first:
            synchronize(self.device)
            self.started = time.perf_counter()

    def step_ended(self, completed_steps: int) -> None:
        if completed_steps - 1 == self.last:
            synchronize(self.device)
            self.seconds = time.perf_counter() - self.started


class LightningStepTimer(pl.Callback):
    def __init__(self, timer: StepTimer):
        self.timer = timer

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.timer.step_started(trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.timer.step_ended(trainer.global_step)


def bertlab_squad_rate(args: argparse.Namespace, settings: dict, windows: list) -> float:
    module = QuestionAnsweringModule(
        model={**settings, "compile": False},
        optimizer={**optimizer_settings(), "lr": 3e-5, "warmup_ratio": 0.1},
        vocab_size=VOCAB_SIZE,
        max_seq_length=args.squad_seq_len,
    )
    timer = StepTimer(args.device, args.warmup, args.steps)
    on_gpu = args.device.startswith("cuda")
    trainer = pl.Trainer(
        accelerator="gpu" if on_gpu else "cpu",
        devices=1,
        precision="bf16-mixed",
        gradient_clip_val=1.0,
        benchmark=on_gpu,
        max_steps=args.warmup + args.steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        callbacks=[LightningStepTimer(timer)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader(windows, args.squad_batch_size, shuffle=True, pin_memory=on_gpu)
    trainer.fit(module, train_dataloaders=loader)
    return args.steps * args.squad_batch_size / timer.seconds


def transformers_squad_rate(
    args: argparse.Namespace, settings: dict, windows: list, work: Path
) -> float:
    from transformers import BertForQuestionAnswering, Trainer, TrainerCallback

    class TrainerStepTimer(TrainerCallback):
        def on_step_begin(self, arguments, state, control, **kwargs):
            timer.step_started(state.global_step)

        def on_step_end(self, arguments, state, control, **kwargs):
            timer.step_ended(state.global_step)

    timer = StepTimer(args.device, args.warmup, args.steps)
    torch.manual_seed(0)
    model = BertForQuestionAnswering(hf_config(settings, VOCAB_SIZE, attn_implementation="sdpa"))
    arguments = fast_training_arguments(
        str(work / "hf"),
        "bf16",
        "cpu" if args.device == "cpu" else "cuda",
        per_device_train_batch_size=args.squad_batch_size,
        max_steps=args.warmup + args.steps,
        learning_rate=3e-5,
        warmup_steps=0.1,
        weight_decay=0.01,
        adam_epsilon=1e-6,
        max_grad_norm=1.0,
        lr_scheduler_type="linear",
    )
    trainer = Trainer(
        model=model, args=arguments, train_dataset=windows, callbacks=[TrainerStepTimer()]
    )
    trainer.train()
    return args.steps * args.squad_batch_size / timer.seconds


# ---- The table ------------------------------------------------------------------------


def table(
    rates: dict[str, float],
    flops: dict[str, float],
    tokens: dict[str, int],
    measured: float,
    peak: float | None,
) -> str:
    """Markdown table: one row per check (ROWS order); the matmul row has no samples."""
    lines = [
        "| check | samples/s | tokens/s | model TFLOP/s | MFU (datasheet peak) "
        "| share of measured matmul | bertlab / transformers |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ROWS:
        if name == ROWS[0]:
            achieved, samples, token_rate = measured, "-", "-"
        else:
            achieved = rates[name] * flops[name]
            samples, token_rate = f"{rates[name]:.1f}", f"{rates[name] * tokens[name]:.0f}"
        mfu = f"{achieved / peak:.1%}" if peak else "n/a"
        baseline = BASELINES.get(name)
        ratio = f"{rates[name] / rates[baseline]:.2f}x" if baseline else "-"
        lines.append(
            f"| {name} | {samples} | {token_rate} | {achieved / 1e12:.4g} | {mfu} "
            f"| {achieved / measured:.1%} | {ratio} |"
        )
    return "\n".join(lines)


def elapsed(started: float) -> str:
    return f"{time.perf_counter() - started:.0f} s since the start"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:1, ... or cpu (a test run)")
    parser.add_argument("--model", default="base", help="conf/model/<name>.yaml")
    parser.add_argument("--batch-size", type=int, default=256, help="pretraining batch")
    parser.add_argument("--seq-len", type=int, default=128, help="pretraining sequence")
    parser.add_argument("--squad-batch-size", type=int, default=32)
    parser.add_argument("--squad-seq-len", type=int, default=384)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per repetition")
    parser.add_argument("--repetitions", type=int, default=3, help="pretraining repetitions")
    parser.add_argument("--warmup", type=int, default=5, help="untimed SQuAD steps first")
    parser.add_argument("--matmul-size", type=int, default=None, help="default 8192 on a GPU")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    name = device_name(args.device)
    print(f"device: {name}; {machine()}; {load()}")
    torch.manual_seed(0)
    settings = model_settings(args.model)
    # Measured again between the checks (a GPU's clocks move with its temperature and a
    # shared machine's with its load); the shares divide by the best reading.
    limit = MatmulLimit(args.device, "bf16", args.matmul_size)
    print(f"bf16 matmul rate {limit.rate / 1e12:.1f} TFLOP/s ({elapsed(started)})", flush=True)
    batch = masked_batch(args.batch_size, args.seq_len, torch.Generator().manual_seed(0))
    batch = {key: value.to(args.device) for key, value in batch.items()}
    rates = pretraining_rates(args, settings, batch)
    limit.measure()
    print(f"pretraining rows done ({elapsed(started)})", flush=True)
    masked = batch["masked_positions"].shape[1]
    pretrain_flops = float(pretraining_flops(settings, args.seq_len, masked, VOCAB_SIZE))
    windows = squad_windows(args.squad_batch_size * (args.warmup + args.steps), args.squad_seq_len)
    with tempfile.TemporaryDirectory() as work:
        rates["squad transformers Trainer"] = transformers_squad_rate(
            args, settings, windows, Path(work)
        )
    print(f"SQuAD transformers Trainer done ({elapsed(started)})", flush=True)
    rates["squad bertlab (Lightning)"] = bertlab_squad_rate(args, settings, windows)
    limit.measure()
    print(f"SQuAD bertlab done ({elapsed(started)}); {limit}", flush=True)
    squad_flops = float(question_answering_flops(settings, args.squad_seq_len))
    flops = {row: pretrain_flops if row.startswith("pretrain") else squad_flops for row in ROWS}
    tokens = {
        row: args.seq_len if row.startswith("pretrain") else args.squad_seq_len for row in ROWS
    }
    print(
        f"\nGPU check, model={args.model}, bf16; pretraining batch {args.batch_size} x "
        f"{args.seq_len} tokens, SQuAD batch {args.squad_batch_size} x {args.squad_seq_len}; "
        f"{name}; {elapsed(started)}"
    )
    print(table(rates, flops, tokens, limit.rate, peak_flops(name)))


if __name__ == "__main__":
    main()
