"""Shared fixtures: the real config tree through Hydra's compose(), shrunk for a 2-core CPU."""

from __future__ import annotations

import os

# Tests train many tiny models, in-process and in subprocesses: one intra-op thread each
# is as fast for matrices this small and avoids oversubscribing a 2-core machine, where
# spinning OpenMP threads slow every step down several times. Benchmarks keep all cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import random  # noqa: E402
from pathlib import Path

import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

CONF_MODULE = "bertlab.conf"
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

WORDS = [
    "river",
    "stone",
    "cloud",
    "garden",
    "window",
    "music",
    "paper",
    "candle",
    "forest",
    "bridge",
    "silver",
    "quiet",
    "morning",
    "yellow",
    "engine",
    "planet",
    "winter",
    "summer",
    "market",
    "letter",
    "mountain",
    "ocean",
    "valley",
    "signal",
    "harbor",
    "lantern",
    "meadow",
    "thunder",
    "pencil",
    "orchard",
    "castle",
    "rocket",
    "velvet",
    "marble",
    "copper",
    "falcon",
]


def compose_config(overrides: list[str], run_dir: Path, cache_dir: Path) -> DictConfig:
    """The composed `train` config with `overrides`, writing into run_dir and cache_dir."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONF_MODULE, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.run_dir = str(run_dir)
        cfg.cache_dir = str(cache_dir)
    return cfg


@pytest.fixture
def make_config(tmp_path):
    """compose_config bound to per-test run and cache directories."""

    def make(*overrides: str, run_dir: Path | None = None) -> DictConfig:
        return compose_config(list(overrides), run_dir or tmp_path / "run", tmp_path / "cache")

    return make


def write_corpus(path: Path, documents: int = 60, seed: int = 0) -> Path:
    """A corpus in BERT's format: sentences with a per-document topic word, so NSP is learnable."""
    rng = random.Random(seed)
    lines = []
    for _ in range(documents):
        topic = rng.choice(WORDS)
        for _ in range(rng.randint(3, 8)):
            words = [topic] + rng.sample(WORDS, rng.randint(4, 10))
            lines.append(" ".join(words).capitalize() + ".")
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def corpus_file(tmp_path) -> Path:
    return write_corpus(tmp_path / "corpus.txt")


# Overrides that make a pretraining run take seconds on a CPU.
FAST_PRETRAINING = [
    "trainer.max_steps=30",
    "trainer.max_epochs=50",
    "trainer.log_every_n_steps=5",
    "trainer.enable_model_summary=false",
    "task.batch_size=16",
    "task.max_seq_length=64",
    "task.dupe_factor=2",
    "task.num_workers=0",
    "task.val_fraction=0.2",
    "tokenizer.vocab_size=200",
    "tokenizer.min_frequency=1",
    "~callbacks.progress_bar",
]
