"""Pretraining data: corpus -> sharded sentence-pair instances (cached) -> masked batches."""

from __future__ import annotations

import logging
import os
from bisect import bisect_right
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from pytorch_lightning.accelerators import CPUAccelerator
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from torch.utils.data import DataLoader, Dataset

from bertlab.data.base import BertDataModule
from bertlab.data.cache import cached_dir, default_cache_dir, entry_info, fingerprint
from bertlab.data.corpus import python_documentation, python_documentation_id, write_documents
from bertlab.data.instances import (
    IS_RANDOM_NEXT,
    LENGTH_A,
    LENGTH_B,
    OFFSET,
    RECIPE_VERSION,
    InstanceSettings,
    MaskingSettings,
    mask_tokens,
)
from bertlab.data.sampling import EpochSampler
from bertlab.data.sentences import build_shard_from_documents, check_splitter
from bertlab.data.sources import CorpusSource, TextFiles, open_source
from bertlab.data.workers import run_tasks
from bertlab.errors import ConfigError, DataError
from bertlab.tokenizer import special_ids

log = logging.getLogger(__name__)

MASKING_MODES = ("static", "dynamic")
# WordPiece is trained on a sample of this many bytes of the corpus: training reads every word
# of its input (about 4 s per 20 MB on one core here), and a few tens of MB give the same
# frequent words and pieces as gigabytes.
VOCABULARY_SAMPLE_BYTES = 20_000_000


class PretrainingDataModule(BertDataModule):
    """Masked-LM + NSP batches from `corpus` (default: Python's own documentation).

    `corpus`: text files, JSON Lines / CSV / Parquet files, a save_to_disk directory or
    `hf:NAME` (bertlab.data.sources). Instances are cached under
    `cache_dir/pretraining/<key>`, the key hashing the corpus' identity, the tokenizer and
    the instance settings; `bertlab-prepare` builds the same entry ahead of time.
    """

    def __init__(
        self,
        corpus: str | list[str] | None = None,
        text_column: str = "text",
        corpus_config: str | None = None,
        corpus_split: str | None = None,
        sentence_splitter: str = "spacy",
        max_seq_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        short_seq_prob: float = 0.1,
        dupe_factor: int = 5,
        masked_lm_prob: float = 0.15,
        max_predictions_per_seq: int | None = 20,
        whole_word_masking: bool = False,
        mask_token_prob: float = 0.8,
        random_token_prob: float = 0.1,
        nsp: bool = True,
        dropout: bool = True,
        masking: str = "static",
        val_fraction: float = 0.05,
        chunk_chars: int = 4_000_000,
        prepare_workers: int | None = None,
        group_by_length: bool = True,
        num_workers: int | None = None,
        pin_memory: bool = False,
        cache_dir: str | None = None,
        seed: int = 12345,
    ):
        super().__init__()
        if masking not in MASKING_MODES:
            raise ConfigError(
                f"task.masking={masking!r}: allowed values are {', '.join(MASKING_MODES)}"
            )
        if not 0 < val_fraction < 1:
            raise ConfigError(
                f"task.val_fraction={val_fraction}: must be between 0 and 1 (exclusive)"
            )
        self.corpus = corpus
        self.source_settings = {
            "text_column": text_column,
            "corpus_config": corpus_config,
            "corpus_split": corpus_split,
        }
        self.sentence_splitter = sentence_splitter
        self._source: CorpusSource | None = None
        self._identity: object | None = None
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.nsp, self.dropout = nsp, dropout
        self.instance_settings = InstanceSettings(
            max_seq_length, short_seq_prob, dupe_factor, seed, nsp
        )
        self.masking_settings = MaskingSettings(
            masked_lm_prob,
            max_predictions_per_seq,
            whole_word_masking,
            mask_token_prob,
            random_token_prob,
        )
        self.masking, self.val_fraction, self.chunk_chars = masking, val_fraction, chunk_chars
        self.prepare_workers = (
            prepare_workers if prepare_workers is not None else min(4, os.cpu_count() or 1)
        )
        self.group_by_length = group_by_length
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.seed = seed
        self.shard_dir: Path | None = None

    # -- text ---------------------------------------------------------------------
    def corpus_source(self) -> CorpusSource:
        """The documents of `corpus`, opened once (a Hub revision is resolved once)."""
        if self._source is None:
            if self.corpus:
                self._source = open_source(self.corpus, **self.source_settings)
            else:
                self._source = TextFiles(self.default_corpus_paths())
            if self._source.splits_sentences and self.nsp:
                check_splitter(self.sentence_splitter)
        return self._source

    def default_corpus_paths(self) -> list[Path]:
        entry = cached_dir(
            self.cache_dir,
            "corpus",
            fingerprint(python_documentation_id()),
            lambda tmp: {
                "documents": write_documents(python_documentation(), tmp / "python-docs.txt")
            },
        )
        return [entry / "python-docs.txt"]

    def training_texts(self) -> Iterator[str]:
        """About VOCABULARY_SAMPLE_BYTES of documents spread over the corpus (a small one whole)."""
        return self.corpus_source().texts(VOCABULARY_SAMPLE_BYTES)

    def corpus_identity(self) -> object:
        """The source's identity, computed once: for text files it hashes their contents,
        which the vocabulary key, the instance key and the run's report all need."""
        if self._identity is None:
            self._identity = self.corpus_source().identity()
        return self._identity

    def data_fingerprint(self) -> str:
        return fingerprint(self.corpus_identity())

    def sentence_settings(self) -> tuple:
        """Cache-key part: how whole documents become sentences; none for text files."""
        if not self.corpus_source().splits_sentences:
            return ()  # so text corpora keep the cache keys they had
        return ({"sentence_splitter": self.sentence_splitter if self.nsp else None},)

    # -- preparation --------------------------------------------------------------
    def prepare_data(self) -> None:
        self.shard_dir = self.prepared_dir()

    def prepared_dir(self) -> Path:
        """The cache entry holding this corpus' instances, built first if missing."""
        source = self.corpus_source()
        key = fingerprint(
            RECIPE_VERSION,
            self.corpus_identity(),
            self.tokenizer.to_str(),
            self.instance_settings.to_dict(),
            self.val_fraction,
            self.chunk_chars,
            *self.sentence_settings(),
        )
        return cached_dir(
            self.cache_dir, "pretraining", key, lambda tmp: self._build_shards(source, tmp)
        )

    def _build_shards(self, source: CorpusSource, out_dir: Path) -> dict:
        tasks = self._chunk_tasks(source, out_dir)
        totals: dict[str, int] = {}
        with _preparation_progress() as progress:
            bar = progress.add_task(
                "preparing pretraining instances", total=source.total_bytes(), documents=0
            )
            for counts in run_tasks(build_shard_from_documents, tasks, self.prepare_workers):
                for name, value in counts.items():
                    totals[name] = totals.get(name, 0) + value
                progress.update(bar, advance=counts["source_bytes"], documents=totals["documents"])
        totals["skipped_records"] = source.skipped.count
        if not totals.get("train") or not totals.get("val"):
            raise DataError(
                source.description,
                f"the corpus yields {totals.get('train', 0)} training and "
                f"{totals.get('val', 0)} validation instances; it needs more documents "
                "(text files: one sentence per line, a blank line between documents)",
            )
        log.info("prepared %s", totals)
        return totals

    def _chunk_tasks(self, source: CorpusSource, out_dir: Path) -> Iterator[dict]:
        """Stream documents into chunks of about `chunk_chars` characters; memory stays bounded.

        Every k-th document (k = 1 / val_fraction) is held out for validation.
        """
        every = max(2, round(1 / self.val_fraction))
        chunk = {"train": [], "val": [], "chars": 0}
        chunk_number, bytes_done = 0, 0
        for doc_number, document in enumerate(source.documents()):
            chunk["val" if doc_number % every == every // 2 else "train"].append(document)
            chunk["chars"] += (
                len(document) + 1
                if isinstance(document, str)
                else sum(len(s) + 1 for s in document) + 1
            )
            if chunk["chars"] >= self.chunk_chars:
                yield self._task(chunk, chunk_number, out_dir, source.bytes_read - bytes_done)
                bytes_done = source.bytes_read
                chunk, chunk_number = {"train": [], "val": [], "chars": 0}, chunk_number + 1
        if chunk["train"] or chunk["val"]:
            yield self._task(chunk, chunk_number, out_dir, source.bytes_read - bytes_done)

    def _task(self, chunk: dict, number: int, out_dir: Path, source_bytes: int) -> dict:
        return {
            **chunk,
            "documents": len(chunk["train"]) + len(chunk["val"]),
            "source_bytes": source_bytes,
            # Without next sentence prediction a record stays whole (RoBERTa's full sentences).
            "sentence_splitter": self.sentence_splitter if self.nsp else None,
            "chunk": number,
            "out_dir": str(out_dir),
            "tokenizer_json": self.tokenizer.to_str(),
            "settings": self.instance_settings.to_dict(),
        }

    # -- loading ------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.shard_dir is None:
            self.shard_dir = self.prepared_dir()
        ids = special_ids(self.tokenizer)
        vocab = self.tokenizer.get_vocab()
        specials = {ids.pad, ids.unk, ids.cls, ids.sep, ids.mask}
        word_start = np.ones(self.tokenizer.get_vocab_size(), dtype=bool)
        for token, token_id in vocab.items():
            word_start[token_id] = not token.startswith("##")
        common = {
            "special": ids,
            "masking": self.masking_settings,
            "word_start": word_start,
            "replacement_ids": np.array(sorted(set(vocab.values()) - specials), dtype=np.int64),
            "seed": self.seed,
            "pairs": self.nsp,
        }
        self.train_set = ShardedInstances(
            sorted(self.shard_dir.glob("train-*.index.npy")),
            dynamic=self.masking == "dynamic",
            **common,
        )
        val_files = sorted(self.shard_dir.glob("val-*.index.npy"))
        self.val_set = ShardedInstances(val_files, dynamic=False, **common)
        # The same held-out instances masked at BERT's 15% (80/10/10), so that runs at any
        # masking rate report a masked-LM accuracy that compares (val/mlm_accuracy_at_15).
        self.val_set_at_15 = None
        if self.masking_settings.at_bert_rate() != self.masking_settings:
            reference = {**common, "masking": self.masking_settings.at_bert_rate()}
            self.val_set_at_15 = ShardedInstances(val_files, dynamic=False, **reference)

    def info(self) -> dict:
        return entry_info(self.shard_dir)

    def data_report(self) -> dict:
        """Instances per split and fingerprints of what made them, so that two runs whose
        metrics differ show at a glance whether they trained on the same corpus, vocabulary
        and instances (the instance fingerprint is the cache key, which covers the other two).
        """
        counts = self.info()
        return {
            "train": {"instances": counts.get("train", 0)},
            "val": {"instances": counts.get("val", 0)},
            "skipped_records": counts.get("skipped_records", 0),
            "fingerprints": {
                "corpus": self.data_fingerprint(),
                "tokenizer": fingerprint(self.tokenizer.to_str()),
                "instances": self.shard_dir.name,
            },
        }

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """The held-out instances; then, when training masks otherwise, them at 15% masking."""
        loader = self._loader(self.val_set, self.eval_batch_size, shuffle=False)
        if self.val_set_at_15 is None:
            return loader
        return [loader, self._loader(self.val_set_at_15, self.eval_batch_size, shuffle=False)]

    def module_kwargs(self) -> dict:
        """Whether the model has an NSP head; whether 15% masking comes as a second val loader;
        whether the network trains with dropout (`task.dropout`, read by the module)."""
        return {
            "nsp": self.nsp,
            "dropout": self.dropout,
            "separate_mlm_at_15": self.masking_settings.at_bert_rate() != self.masking_settings,
        }

    def _loader(self, dataset: ShardedInstances, batch_size: int, shuffle: bool) -> DataLoader:
        lengths = dataset.lengths() if shuffle and self.group_by_length else None
        # Length groups are cut per optimizer step, so accumulated micro-batches together
        # hold the same items as one large batch would.
        accumulate = self.trainer.accumulate_grad_batches if self.trainer is not None else 1
        sampler = EpochSampler(
            len(dataset), shuffle, self.seed, lengths=lengths, step_items=batch_size * accumulate
        )
        workers = self.loader_workers()
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=PretrainingCollator(self.tokenizer.token_to_id("[PAD]")),
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self.pin_memory,
        )

    def loader_workers(self) -> int:
        """`num_workers`, or when null: none beside training on a CPU, whose threads already use
        every core (a worker process competing with them made the default job 20% slower on 2
        cores), one beside an accelerator, so reading overlaps its step."""
        if self.num_workers is not None:
            return self.num_workers
        trainer = self.trainer
        return 0 if trainer is None or isinstance(trainer.accelerator, CPUAccelerator) else 1

    def baseline_metrics(self) -> dict[str, float]:
        """Accuracy of always predicting the most frequent masked token / the more frequent NSP
        label.
        """
        token_counts: dict[int, int] = {}
        random_next = 0
        for i in range(len(self.val_set)):
            item = self.val_set[(0, i)]
            random_next += int(item["next_sentence_labels"])
            for label in item["masked_labels"].tolist():
                token_counts[label] = token_counts.get(label, 0) + 1
        metrics = {
            "val/mlm_majority_accuracy": max(token_counts.values()) / sum(token_counts.values())
        }
        if self.nsp:
            random_share = random_next / len(self.val_set)
            metrics["val/nsp_majority_accuracy"] = max(random_share, 1 - random_share)
        return metrics


def _preparation_progress() -> Progress:
    """Documents and MB done, MB/s and time left (a Hub stream's size is unknown: no bar)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[documents]:,} documents"),
        DownloadColumn(binary_units=False),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=True,
    )


class ShardedInstances(Dataset):
    """Memory-mapped shards; item `(epoch, index)` -> one masked BERT input.

    Static masking ignores the epoch (each instance always gets the same mask);
    dynamic masking draws a new mask per epoch. Either way the mask is a pure function
    of (seed, epoch, index), which makes runs reproducible and resumable.
    """

    def __init__(
        self,
        index_files: list[Path],
        special,
        masking: MaskingSettings,
        word_start: np.ndarray,
        replacement_ids: np.ndarray,
        seed: int,
        dynamic: bool,
        pairs: bool = True,
    ):
        """`pairs`: instances are [CLS] A [SEP] B [SEP]; else packed segments [CLS] A [SEP]."""
        self.special, self.masking, self.seed, self.dynamic = special, masking, seed, dynamic
        self.pairs = pairs
        self.word_start, self.replacement_ids = word_start, replacement_ids
        self.index_files = index_files
        self._shards: list[tuple[np.ndarray, np.ndarray]] | None = None
        sizes = [len(open_shard_array(p)) for p in index_files]
        self.starts = np.cumsum([0, *sizes]).tolist()

    def __len__(self) -> int:
        return self.starts[-1]

    def lengths(self) -> list[int]:
        """Sequence length of every instance (with [CLS] and [SEP]s), from the shard indexes."""
        rows = [open_shard_array(p)[:, [LENGTH_A, LENGTH_B]] for p in self.index_files]
        specials = 3 if self.pairs else 2
        return (np.concatenate(rows).sum(axis=1) + specials).tolist() if rows else []

    def _open(self) -> list[tuple[np.ndarray, np.ndarray]]:
        if self._shards is None:  # opened lazily, so each DataLoader worker maps its own
            # Plain ndarray views of the maps: indexing a np.memmap runs Python code
            # (__getitem__, __array_finalize__) on every slice, a fifth of an item's cost.
            self._shards = [
                (
                    np.asarray(open_shard_array(p)),
                    np.asarray(
                        open_shard_array(p.with_name(p.name.replace(".index.npy", ".tokens.npy")))
                    ),
                )
                for p in self.index_files
            ]
        return self._shards

    def __getitem__(self, item: tuple[int, int]) -> dict[str, np.ndarray]:
        epoch, index = item
        shard = bisect_right(self.starts, index) - 1
        index_rows, tokens = self._open()[shard]
        row = index_rows[index - self.starts[shard]].tolist()
        offset, length_a, length_b = row[OFFSET], row[LENGTH_A], row[LENGTH_B]
        pair = tokens[offset : offset + length_a + length_b]
        cls, sep = self.special.cls, self.special.sep
        # [CLS] A [SEP] B [SEP], or for a packed segment [CLS] A [SEP] (its inner [SEP]s
        # mark document boundaries), written into place rather than concatenated.
        input_ids = np.empty(len(pair) + 2 + self.pairs, dtype=np.int64)
        input_ids[0], input_ids[-1] = cls, sep
        token_type_ids = np.zeros(len(input_ids), dtype=np.int64)
        if self.pairs:
            input_ids[1 : length_a + 1] = pair[:length_a]
            input_ids[length_a + 1] = sep
            input_ids[length_a + 2 : -1] = pair[length_a:]
            token_type_ids[length_a + 2 :] = 1
        else:
            input_ids[1:-1] = pair
        candidate = (input_ids != cls) & (input_ids != sep)

        rng = np.random.default_rng([self.seed, epoch if self.dynamic else 0, index])
        masked, positions, labels = mask_tokens(
            input_ids,
            candidate,
            self.word_start[input_ids],
            self.masking,
            self.special.mask,
            self.replacement_ids,
            rng,
        )
        return {
            "input_ids": masked,
            "token_type_ids": token_type_ids,
            "masked_positions": positions,
            "masked_labels": labels,
            "next_sentence_labels": np.int64(row[IS_RANDOM_NEXT]),
        }


def open_shard_array(path: Path) -> np.ndarray:
    """Memory-map one shard array; a damaged file is named, with how to rebuild it."""
    try:
        return np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as error:
        raise DataError(
            path,
            f"damaged cache file ({error}); delete {path.parent} and it is rebuilt on the next run",
        ) from None


class PretrainingCollator:
    """Pads to the longest sequence of the batch; masked positions padded with -1."""

    def __init__(self, pad_id: int, pad_to_multiple_of: int = 8):
        self.pad_id, self.multiple = pad_id, pad_to_multiple_of

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(item["input_ids"]) for item in items)
        length = -(-length // self.multiple) * self.multiple
        predictions = max(len(item["masked_positions"]) for item in items)
        batch = {
            "input_ids": np.full((len(items), length), self.pad_id, dtype=np.int64),
            "token_type_ids": np.zeros((len(items), length), dtype=np.int64),
            "attention_mask": np.zeros((len(items), length), dtype=np.int64),
            "masked_positions": np.full((len(items), predictions), -1, dtype=np.int64),
            "masked_labels": np.full((len(items), predictions), -100, dtype=np.int64),
        }
        for row, item in enumerate(items):
            n, k = len(item["input_ids"]), len(item["masked_positions"])
            batch["input_ids"][row, :n] = item["input_ids"]
            batch["token_type_ids"][row, :n] = item["token_type_ids"]
            batch["attention_mask"][row, :n] = 1
            batch["masked_positions"][row, :k] = item["masked_positions"]
            batch["masked_labels"][row, :k] = item["masked_labels"]
        tensors = {name: torch.from_numpy(array) for name, array in batch.items()}
        tensors["next_sentence_labels"] = torch.tensor(
            [int(item["next_sentence_labels"]) for item in items]
        )
        return tensors
