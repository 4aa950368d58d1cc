"""SQuAD-format data for training: local official files under `task.data_dir`, else the Hub.

The data module provides data only: batches of windows, and for validation the questions
and window offsets that decoding needs (`eval_set()`). Scoring is the module's metric
(`bertlab.metrics.SquadMetric`) over the official rules in `bertlab.qa.score`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from bertlab.data.base import BertDataModule
from bertlab.data.cache import cached_dir, default_cache_dir, entry_info, fingerprint
from bertlab.data.sampling import EpochSampler
from bertlab.errors import ConfigError
from bertlab.qa.read import SquadSplit, read_squad_file, read_squad_hub
from bertlab.qa.score import GoldQuestion, no_answer_baseline
from bertlab.qa.windows import (
    SquadEvalSet,
    SquadFeatures,
    WindowSettings,
    build_features,
    collate_features,
)

log = logging.getLogger(__name__)

FEATURES_FORMAT = 2  # bump when the cached arrays or their facts change meaning
STAGES = ("train", "validation")


class QuestionAnsweringDataModule(BertDataModule):
    """SQuAD-format data: local official files under `data_dir`, else the Hub."""

    def __init__(
        self,
        data_dir: str | None = None,
        train_file: str = "train-v1.1.json",
        dev_file: str = "dev-v1.1.json",
        hub_dataset: str = "rajpurkar/squad",
        version_2_with_negative: bool = False,
        max_seq_length: int = 384,
        doc_stride: int = 128,
        max_query_length: int = 64,
        batch_size: int = 12,
        eval_batch_size: int | None = None,
        n_best_size: int = 20,
        max_answer_length: int = 30,
        null_score_diff_threshold: float = 0.0,
        num_workers: int = 0,
        pin_memory: bool = False,
        cache_dir: str | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.data_dir = Path(data_dir).expanduser() if data_dir else None
        self.train_file, self.dev_file, self.hub_dataset = train_file, dev_file, hub_dataset
        self.version_2_with_negative = version_2_with_negative
        self.settings = WindowSettings(max_seq_length, doc_stride, max_query_length)
        self.settings.check()
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.decoding = {
            "n_best_size": n_best_size,
            "max_answer_length": max_answer_length,
            "null_score_diff_threshold": null_score_diff_threshold,
        }
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.seed = seed
        self._splits: dict[str, SquadSplit] = {}
        self._arrays: dict[str, dict[str, np.ndarray]] = {}
        self._facts: dict[str, dict] = {}  # per stage: what the cache entry records
        if self.data_dir is not None:
            self._check_local_files()

    # -- sources

    def _check_local_files(self) -> None:
        for name in (self.train_file, self.dev_file):
            if not (self.data_dir / name).is_file():
                raise ConfigError(
                    f"task.data_dir={self.data_dir}: no {name} there (the official SQuAD file)"
                )

    def _local_path(self, stage: str) -> Path | None:
        if self.data_dir is None:
            return None
        return self.data_dir / (self.train_file if stage == "train" else self.dev_file)

    def read_split(self, stage: str) -> SquadSplit:
        """The questions of `train` or `validation` (read once, then kept)."""
        if stage not in self._splits:
            path, training = self._local_path(stage), stage == "train"
            if path is not None:
                self._splits[stage] = read_squad_file(path, training)
            else:
                self._splits[stage] = read_squad_hub(
                    self.hub_dataset, stage, training, "task.data_dir"
                )
        return self._splits[stage]

    def _source_key(self, stage: str):
        path = self._local_path(stage)
        return path if path is not None else f"{self.hub_dataset}:{stage}"

    # -- features

    def _features(self, stage: str) -> dict[str, np.ndarray]:
        if self.tokenizer is None:
            raise RuntimeError("set_tokenizer() must be called before the SQuAD features are built")
        if stage not in self._arrays:
            entry = self._feature_entry(stage)
            self._facts[stage] = entry_info(entry)
            self._report_skipped(stage)
            self._arrays[stage] = {
                path.stem: np.load(path, mmap_mode="r") for path in entry.glob("*.npy")
            }
        return self._arrays[stage]

    def _feature_entry(self, stage: str) -> Path:
        train = stage == "train"
        key = fingerprint(
            FEATURES_FORMAT,
            self._source_key(stage),
            self.tokenizer.to_str(),
            self.settings.__dict__,
            train,
        )

        def build(directory: Path) -> dict:
            split = self.read_split(stage)
            arrays = build_features(split, self.tokenizer, self.settings, train, not train)
            for name, array in arrays.items():
                np.save(directory / f"{name}.npy", array)
            return {
                "questions": len(split.examples),
                "skipped_questions": len(split.skipped),
                "windows": int(len(arrays["lengths"])),
                "source": str(self._source_key(stage)),
            }

        return cached_dir(self.cache_dir, "squad-features", key, build)

    def _report_skipped(self, stage: str) -> None:
        """On a cache hit the file is not read again: repeat what its reading skipped."""
        skipped = self._facts[stage]["skipped_questions"]
        if skipped and stage not in self._splits:
            log.warning(
                "%s: %d training questions skipped (answer text not at its answer_start)",
                self._facts[stage]["source"],
                skipped,
            )

    def prepare_data(self) -> None:
        for stage in STAGES:
            self._features(stage)

    def setup(self, stage: str | None = None) -> None:
        self.prepare_data()  # cache hits after prepare_data; loads the arrays on every rank

    def eval_set(self) -> SquadEvalSet:
        arrays = self._features("validation")
        return SquadEvalSet(
            split=self.read_split("validation"),
            example_index=np.asarray(arrays["example_index"]),
            offsets=arrays["offsets"],
            token_is_max_context=arrays["token_is_max_context"],
            lengths=np.asarray(arrays["lengths"]),
        )

    # -- loaders

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            SquadFeatures(self._features("train"), train=True),
            batch_size=self.batch_size,
            sampler=EpochSampler(
                len(self._features("train")["lengths"]), shuffle=True, seed=self.seed
            ),
            collate_fn=collate_features,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            SquadFeatures(self._features("validation"), train=False),
            batch_size=self.eval_batch_size,
            sampler=EpochSampler(len(self._features("validation")["lengths"]), shuffle=False),
            collate_fn=collate_features,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )

    # -- what the entry point asks

    def training_texts(self) -> Iterator[str]:
        split = self.read_split("train")
        yield from split.contexts
        yield from (example.question for example in split.examples)

    def gold_questions(self) -> list[GoldQuestion]:
        """The validation questions with their gold answer texts, in file order."""
        examples = self.read_split("validation").examples
        return [GoldQuestion(example.qid, example.answer_texts) for example in examples]

    def baseline_metrics(self) -> dict[str, float]:
        """v2.0: the official scores of answering "" to every question (the NoAns share)."""
        if not self.version_2_with_negative:
            return {}  # v1.1: "" scores 0
        return {
            f"val/{name}": value
            for name, value in no_answer_baseline(self.gold_questions()).items()
        }

    def info(self) -> dict:
        """What `bertlab-prepare` prints: questions and windows per split, skipped questions."""
        self.prepare_data()
        facts: dict = {}
        for stage in STAGES:
            recorded = self._facts[stage]
            facts[f"{stage} questions"] = recorded["questions"]
            facts[f"{stage} windows"] = recorded["windows"]
        facts["train questions skipped"] = self._facts["train"]["skipped_questions"]
        return facts

    def data_fingerprint(self) -> str:
        return fingerprint(self._source_key("train"))

    def module_kwargs(self) -> dict:
        return {
            "version_2_with_negative": self.version_2_with_negative,
            "max_seq_length": self.settings.max_seq_length,
            **self.decoding,
        }
