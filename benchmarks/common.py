"""What every benchmark shares: interleaved timing, the machine, the model configs.

Both sides of a comparison run in one process and alternate repetition by repetition,
so a neighbour's load on a shared CPU hits both about equally; the median of the
repetitions is reported.
"""

from __future__ import annotations

import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml

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


def interleaved_rates(
    sides: dict[str, Callable[[], int]], repetitions: int, warmup: int = 1
) -> dict[str, float]:
    """Median samples/s per side; each call of a side runs some steps and returns its samples."""
    samples = interleaved_samples(sides, repetitions, warmup)
    return {name: statistics.median(values) for name, values in samples.items()}


def interleaved_samples(
    sides: dict[str, Callable[[], int]], repetitions: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Samples/s per side and repetition, the sides alternating within each repetition."""
    for _ in range(warmup):
        for run in sides.values():
            run()
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for repetition in range(repetitions):
        # Alternate which side goes first, so neither always follows the other's cache state.
        names = list(sides) if repetition % 2 == 0 else list(reversed(sides))
        for name in names:
            started = time.perf_counter()
            samples = sides[name]()
            rates[name].append(samples / (time.perf_counter() - started))
        shown = ", ".join(f"{name} {values[-1]:.1f}" for name, values in rates.items())
        print(f"  repetition {repetition + 1}: {shown} samples/s ({load()})", flush=True)
    return rates


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{cpu}, nproc {os.cpu_count()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def report(title: str, rates: dict[str, float], baseline: str, candidate: str) -> float:
    """Print samples/s of both sides and their ratio; returns the ratio."""
    ratio = rates[candidate] / rates[baseline]
    print(f"{title}")
    for name, rate in rates.items():
        print(f"  {name:<28} {rate:10.1f} samples/s")
    print(f"  ratio {candidate} / {baseline}: {ratio:.2f}x   ({load()})")
    return ratio


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
