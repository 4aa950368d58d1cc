"""Fixtures shared by every folder: the real config tree through Hydra's compose(), shrunk for a
2-core CPU, a corpus, and tiny checkpoints of every task family. Plain helpers live in
tests/support/ (data writers, compose and run helpers, models)."""

from __future__ import annotations

import os

# Tests train many tiny models, in-process and in subprocesses: one intra-op thread each
# is as fast for matrices this small and avoids oversubscribing a 2-core machine, where
# spinning OpenMP threads slow every step down several times. Benchmarks keep all cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_module  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from support.data import write_corpus  # noqa: E402
from support.models import save_task_checkpoints  # noqa: E402
from support.runs import CONF_MODULE, compose_config  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture
def make_config(tmp_path):
    """compose_config bound to per-test run and cache directories."""

    def make(*overrides: str, run_dir: Path | None = None) -> DictConfig:
        return compose_config(list(overrides), run_dir or tmp_path / "run", tmp_path / "cache")

    return make


@pytest.fixture(scope="session")
def composed_tasks() -> Callable[[str], DictConfig]:
    """(task) -> a copy of `train` composed with task=TASK; each task is composed once per session
    (Hydra's compose() is the slow part). Callers set run_dir and cache_dir themselves."""
    configs: dict[str, DictConfig] = {}

    def compose_task(task: str) -> DictConfig:
        if task not in configs:
            GlobalHydra.instance().clear()
            with initialize_config_module(config_module=CONF_MODULE, version_base="1.3"):
                configs[task] = compose("train", overrides=[f"task={task}"])
        return configs[task].copy()

    return compose_task


@pytest.fixture
def corpus_file(tmp_path) -> Path:
    return write_corpus(tmp_path / "corpus.txt")


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Tiny random checkpoints of every task family, saved as training saves them."""
    return save_task_checkpoints(tmp_path_factory.mktemp("checkpoints"))
