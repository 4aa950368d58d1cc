"""What every benchmark shares: interleaved timing, the machine and its measured limit,
useful model FLOPs, the model configs, the transformers side's fastest settings.

Both sides of a comparison run in one process and alternate repetition by repetition,
so a neighbour's load on a shared CPU hits both about equally; the median of the
repetitions is reported.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from bertlab.runtime.allocator import keep_freed_memory
from bertlab.runtime.cpu import cpuinfo

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def model_settings(name: str) -> dict:
    """conf/model/<name>.yaml as a dict (architecture keys plus init / compile)."""
    return yaml.safe_load((CONF_DIR / "model" / f"{name}.yaml").read_text())


def hf_config(settings: dict, vocab_size: int, **extra):
    """The transformers BertConfig of the same architecture."""
    from transformers import BertConfig as HFBertConfig

    return HFBertConfig(
        vocab_size=vocab_size,
        hidden_size=settings["hidden_size"],
        num_hidden_layers=settings["num_layers"],
        num_attention_heads=settings["num_heads"],
        intermediate_size=settings["intermediate_size"],
        hidden_dropout_prob=settings["hidden_dropout"],
        attention_probs_dropout_prob=settings["attention_dropout"],
        max_position_embeddings=settings["max_position_embeddings"],
        layer_norm_eps=settings["layer_norm_eps"],
        **extra,
    )


def fast_training_arguments(output_dir: str, precision: str, device: str, **settings):
    """transformers `TrainingArguments` with what its docs recommend for speed.

    Length-grouped batches (`train_sampling_strategy="group_by_length"` in transformers 5,
    `group_by_length=True` before), the fused AdamW kernel, bf16 autocast when the run is
    bf16 (the docs' advice for CPUs with bf16 and for GPUs); no evaluation, checkpoints or
    logging, which the bertlab side does not do either. SDPA attention is the model's
    `attn_implementation`, set where the model is built.
    """
    from transformers import TrainingArguments

    fields = {field.name for field in dataclasses.fields(TrainingArguments)}
    if "train_sampling_strategy" in fields:
        grouping = {"train_sampling_strategy": "group_by_length"}
    else:
        grouping = {"group_by_length": True}
    return TrainingArguments(
        output_dir=output_dir,
        optim="adamw_torch_fused",
        bf16=precision == "bf16",
        use_cpu=device == "cpu",
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
        **grouping,
        **settings,
    )


def interleaved_rates(
    sides: dict[str, Callable[[], int]],
    repetitions: int,
    warmup: int = 1,
    limit: MatmulLimit | None = None,
) -> dict[str, float]:
    """Median samples/s per side; each call of a side runs some steps and returns its samples."""
    samples = interleaved_samples(sides, repetitions, warmup, limit)
    return {name: statistics.median(values) for name, values in samples.items()}


def interleaved_samples(
    sides: dict[str, Callable[[], int]],
    repetitions: int,
    warmup: int = 1,
    limit: MatmulLimit | None = None,
) -> dict[str, list[float]]:
    """Samples/s per side and repetition, the sides alternating within each repetition;
    `limit`, when given, is measured again in every repetition, among the sides."""
    for _ in range(warmup):
        for run in sides.values():
            run()
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for repetition in range(repetitions):
        if limit is not None:
            limit.measure()
        # Alternate which side goes first, so neither always follows the other's cache state.
        names = list(sides) if repetition % 2 == 0 else list(reversed(sides))
        for name in names:
            started = time.perf_counter()
            samples = sides[name]()
            rates[name].append(samples / (time.perf_counter() - started))
        shown = ", ".join(f"{name} {values[-1]:.1f}" for name, values in rates.items())
        print(f"  repetition {repetition + 1}: {shown} samples/s ({load()})", flush=True)
    return rates


def bertlab_allocator() -> str:
    """Set glibc's malloc as bertlab-train, -eval, -predict and -embed do, for both sides of
    a benchmark (it is process-wide); what is in force, for the printed machine line."""
    if keep_freed_memory():
        return "malloc keeps freed memory (bertlab.runtime.allocator)"
    return "malloc as the environment sets it"


def machine() -> str:
    cpu = cpuinfo("model name") or platform.processor() or "unknown CPU"
    # Virtual machines of one name differ in vector width (and so in speed and in the
    # order MKL sums in); torch's own detection says which kernels it runs.
    vectors = torch.backends.cpu.get_cpu_capability()
    return (
        f"{cpu} ({vectors}), nproc {os.cpu_count()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def report(
    title: str,
    rates: dict[str, float],
    baseline: str,
    candidate: str,
    flops_per_sample: float,
    limit: float,
) -> float:
    """Print samples/s of both sides, their ratio and each side's share of the machine's
    measured matrix-multiply rate `limit` (FLOP/s); returns the ratio."""
    ratio = rates[candidate] / rates[baseline]
    print(f"{title}")
    for name, rate in rates.items():
        print(f"  {name:<28} {rate:10.1f} samples/s  {share_line(rate, flops_per_sample, limit)}")
    print(f"  ratio {candidate} / {baseline}: {ratio:.2f}x   ({load()})")
    return ratio


def share_line(rate: float, flops_per_sample: float, limit: float) -> str:
    """'model X GFLOP/s = Y% of the measured matmul rate' for `rate` samples/s."""
    model_rate = rate * flops_per_sample
    return f"model {model_rate / 1e9:8.1f} GFLOP/s = {model_rate / limit:6.1%} of the matmul rate"


# ---- The machine's limit: its measured matrix-multiply rate --------------------------


def precision_dtype(precision: str) -> torch.dtype:
    return {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]


def matmul_rate(
    device: str = "cpu", precision: str = "fp32", size: int | None = None, timings: int = 3
) -> float:
    """FLOP/s of large dense square matrix products on this device and dtype, at the
    current thread count: the best of `timings` timings of a few products each, by each
    library PyTorch offers for them (torch.mm; on a CPU also oneDNN, which on AVX-512
    runs fp32 squares about 15% faster than the MKL sgemm behind torch.mm).

    It is what the machine's kernels reach on the ideal shape, so a model's FLOP/s as a
    share of it says how close a training step is to the limit of the machine.
    """
    size = size or (8192 if device.startswith("cuda") else 2048)
    dtype = precision_dtype(precision)
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    products = 20 if device.startswith("cuda") else 4
    best = float("inf")
    for product in square_products(a, b).values():
        product()  # first call: kernel selection, page faults
        for _ in range(timings):
            synchronize(device)
            started = time.perf_counter()
            for _ in range(products):
                product()
            synchronize(device)
            best = min(best, time.perf_counter() - started)
    return 2 * size**3 * products / best


def square_products(a: torch.Tensor, b: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    """The libraries' products of two square matrices, the same FLOPs each: torch.mm's
    a @ b and, for float32 on a CPU with oneDNN, oneDNN's linear layer's a @ b.T (bertlab
    routes only float32 there; oneDNN has no bf16 kernel for CPUs without AVX-512)."""
    from bertlab.linear_cross_entropy import ONEDNN_LINEAR

    products = {"torch.mm": lambda: torch.mm(a, b)}
    if a.device.type == "cpu" and a.dtype == torch.float32 and ONEDNN_LINEAR is not None:
        products["oneDNN"] = lambda: ONEDNN_LINEAR(a, b, None, "none", [], "")
    return products


def synchronize(device: str) -> None:
    """Wait for the device's queued kernels (they run asynchronously on a GPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


class MatmulLimit:
    """The machine's matrix-multiply rate as the shares use it: the best of its readings.

    A shared virtual machine's speed moves by a third within minutes. Timed once before the
    sides, the rate could catch a slow moment, and every share measured after it would read
    high (a product at "117% of the matmul rate"); so benchmarks measure it again in every
    repetition, among the sides (`interleaved_samples(limit=...)`), and the shares divide
    by the best reading, which can only make them lower.
    """

    def __init__(self, device: str = "cpu", precision: str = "fp32", size: int | None = None):
        self.device, self.precision, self.size = device, precision, size
        self.readings = [matmul_rate(device, precision, size)]

    def measure(self) -> None:
        self.readings.append(matmul_rate(self.device, self.precision, self.size, timings=1))

    @property
    def rate(self) -> float:
        return max(self.readings)

    def __str__(self) -> str:
        line = (
            f"measured {self.precision} matmul rate ({self.device}, "
            f"{torch.get_num_threads()} threads): {self.rate / 1e9:.1f} GFLOP/s"
        )
        if len(self.readings) > 1:
            line += (
                f", the best of {len(self.readings)} readings between the repetitions "
                f"(lowest {min(self.readings) / 1e9:.1f})"
            )
        return line


# ---- Where a step's time goes: its matrix products against the rest --------------------

# Profiler names of the dense products and how to read their FLOPs off the input shapes
# (torch.profiler record_shapes): (m, k) @ (k, n), batched, and the addmm/addmv variants.
PRODUCT_OPERANDS = {
    "aten::mm": (0, 1),
    "aten::addmm": (1, 2),
    "aten::addmm_": (1, 2),
    "aten::bmm": (0, 1),
    "aten::baddbmm": (1, 2),
    "aten::addmv_": (1, 2),
    "aten::addmv": (1, 2),
    "mkldnn::_linear_pointwise": (0, 1),  # oneDNN: x (m, k) by a weight (n, k)
}
# Products whose second operand is a linear layer's weight, (n, k).
WEIGHT_OPERANDS = {"mkldnn::_linear_pointwise"}


def product_flops(name: str, shapes: list) -> float:
    """Multiply-add FLOPs (2 per multiply-add) of one profiled dense product."""
    a, b = (shapes[i] for i in PRODUCT_OPERANDS[name])
    batch = a[0] if len(a) == 3 else 1
    m, k = a[-2:]
    n = b[-1] if len(b) >= 2 else 1  # addmv: a vector
    if name in WEIGHT_OPERANDS:
        n = b[0]
    return 2.0 * batch * m * k * n


def step_breakdown(step: Callable[[], None], steps: int = 3) -> dict:
    """CPU seconds per step in the dense matrix products, their FLOPs, and the whole step.

    Profiled (torch.profiler, shapes recorded) over `steps` steps after one warm-up, so the
    products run in the cache state the step leaves them. If everything else cost nothing,
    the step would take `product_seconds`: `product_flops / product_seconds` is the rate the
    step's own products reach at their shapes, the ceiling of the step's share of the
    machine's matmul rate. CPU only (on a GPU the kernels run asynchronously).
    """
    from torch.profiler import ProfilerActivity, profile

    step()
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as profiler:
        for _ in range(steps):
            step()
    whole = (time.perf_counter() - started) / steps
    seconds = flops = 0.0
    for event in profiler.events():
        if event.name in PRODUCT_OPERANDS and event.input_shapes:
            seconds += event.self_cpu_time_total / 1e6
            flops += product_flops(event.name, event.input_shapes)
    return {
        "step_seconds": whole,
        "product_seconds": seconds / steps,
        "product_flops": flops / steps,
    }


def breakdown_lines(name: str, breakdown: dict, limit: float) -> str:
    """The breakdown as two lines: products' time and rate, and what the rest costs."""
    step, products = breakdown["step_seconds"], breakdown["product_seconds"]
    rate = breakdown["product_flops"] / products if products else 0.0
    return (
        f"  {name:<28} step {step * 1e3:7.1f} ms (profiled): matrix products "
        f"{products * 1e3:.1f} ms ({products / step:.0%}) at {rate / 1e9:.1f} GFLOP/s = "
        f"{rate / limit:.1%} of the matmul rate;\n"
        f"  {'':<28} the rest {(step - products) * 1e3:.1f} ms. With the rest free the step "
        f"would run at that {rate / limit:.1%}: its ceiling at these shapes"
    )


# ---- Useful model FLOPs of a training step --------------------------------------------


def training_flops(settings: dict, tokens, rows_read, head_multiply_adds) -> np.ndarray:
    """Useful FLOPs of one training step on one sequence (works on numpy arrays too).

    The standard estimate (Kaplan et al.; PaLM's and nanoGPT's MFU): 6 FLOPs per weight a
    token passes through (2 per multiply-add, x 3 for forward + backward) and 12 L H T^2
    for attention, counting only what the task needs, the same figure for both sides of a
    comparison, so a side that computes more (padding, heads on unread positions) shows a
    lower share:

    - `tokens`: real tokens of the sequence (padding is not useful work);
    - the last layer's keys and values cover every token, but its queries, attention
      output and feed-forward only the `rows_read` positions a head reads ([CLS] and the
      masked tokens for pretraining, [CLS] for classification, every token for SQuAD);
    - `head_multiply_adds`: the heads' matrix products (pooler, MLM decoder, classifier).

    Embedding lookups, softmax, LayerNorm and GELU are not matrix products and not counted.
    """
    # float64: T^2 products of small integer arrays (int16/int32 lengths) would overflow
    tokens, rows_read = np.asarray(tokens, np.float64), np.asarray(rows_read, np.float64)
    hidden, layers = settings["hidden_size"], settings["num_layers"]
    per_row = 4 * hidden * hidden + 2 * hidden * settings["intermediate_size"]
    keys_values = 2 * hidden * hidden
    attention = 2 * hidden  # scores (q . k) and weighted sum (p . v) per query-key pair
    lower = (layers - 1) * (tokens * per_row + attention * tokens * tokens)
    last = tokens * keys_values + rows_read * (per_row - keys_values)
    last = last + attention * rows_read * tokens
    return 6 * (lower + last + head_multiply_adds)


def pretraining_flops(settings: dict, tokens, masked, vocab_size: int) -> np.ndarray:
    """MLM + NSP: [CLS] and the masked positions are read; the MLM transform and the
    tied decoder at the masked positions, the pooler and NSP classifier on [CLS]."""
    masked, hidden = np.asarray(masked, np.float64), settings["hidden_size"]
    heads = masked * (hidden * hidden + hidden * vocab_size) + hidden * hidden + 2 * hidden
    return training_flops(settings, tokens, 1 + masked, heads)


def classification_flops(settings: dict, tokens, num_labels: int) -> np.ndarray:
    """Sequence classification: only [CLS] is read (pooler, classifier)."""
    hidden = settings["hidden_size"]
    return training_flops(settings, tokens, 1, hidden * hidden + hidden * num_labels)


def question_answering_flops(settings: dict, tokens) -> np.ndarray:
    """SQuAD: a start and an end logit at every token."""
    tokens = np.asarray(tokens, np.float64)
    return training_flops(settings, tokens, tokens, tokens * 2 * settings["hidden_size"])


SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "be", "da", "fe", "gi", "ho"]
SYLLABLES += ["ju", "ke", "la", "ma", "no", "pe", "ri", "so", "tu", "ve", "wa", "ze"]


def generated_vocabulary(size: int, seed: int = 0) -> list[str]:
    """`size` distinct pseudo-words of 2 to 4 syllables."""
    rng = random.Random(seed)
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choices(SYLLABLES, k=rng.randint(2, 4))))
    return sorted(words)


def write_generated_corpus(path: Path, megabytes: float, seed: int = 0) -> Path:
    """BERT's corpus format (a sentence per line, a blank line between documents).

    Words follow a Zipf law over 30,000 pseudo-words, like real text; written in blocks of
    200,000 words, so generating hundreds of MB takes seconds and little memory.
    """
    rng = np.random.default_rng(seed)
    vocabulary = rng.permutation(np.array(generated_vocabulary(30_000, seed), dtype=object))
    probabilities = 1 / np.arange(1, len(vocabulary) + 1) ** 0.9
    probabilities /= probabilities.sum()
    target, written = int(megabytes * 1_000_000), 0
    with open(path, "w", encoding="utf-8") as out:
        while written < target:
            words = vocabulary[rng.choice(len(vocabulary), 200_000, p=probabilities)].tolist()
            ends = np.cumsum(rng.integers(6, 26, size=20_000))
            ends = ends[ends <= len(words)]
            lines, start = [], 0
            for end in ends.tolist():
                lines.append(" ".join(words[start:end]).capitalize() + ".")
                # about one document break every 8 sentences
                lines.append("" if rng.random() < 0.125 else None)
                start = end
            block = "\n".join(line for line in lines if line is not None) + "\n\n"
            out.write(block)
            written += len(block)
    return path


def pretraining_loss(network, batch: dict) -> torch.Tensor:
    """MLM + NSP loss of bertlab's BertForPreTraining on a collated batch, as
    PretrainingModule's training step computes it."""
    mlm_loss, _, nsp_logits = network(
        batch["input_ids"],
        batch["token_type_ids"],
        batch["attention_mask"],
        batch["masked_positions"],
        batch["masked_labels"],
    )
    return mlm_loss + F.cross_entropy(nsp_logits.float(), batch["next_sentence_labels"])
