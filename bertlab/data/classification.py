"""One data module for every sentence / sentence-pair classification or regression task.

A task YAML says where the data is and how its rows look (see conf/task/glue/*.yaml);
this module reads it (local official files or the Hub), tokenizes it once into an
on-disk cache shared by every run of a sweep, and serves batches drawn from length
buckets and padded to their own longest sequence.

Split roles come from the config: `train_file`, `val_files` (name -> file; the name is
the logging prefix, `val` or MNLI's `val_matched` / `val_mismatched`) and `test_files`
(name -> file; the name is the GLUE submission file stem, `MRPC`, `MNLI-m`, `AX`).
A split's entry is a file name or a dict `{file: ..., <layout keys to override>}`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from bertlab.data.base import BertDataModule
from bertlab.data.cache import cached_dir, default_cache_dir, entry_info, fingerprint
from bertlab.data.readers import (
    IMDB_LABEL_DIRS,
    HubSplit,
    RawExample,
    ReadCounts,
    TableLayout,
    infer_label_names,
    label_ids,
    read_examples,
    read_hub,
    regression_targets,
)
from bertlab.errors import ConfigError, DataError
from bertlab.metrics import check_metric_names
from bertlab.tokenizer import special_ids

log = logging.getLogger(__name__)

TRAIN = "train"
LAYOUT_KEYS = (
    "format",
    "header",
    "num_columns",
    "text_columns",
    "label_column",
    "index_column",
    "where",
    "label_map",
    "drop_labels",
    "skip_malformed",
    "multiline_fields",
    "text_replacements",
)
ENCODE_CHUNK = 10_000  # examples per encode_batch call: bounds memory on MNLI-sized files
# Bumped when a cache entry's content or info changes; version 2 stores what the read skipped.
CACHE_VERSION = 2


@dataclass(frozen=True)
class SplitSource:
    """One split: its role, and either a local file with its layout or a Hub split."""

    name: str
    role: str  # train, val or test
    path: Path | None
    layout: TableLayout | None
    hub: HubSplit | None
    optional: bool = False

    @property
    def labeled(self) -> bool:
        return self.role != "test"

    @property
    def available(self) -> bool:
        return self.hub is not None or self.path.exists() or not self.optional

    @property
    def where(self) -> str:
        return self.hub.source if self.hub is not None else str(self.path)

    def read(self, counts: ReadCounts | None = None) -> list[RawExample]:
        """The examples; `counts`, if given, receives what was skipped (for the caller to
        report).
        """
        if self.hub is not None:
            return read_hub(self.hub, labeled=self.labeled, counts=counts)
        return read_examples(self.path, self.layout, labeled=self.labeled, counts=counts)


class ClassificationDataModule(BertDataModule):
    """Sentence (pair) classification / regression data, from a task YAML's keys."""

    def __init__(
        self,
        data_dir: str | None = None,
        train_file: str | dict | None = None,
        val_files: dict | None = None,
        test_files: dict | None = None,
        hub: dict | None = None,
        labels: Sequence[str] | None = None,
        regression: bool = False,
        metrics: Sequence[str] = ("accuracy",),
        max_seq_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_buckets: int = 10,
        predict_test: bool = False,
        num_workers: int = 0,
        pin_memory: bool = False,
        cache_dir: str | None = None,
        seed: int = 0,
        language: str | None = None,  # XNLI: read only through the task file's interpolations
        **layout: object,
    ):
        super().__init__()
        unknown = sorted(set(layout) - set(LAYOUT_KEYS))
        if unknown:
            raise ConfigError(
                f"task: unknown key(s) {unknown}; a task may set {sorted(LAYOUT_KEYS)}"
            )
        check_metric_names(list(metrics), regression)
        if regression and labels:
            raise ConfigError(
                "task.labels must be null for a regression task (task.regression=true)"
            )
        self.data_dir = Path(data_dir).expanduser() if data_dir is not None else None
        self.base_layout = TableLayout().with_overrides(layout)
        self.hub_config = dict(hub) if hub else None
        self.label_names = list(labels) if labels else None
        self.regression = regression
        self.metrics = list(metrics)
        self.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_buckets = num_buckets
        self.predict_test = predict_test
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.seed = seed
        self.sources = self._split_sources(train_file, val_files or {}, test_files or {})
        self.splits: dict[str, TokenizedSplit] = {}
        self._entries: dict[str, Path] = {}

    # ---- where the data comes from -------------------------------------------------

    def _split_sources(
        self, train_file, val_files: dict, test_files: dict
    ) -> dict[str, SplitSource]:
        if self.data_dir is None and self.hub_config is None:
            raise ConfigError(
                "task.data_dir is not set and this task has no Hub source: set task.data_dir=DIR"
            )
        if train_file is None:
            raise ConfigError("task.train_file is not set")
        roles = [(TRAIN, TRAIN, train_file)]
        roles += [(name, "val", spec) for name, spec in val_files.items()]
        roles += [(name, "test", spec) for name, spec in test_files.items()]
        return {name: self._split_source(name, role, spec) for name, role, spec in roles}

    def _split_source(self, name: str, role: str, spec) -> SplitSource:
        overrides = {"file": spec} if isinstance(spec, str) else dict(spec)
        optional = bool(overrides.pop("optional", False))
        if self.data_dir is None:
            return SplitSource(name, role, None, None, self._hub_split(name), optional)
        path = self.data_dir / overrides.pop("file")
        return SplitSource(
            name, role, path, self.base_layout.with_overrides(overrides), None, optional
        )

    def _hub_split(self, name: str) -> HubSplit:
        config = dict(self.hub_config)
        splits = config.pop("splits", {})
        if name not in splits:
            raise ConfigError(
                f"task.hub.splits has no entry for split {name!r}; set task.data_dir=DIR"
            )
        spec = splits[name]
        config.update({"split": spec} if isinstance(spec, str) else spec)
        # The Hub stores class ids; by default id i is the task's i-th label name.
        labels = config.get("labels") or self.label_names
        return HubSplit(
            path=config["path"],
            name=config.get("name"),
            split=config["split"],
            text_columns=tuple(config["text_columns"]),
            label_column=config.get("label_column", "label"),
            labels=tuple(labels) if labels else None,
        )

    @property
    def val_split_names(self) -> list[str]:
        return [name for name, source in self.sources.items() if source.role == "val"]

    @property
    def test_split_names(self) -> list[str]:
        return [name for name, s in self.sources.items() if s.role == "test" and s.available]

    def training_texts(self) -> Iterator[str]:
        for example in self.sources[TRAIN].read():
            yield from example.texts

    def data_fingerprint(self) -> str:
        source = self.sources[TRAIN]
        files, names = source_files(source.path)
        return fingerprint(*files, names, source.hub or source.layout)

    # ---- tokenize once, cache on disk ----------------------------------------------

    def prepare_data(self) -> None:
        self._build_all()

    def setup(self, stage: str | None = None) -> None:
        entries = self._build_all()
        self.splits = {name: TokenizedSplit(entry) for name, entry in entries.items()}

    def data_report(self) -> dict:
        """Per split: examples kept, rows skipped as malformed, rows dropped by label."""
        return {name: entry_info(entry)["read"] for name, entry in self._build_all().items()}

    def _build_all(self) -> dict[str, Path]:
        """Cache entries for every split; train first, since it may fix the label names.

        What each read skipped is reported here, from the entry, so a run that reuses the
        cache says the same as the run that built it.
        """
        if self.tokenizer is None:
            raise RuntimeError("set_tokenizer() must be called before preparing the data")
        if self._entries:  # prepare_data, setup and module_kwargs all ask; hash the files once
            return self._entries
        entries = {TRAIN: self._cached_split(TRAIN)}
        if self.label_names is None and not self.regression:
            self.label_names = entry_info(entries[TRAIN])["label_names"]
        for name, source in self.sources.items():
            if name == TRAIN or not source.available:
                continue
            if source.role == "test" and not self.predict_test:
                continue  # test sets only matter for submission files
            entries[name] = self._cached_split(name)
        for name, entry in entries.items():
            ReadCounts.from_dict(entry_info(entry)["read"]).report(self.sources[name].where)
        self._entries = entries
        return entries

    def _cached_split(self, name: str) -> Path:
        source = self.sources[name]
        params = {
            "split": name,
            "source": source.hub or source.layout,
            "labeled": source.labeled,
            "labels": self.label_names,
            "regression": self.regression,
            "max_seq_length": self.max_seq_length,
            "cache_version": CACHE_VERSION,
        }
        files, names = source_files(source.path)
        key = fingerprint(*files, names, self.tokenizer.to_str(), params)
        return cached_dir(
            self.cache_dir, "classification", key, lambda tmp: self._build_split(source, tmp)
        )

    def _build_split(self, source: SplitSource, directory: Path) -> dict:
        counts = ReadCounts()
        examples = source.read(counts)
        info: dict = {"split": source.name, "num_examples": len(examples), "read": counts.to_dict()}
        if source.labeled:
            if self.label_names is None and not self.regression:
                info["label_names"] = infer_label_names(examples)
            targets = self._targets(examples, info.get("label_names", self.label_names))
            np.save(directory / "labels.npy", targets)
        encode_split(self.tokenizer, examples, self.max_seq_length, directory)
        (directory / "index.json").write_text(json.dumps([e.index for e in examples]))
        log.info("tokenized %s: %d examples", source.name, len(examples))
        return info

    def _targets(self, examples: list[RawExample], label_names) -> np.ndarray:
        if self.regression:
            return np.asarray(regression_targets(examples), dtype=np.float32)
        return np.asarray(label_ids(examples, label_names), dtype=np.int64)

    # ---- what the LightningModule needs --------------------------------------------

    def module_kwargs(self) -> dict:
        if self.label_names is None and not self.regression:
            self._build_all()
        return {
            "num_labels": 1 if self.regression else len(self.label_names),
            "label_names": None if self.regression else list(self.label_names),
            "metrics": list(self.metrics),
            "regression": self.regression,
            "val_splits": self.val_split_names,
        }

    def info(self) -> dict:
        """What `bertlab-prepare` prints: examples per split and the labels."""
        entries = self._build_all()
        facts: dict = {
            f"{name} examples": entry_info(e)["num_examples"] for name, e in entries.items()
        }
        facts["labels"] = "regression" if self.regression else ", ".join(self.label_names)
        facts["cache"] = str(entries[TRAIN].parent)
        return facts

    def baseline_metrics(self) -> dict[str, float]:
        """Accuracy of always answering the training set's most frequent label."""
        if self.regression or not self.splits:
            return {}
        majority = np.bincount(self.splits[TRAIN].labels).argmax()
        return {
            f"{name}/majority_accuracy": float(np.mean(self.splits[name].labels == majority))
            for name in self.val_split_names
            if name in self.splits
        }

    # ---- batches -------------------------------------------------------------------

    def train_dataloader(self) -> DataLoader:
        return self._loader(TRAIN, self.batch_size, shuffle=True)

    def val_dataloader(self) -> list[DataLoader]:
        return [
            self._loader(name, self.eval_batch_size, shuffle=False) for name in self.val_split_names
        ]

    def test_dataloader(self) -> list[DataLoader]:
        return [
            self._loader(name, self.eval_batch_size, shuffle=False)
            for name in self.test_split_names
        ]

    def _loader(self, name: str, batch_size: int, shuffle: bool) -> DataLoader:
        split = self.splits[name]
        world_size, rank = self._world()
        sampler = FixedBucketSampler(
            split.lengths,
            batch_size,
            num_buckets=self.num_buckets,
            shuffle=shuffle,
            seed=self.seed,
            num_replicas=world_size,
            rank=rank,
            # training ranks must step together; evaluation counts each example once
            even_shards=shuffle,
        )
        # batch_size=None: the sampler yields whole batches of indices, the dataset pads them.
        return DataLoader(
            split,
            sampler=sampler,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    # ---- GLUE submission files ------------------------------------------------------

    def write_predictions(
        self, split: str, positions: Sequence[int], predictions: Sequence, directory: str | Path
    ) -> Path:
        """Write `<split>.tsv` (`index<TAB>prediction`, label strings) in GLUE's submission
        format.
        """
        return write_submission(
            Path(directory) / f"{split}.tsv",
            self.splits[split].index,
            positions,
            predictions,
            None if self.regression else self.label_names,
        )


def source_files(path: Path | None) -> tuple[list[Path], list[str]]:
    """The files a split is read from (hashed for the cache key) and their names."""
    if path is None:  # the Hub: its split name in the key stands for the content
        return [], []
    if not path.exists():
        raise DataError(path, "not found (task.data_dir must hold the dataset's official files)")
    if path.is_dir():  # IMDB: one file per review, its label in the directory name
        files = [f for label in IMDB_LABEL_DIRS for f in sorted(path.glob(f"{label}/*.txt"))]
        return files, [str(f.relative_to(path)) for f in files]
    return [path], [path.name]


def write_submission(
    path: Path,
    index: Sequence[str],
    positions: Sequence[int],
    predictions: Sequence,
    label_names: Sequence[str] | None,
) -> Path:
    by_position = dict(zip((int(p) for p in positions), predictions, strict=True))
    missing = len(index) - len(by_position)
    if missing:
        raise ValueError(f"{path.name}: {missing} of {len(index)} test examples have no prediction")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        out.write("index\tprediction\n")
        for position, row_index in enumerate(index):
            value = by_position[position]
            shown = label_names[int(value)] if label_names is not None else f"{float(value):.3f}"
            out.write(f"{row_index}\t{shown}\n")
    return path


# ---- tokenized splits ---------------------------------------------------------------------


def encode_split(
    tokenizer: Tokenizer, examples: Sequence[RawExample], max_seq_length: int, directory: Path
) -> None:
    """[CLS] A [SEP] B [SEP] with longest-first truncation, stored as flat arrays + offsets."""
    tokenizer = Tokenizer.from_str(tokenizer.to_str())  # truncation settings stay off the caller's
    tokenizer.enable_truncation(max_seq_length, strategy="longest_first")
    tokenizer.no_padding()
    ids, type_ids, lengths = [], [], []
    for start in range(0, len(examples), ENCODE_CHUNK):
        chunk = examples[start : start + ENCODE_CHUNK]
        inputs = [e.texts if len(e.texts) == 2 else e.texts[0] for e in chunk]
        for encoding in tokenizer.encode_batch(inputs):
            ids.append(np.asarray(encoding.ids, dtype=np.int32))
            type_ids.append(np.asarray(encoding.type_ids, dtype=np.int8))
            lengths.append(len(encoding.ids))
    np.save(directory / "input_ids.npy", np.concatenate(ids))
    np.save(directory / "token_type_ids.npy", np.concatenate(type_ids))
    np.save(directory / "offsets.npy", np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
    (directory / "pad_id.json").write_text(json.dumps(special_ids(tokenizer).pad))


class TokenizedSplit(Dataset):
    """A cached split; `split[[i, j, ...]]` is one batch padded to its longest sequence."""

    def __init__(self, directory: Path):
        self.input_ids = np.load(directory / "input_ids.npy", mmap_mode="r")
        self.token_type_ids = np.load(directory / "token_type_ids.npy", mmap_mode="r")
        self.offsets = np.load(directory / "offsets.npy")
        labels_file = directory / "labels.npy"
        self.labels = np.load(labels_file) if labels_file.exists() else None
        self.index = json.loads((directory / "index.json").read_text())
        self.pad_id = json.loads((directory / "pad_id.json").read_text())
        self.lengths = np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, positions: Sequence[int]) -> dict[str, torch.Tensor]:
        longest = int(self.lengths[positions].max())
        input_ids = np.full((len(positions), longest), self.pad_id, dtype=np.int64)
        token_type_ids = np.zeros((len(positions), longest), dtype=np.int64)
        attention_mask = np.zeros((len(positions), longest), dtype=np.int64)
        for row, position in enumerate(positions):
            start, end = self.offsets[position], self.offsets[position + 1]
            input_ids[row, : end - start] = self.input_ids[start:end]
            token_type_ids[row, : end - start] = self.token_type_ids[start:end]
            attention_mask[row, : end - start] = 1
        batch = {
            "input_ids": torch.from_numpy(input_ids),
            "token_type_ids": torch.from_numpy(token_type_ids),
            "attention_mask": torch.from_numpy(attention_mask),
            "example_index": torch.as_tensor(positions, dtype=torch.int64),
        }
        if self.labels is not None:
            batch["labels"] = torch.from_numpy(self.labels[positions])
        return batch


# ---- length-bucketed batches --------------------------------------------------------------


class FixedBucketSampler(DistributedSampler):
    """Batches of indices drawn from length buckets, like GluonNLP's FixedBucketSampler.

    Examples fall into `num_buckets` buckets by length (evenly spaced bounds between the
    shortest and longest); batches never mix buckets, so padding stays small. With
    `shuffle`, examples are shuffled within buckets and batches across buckets, from
    `seed` and the epoch (`set_epoch`), identically on every rank.

    Under DDP, rank r takes every `num_replicas`-th batch. Training pads the batch list
    so every rank steps the same number of times (`even_shards`); evaluation does not,
    so every example is scored exactly once. bertlab trainers set
    `use_distributed_sampler: false`; subclassing DistributedSampler keeps Lightning from
    wrapping (and sharding a second time) even where a user turns that back on.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        num_buckets: int = 10,
        shuffle: bool = False,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        even_shards: bool = False,
    ):
        # DistributedSampler.__init__ would ask torch.distributed; we are told instead.
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.num_replicas, self.rank, self.even_shards = num_replicas, rank, even_shards
        self.buckets = bucket_members(self.lengths, num_buckets)
        self.resume_epoch, self.resume_start = -1, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, start: int) -> None:
        """Exact resume (bertlab/callbacks.py): `epoch` continues at this rank's `start`-th
        batch.
        """
        self.epoch, self.resume_epoch, self.resume_start = epoch, epoch, start

    def all_batches(self) -> list[list[int]]:
        """Every rank's batches for this epoch, in order (the same on every rank)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        batches = []
        for members in self.buckets:
            order = rng.permutation(members) if self.shuffle else members
            batches += [
                order[i : i + self.batch_size].tolist()
                for i in range(0, len(order), self.batch_size)
            ]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.all_batches()
        if self.even_shards and batches:
            padded = math.ceil(len(batches) / self.num_replicas) * self.num_replicas
            batches += batches[: padded - len(batches)]
        start = self.resume_start if self.epoch == self.resume_epoch else 0
        return iter(batches[self.rank :: self.num_replicas][start:])

    def __len__(self) -> int:
        total = sum(math.ceil(len(members) / self.batch_size) for members in self.buckets)
        if self.even_shards:
            return math.ceil(total / self.num_replicas)
        return len(range(self.rank, total, self.num_replicas))


def bucket_members(lengths: np.ndarray, num_buckets: int) -> list[np.ndarray]:
    """Indices per bucket (sorted, non-empty buckets only), bounds evenly spaced by length."""
    if len(lengths) == 0:
        return []
    shortest, longest = int(lengths.min()), int(lengths.max())
    bounds = np.linspace(shortest, longest, num_buckets + 1)[1:]
    bucket_of = np.searchsorted(bounds, lengths, side="left")
    members = [np.flatnonzero(bucket_of == b) for b in range(num_buckets)]
    return [m for m in members if len(m)]
