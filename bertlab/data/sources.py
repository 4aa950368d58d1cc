"""Where pretraining documents come from: `task.corpus` read as a stream of documents.

A source yields documents one at a time, so no corpus is ever held whole:

- text files (BERT's format: one sentence per line, a blank line between documents) yield
  lists of sentences, as they always did;
- JSON Lines, CSV and Parquet files, a `datasets` dataset saved with `save_to_disk`, and
  `hf:NAME` (streamed from the Hugging Face Hub) yield records: one record is one document,
  its text a string in `task.text_column`, split into sentences later (bertlab.data.sentences).

Each source says what identifies it for the cache (`identity`), how many bytes it holds
when that is known (`total_bytes`) and how far reading has got (`bytes_read`), for the
progress bar. Records without the column, or whose value is not a string, are skipped,
counted and reported with their file and record number (`SkippedRecords`).
"""

from __future__ import annotations

import csv
import gzip
import importlib
import io
import json
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bertlab.data.cache import file_digest
from bertlab.data.corpus import corpus_files, read_corpus_files, read_documents
from bertlab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# A document: a text file's list of sentences, or a record's whole text.
Document = list[str] | str

HUB_PREFIX = "hf:"
RECORD_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}
RECORD_FORMATS[".parquet"] = "parquet"
COMPRESSIONS = (".gz", ".zst")
EXAMPLES_REPORTED = 5


class SkippedRecords:
    """Records that are no document: counted by reason, the first few located."""

    def __init__(self, column: str):
        self.column = column
        self.reasons: Counter = Counter()
        self.examples: list[str] = []

    def add(self, where: str, number: int, reason: str) -> None:
        self.reasons[reason] += 1
        if len(self.examples) < EXAMPLES_REPORTED:
            self.examples.append(f"{where} record {number} ({reason})")

    @property
    def count(self) -> int:
        return sum(self.reasons.values())

    def report(self, source: str) -> None:
        if self.count:
            reasons = ", ".join(f"{n} {reason}" for reason, n in self.reasons.most_common())
            log.warning(
                "%s: skipped %d records without a string %r (%s), e.g. %s",
                source,
                self.count,
                self.column,
                reasons,
                "; ".join(self.examples),
            )


class CorpusSource:
    """Documents from somewhere; see the module docstring."""

    description: str  # for messages: what task.corpus names
    splits_sentences = False  # True: documents are whole texts to split into sentences

    def __init__(self, column: str = "text"):
        self.column = column
        self.bytes_read = 0
        self.skipped = SkippedRecords(column)

    def identity(self) -> object:
        """JSON-serialisable: what determines the documents, for cache keys."""
        raise NotImplementedError

    def total_bytes(self) -> int | None:
        return None

    def documents(self) -> Iterator[Document]:
        """Each document once, in a fixed order; skipped records are reported at the end."""
        self.bytes_read, self.skipped = 0, SkippedRecords(self.column)
        count = 0
        for document in self._read():
            count += 1
            yield document
        self.skipped.report(self.description)
        if not count and self.skipped.count:
            raise DataError(
                self.description,
                f"no record has a string {self.column!r} (task.text_column); "
                f"e.g. {'; '.join(self.skipped.examples)}",
            )

    def texts(self, sample_bytes: int | None = None) -> Iterator[str]:
        """The text of the documents (sentences of text files), for training a vocabulary.

        `sample_bytes`: a source larger than that gives every k-th document, k = its size /
        sample_bytes (a sample spread over the whole corpus); one of unknown size (a Hub
        stream) gives its first documents up to that many characters.
        """
        total = self.total_bytes()
        every = 1 if sample_bytes is None or not total else -(-total // sample_bytes)
        budget = sample_bytes if sample_bytes is not None and not total else None
        for number, document in enumerate(self.documents()):
            if number % every:
                continue
            texts = [document] if isinstance(document, str) else document
            yield from texts
            if budget is not None:
                budget -= sum(len(text) for text in texts)
                if budget <= 0:
                    return

    def _read(self) -> Iterator[Document]:
        raise NotImplementedError

    def _text_of(self, record: object, where: str, number: int) -> str | None:
        """The record's text, or None after counting why it has none."""
        if not isinstance(record, dict):
            self.skipped.add(where, number, f"a JSON {type(record).__name__}, not an object")
            return None
        if self.column not in record:
            self.skipped.add(where, number, "missing")
            return None
        value = record[self.column]
        if not isinstance(value, str):
            self.skipped.add(where, number, type(value).__name__)
            return None
        return value


def open_source(
    corpus: str | list[str],
    text_column: str = "text",
    corpus_config: str | None = None,
    corpus_split: str | None = None,
) -> CorpusSource:
    """`task.corpus` -> its source: `hf:NAME`, a save_to_disk directory, or file globs."""
    if isinstance(corpus, str) and corpus.startswith(HUB_PREFIX):
        return HubDataset(corpus[len(HUB_PREFIX) :], corpus_config, corpus_split, text_column)
    if isinstance(corpus, str) and is_saved_dataset(Path(corpus).expanduser()):
        return SavedDataset(Path(corpus).expanduser(), corpus_split, text_column)
    files = corpus_files(corpus)
    formats = {record_format(path) for path in files}
    if formats == {None}:
        return TextFiles(files)
    if None in formats:
        text = next(path for path in files if record_format(path) is None)
        raise DataError(
            text,
            "task.corpus mixes text files with record files (.jsonl, .csv, .parquet); "
            "use one kind per corpus",
        )
    return RecordFiles(files, text_column)


def record_format(path: Path) -> str | None:
    """jsonl, csv or parquet from the suffix (compression suffix aside); None: a text file."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes.pop()
    return RECORD_FORMATS.get(suffixes[-1]) if suffixes else None


def is_saved_dataset(path: Path) -> bool:
    """A directory written by `datasets`' save_to_disk (a Dataset or a DatasetDict)."""
    return path.is_dir() and (
        (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()
    )


# ---- files -------------------------------------------------------------------------------


def file_identity(path: Path) -> list:
    """Path, size and modification time: cheap to take for gigabytes, unlike a digest."""
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


class TextFiles(CorpusSource):
    """BERT's format; identified by content digests, as before (the same cache keys)."""

    def __init__(self, files: list[Path]):
        super().__init__()
        self.files = files
        self.description = ", ".join(str(p) for p in files[:3]) + (" ..." if len(files) > 3 else "")

    def identity(self) -> object:
        return [file_digest(p) for p in self.files]

    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files)

    def _read(self) -> Iterator[Document]:
        done = 0
        for path in self.files:
            if path.suffix.lower() in COMPRESSIONS:
                with open_compressed(path) as (text, raw):
                    for document in read_documents(text, source=str(path)):
                        self.bytes_read = done + raw.tell()
                        yield document
            else:
                position = done
                for document in read_corpus_files([path]):
                    position += sum(len(s) + 1 for s in document) + 1  # about a byte a character
                    self.bytes_read = position
                    yield document
            done += path.stat().st_size
            self.bytes_read = done


class RecordFiles(CorpusSource):
    """JSON Lines, CSV and Parquet files of records; one record, one document."""

    splits_sentences = True

    def __init__(self, files: list[Path], column: str):
        super().__init__(column)
        self.files = files
        self.description = ", ".join(str(p) for p in files[:3]) + (" ..." if len(files) > 3 else "")

    def identity(self) -> object:
        return {"files": [file_identity(p) for p in self.files], "column": self.column}

    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files)

    def _read(self) -> Iterator[Document]:
        done = 0
        for path in self.files:
            size = path.stat().st_size
            if record_format(path) == "parquet":
                for text, fraction in self._parquet(path):
                    self.bytes_read = done + int(fraction * size)
                    yield text
            else:
                read = self._jsonl if record_format(path) == "jsonl" else self._csv
                with open_compressed(path) as (handle, raw):
                    try:
                        for text in read(path, handle):
                            self.bytes_read = done + raw.tell()
                            yield text
                    except UnicodeDecodeError as error:
                        raise DataError(path, f"not UTF-8 text ({error.reason})") from None
            done += size
            self.bytes_read = done

    def _jsonl(self, path: Path, lines: io.TextIOBase) -> Iterator[str]:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                self.skipped.add(str(path), number, "not JSON")
                continue
            text = self._text_of(record, str(path), number)
            if text is not None:
                yield text

    def _csv(self, path: Path, handle: io.TextIOBase) -> Iterator[str]:
        # Documents outgrow csv's 128 KB field limit, a process-wide setting: raised while
        # this file is read, then put back for the other readers.
        previous = csv.field_size_limit(2**31 - 1)
        try:
            reader = csv.DictReader(handle)
            if reader.fieldnames is not None and self.column not in reader.fieldnames:
                raise DataError(
                    path,
                    f"no column {self.column!r} (task.text_column); the header has "
                    f"{', '.join(reader.fieldnames)}",
                    1,
                )
            for number, row in enumerate(reader, 1):
                text = self._text_of(row, str(path), number)
                if text is not None:
                    yield text
        finally:
            csv.field_size_limit(previous)

    def _parquet(self, path: Path) -> Iterator[tuple[str, float]]:
        """(text, fraction of the file's rows read so far), a batch of rows at a time."""
        parquet = _import("pyarrow.parquet", "corpora", path)
        table = parquet.ParquetFile(path)
        names = table.schema_arrow.names
        if self.column not in names:
            raise DataError(
                path, f"no column {self.column!r} (task.text_column); it has {', '.join(names)}"
            )
        rows, number = max(1, table.metadata.num_rows), 0
        for batch in table.iter_batches(batch_size=1024, columns=[self.column]):
            for value in batch.column(0).to_pylist():
                number += 1
                text = self._text_of({self.column: value}, str(path), number)
                if text is not None:
                    yield text, number / rows


@contextmanager
def open_compressed(path: Path) -> Iterator[tuple[io.TextIOBase, io.BufferedReader]]:
    """Open a text file that may be .gz or .zst; yields (text handle, raw binary handle).

    The raw handle's position is how far into the file (compressed bytes) reading is.
    """
    with open(path, "rb") as raw:
        suffix = path.suffix.lower()
        if suffix == ".gz":
            stream = gzip.GzipFile(fileobj=raw)
        elif suffix == ".zst":
            zstandard = _import("zstandard", "corpora", path)
            stream = zstandard.ZstdDecompressor().stream_reader(raw)
        else:
            stream = raw
        # newline="": CSV quotes may hold newlines; JSON Lines and text split on "\n" anyway.
        with io.TextIOWrapper(stream, encoding="utf-8", newline="") as text:
            yield text, raw


def _import(module: str, extra: str, needed_for: object):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataError(
            needed_for,
            f"reading it needs the Python package {module.split('.')[0]}: "
            f"pip install 'bertlab[{extra}]'",
        ) from None


# ---- datasets ----------------------------------------------------------------------------


class SavedDataset(CorpusSource):
    """A `datasets` dataset saved with save_to_disk: memory-mapped Arrow files, read in batches."""

    splits_sentences = True

    def __init__(self, path: Path, split: str | None, column: str):
        super().__init__(column)
        datasets = _import("datasets", "hub", path)
        dataset = datasets.load_from_disk(str(path))
        if isinstance(dataset, datasets.DatasetDict):
            split = split or "train"
            if split not in dataset:
                raise ConfigError(
                    f"task.corpus_split={split}: {path} holds the splits {', '.join(dataset)}"
                )
            dataset = dataset[split]
        if column not in dataset.column_names:
            raise DataError(
                path,
                f"no column {column!r} (task.text_column); it has "
                f"{', '.join(dataset.column_names)}",
            )
        self.dataset = dataset.select_columns([column])
        self.description = str(path) + (f" ({split})" if split else "")
        self.fingerprint = dataset._fingerprint  # datasets' own hash of the content

    def identity(self) -> object:
        return {"dataset": self.fingerprint, "column": self.column}

    def total_bytes(self) -> int:
        return sum(Path(f["filename"]).stat().st_size for f in self.dataset.cache_files)

    def _read(self) -> Iterator[Document]:
        total, rows, number = self.total_bytes(), max(1, len(self.dataset)), 0
        for batch in self.dataset.iter(batch_size=1024):
            for value in batch[self.column]:
                number += 1
                text = self._text_of({self.column: value}, self.description, number)
                if text is not None:
                    yield text
            self.bytes_read = total * number // rows


class HubDataset(CorpusSource):
    """`hf:NAME` streamed from the Hugging Face Hub at a fixed revision (extra `hub`)."""

    splits_sentences = True

    def __init__(self, name: str, config: str | None, split: str | None, column: str):
        super().__init__(column)
        self.name, self.config, self.split = name, config, split or "train"
        self.description = f"task.corpus=hf:{name}"
        self.revision = self._resolve_revision()  # once: the data read is the data keyed

    def _resolve_revision(self) -> str:
        _import("datasets", "hub", self.description)
        from huggingface_hub import HfApi, constants

        if constants.HF_HUB_OFFLINE:
            raise ConfigError(
                f"{self.description}: the Hugging Face Hub is offline here (HF_HUB_OFFLINE); "
                "stream it once online, or set task.corpus to a save_to_disk directory or to files"
            )
        try:
            return HfApi().dataset_info(self.name).sha
        except Exception as error:  # offline, HTTP, unknown repo: each one the user's to fix
            raise ConfigError(
                f"{self.description}: cannot reach the dataset on the Hugging Face Hub "
                f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
            ) from None

    def identity(self) -> object:
        return {
            "hub": self.name,
            "config": self.config,
            "split": self.split,
            "revision": self.revision,
            "column": self.column,
        }

    def _read(self) -> Iterator[Document]:
        import datasets

        stream = datasets.load_dataset(
            self.name, self.config, split=self.split, streaming=True, revision=self.revision
        )
        for number, record in enumerate(stream, 1):
            text = self._text_of(record, self.description, number)
            if text is not None:
                self.bytes_read += len(text)  # characters: the stream's size is not known
                yield text
