"""Readers for sentence and sentence-pair classification data, local or from the Hub.

Every reader returns `RawExample`s: the text(s), the label as it is written in the
source (a string, or None on unlabeled test sets) and where the row came from, so a
bad label found later still names its file and line. What differs between datasets
(delimiter, header or not, column names, label spellings, rows to drop) is a
`TableLayout` built from the task's YAML, never a per-dataset function.

Delimited files are split on tabs without quote handling (the GLUE files contain
unbalanced quotes and were written that way), so a TSV row is always one line. CSV goes
through the `csv` module because user CSVs do quote fields with commas. A quoted field may
also hold newlines, and that is where one unbalanced quote silently swallows the rows after
it; so a CSV record must fit on one line unless the layout says its fields span lines
(`multiline_fields`), and quotes are parsed strictly (a closing quote must end its field).

Nothing is absorbed silently: an empty label, a null field, a duplicated column or key and a
non-finite regression target are errors naming the file and line. What a read skips by
policy (QQP's malformed rows, SNLI's unlabelled pairs) is counted in `ReadCounts`, which the
data module stores with its cache entry and reports on every run.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from bertlab.errors import DataError

log = logging.getLogger(__name__)

FORMATS = ("tsv", "csv", "jsonl", "imdb")
SUFFIX_FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
Column = str | int
IMDB_LABEL_DIRS = ("neg", "pos")  # aclImdb/train/unsup/ holds unlabeled reviews: never read


@dataclass(frozen=True)
class RawExample:
    texts: tuple[str, ...]
    label: str | None
    index: str  # the row's id in the source (GLUE test `index`), or its position
    path: str
    line: int | None


@dataclass(frozen=True)
class TableLayout:
    """Where the fields of one file are and which rows to keep."""

    format: str | None = None  # None: from the file suffix
    header: bool = True
    num_columns: int | None = None  # headerless files: the expected field count
    text_columns: tuple[Column, ...] = ("text",)
    label_column: Column | None = "label"
    index_column: Column | None = None
    where: dict = field(default_factory=dict)  # keep only rows whose column equals the value
    label_map: dict = field(default_factory=dict)  # source spelling -> label name
    drop_labels: tuple[str, ...] = ()  # rows with these labels are dropped and counted
    skip_malformed: bool = False  # count rows with the wrong field count instead of failing
    multiline_fields: bool = False  # CSV: quoted fields may hold newlines
    text_replacements: dict = field(default_factory=dict)

    def with_overrides(self, overrides: dict) -> TableLayout:
        overrides = dict(overrides)
        for key in ("text_columns", "drop_labels"):
            if key in overrides and overrides[key] is not None:
                overrides[key] = tuple(overrides[key])
        return replace(self, **overrides)


@dataclass
class ReadCounts:
    """What a read kept, and what it left out by policy (never silently: see `report`)."""

    kept: int = 0
    dropped_labels: Counter = field(default_factory=Counter)
    malformed: int = 0

    def report(self, source: str) -> None:
        for label, count in sorted(self.dropped_labels.items()):
            log.info("%s: dropped %d rows labelled %r", source, count, label)
        if self.malformed:
            log.warning(
                "%s: skipped %d malformed rows (wrong number of fields)", source, self.malformed
            )

    def to_dict(self) -> dict:
        """JSON-ready, for a cache entry's info and results.json."""
        return {
            "examples": self.kept,
            "skipped_malformed_rows": self.malformed,
            "dropped_rows_by_label": dict(sorted(self.dropped_labels.items())),
        }

    @classmethod
    def from_dict(cls, facts: dict) -> ReadCounts:
        return cls(
            kept=facts["examples"],
            dropped_labels=Counter(facts["dropped_rows_by_label"]),
            malformed=facts["skipped_malformed_rows"],
        )


def read_examples(
    path: str | Path, layout: TableLayout, labeled: bool = True, counts: ReadCounts | None = None
) -> list[RawExample]:
    """Read one split from a local file (or, for IMDB, a split directory).

    What the read dropped or skipped is logged here, unless the caller passes `counts` to
    receive it (and reports it itself, as the data module does on every cached rerun).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "not found (task.data_dir must hold the dataset's official files)")
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(path, "empty file")
    # The index column only names test rows in a submission file; labeled splits may lack it.
    if labeled:
        layout = replace(layout, index_column=None)
    else:
        layout = replace(layout, label_column=None, drop_labels=())
    file_format = layout.format or SUFFIX_FORMATS.get(path.suffix.lower())
    if file_format not in FORMATS:
        raise DataError(
            path, f"cannot tell the format from the suffix; set task.format to one of {FORMATS}"
        )
    caller_reports = counts is not None
    counts = counts if caller_reports else ReadCounts()
    try:
        examples = list(_READERS[file_format](path, layout, counts))
    except UnicodeDecodeError as error:
        raise DataError(
            path, f"not valid UTF-8 ({error.reason})", _first_undecodable_line(path)
        ) from None
    if not caller_reports:
        counts.report(str(path))
    if not examples:
        raise DataError(path, "no examples" + (f" with {layout.where}" if layout.where else ""))
    return examples


def _read_tsv(path: Path, layout: TableLayout, counts: ReadCounts) -> Iterator[RawExample]:
    # newline="\n": a stray carriage return inside a GLUE sentence must not split its row.
    with open(path, encoding="utf-8-sig", newline="\n") as lines:
        rows = ((number, line.rstrip("\r\n").split("\t")) for number, line in enumerate(lines, 1))
        yield from _rows_to_examples(path, _nonblank(rows), layout, counts)


def _read_csv(path: Path, layout: TableLayout, counts: ReadCounts) -> Iterator[RawExample]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        rows = _numbered_csv_rows(path, csv.reader(handle, strict=True), layout.multiline_fields)
        yield from _rows_to_examples(path, _nonblank(rows), layout, counts)


def _numbered_csv_rows(
    path: Path, reader, multiline_fields: bool
) -> Iterator[tuple[int, list[str]]]:
    """Records with the line each starts on: where a quote opened, when one goes wrong."""
    first_line = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:  # a quote closing mid-field, or still open at the end
            raise DataError(
                path,
                f"{error} (a quoted field starting on this line; an unbalanced quote?)",
                first_line,
            ) from None
        if reader.line_num > first_line and not multiline_fields:
            raise DataError(
                path,
                f"a quoted field opened on this line runs on to line {reader.line_num} "
                "(an unbalanced quote?); if this file's fields do span lines, set "
                "task.multiline_fields=true",
                first_line,
            )
        yield first_line, row
        first_line = reader.line_num + 1


def _nonblank(rows: Iterator[tuple[int, list[str]]]) -> Iterator[tuple[int, list[str]]]:
    return ((number, row) for number, row in rows if row and row != [""])


def _rows_to_examples(
    path: Path, rows: Iterator[tuple[int, list[str]]], layout: TableLayout, counts: ReadCounts
) -> Iterator[RawExample]:
    if layout.header:
        header = next(rows, (None, None))[1]
        width = len(header) if header else None
        if header:
            _check_unique_columns(path, layout, header)
    else:
        header, width = None, layout.num_columns
    positions = None
    for number, fields in rows:
        if width is None:
            width = len(fields)  # headerless without num_columns: the first row sets the width
        if len(fields) != width:
            if layout.skip_malformed:
                counts.malformed += 1
                continue
            raise DataError(
                path, f"expected {width} tab/comma-separated fields, found {len(fields)}", number
            )
        if positions is None:
            positions = _column_positions(path, layout, header, width)
        record = {column: fields[position] for column, position in positions.items()}
        example = _make_example(path, number, layout, counts, record.__getitem__)
        if example is not None:
            yield example


def _column_positions(
    path: Path, layout: TableLayout, header: list[str] | None, width: int
) -> dict:
    positions = {}
    for column in _used_columns(layout):
        if isinstance(column, int) and not 0 <= column < width:
            raise DataError(path, f"column {column} named, but rows have {width} fields")
        if isinstance(column, int):
            positions[column] = column
        elif header is None:
            raise DataError(path, f"column {column!r} named, but this layout has no header row")
        elif column not in header:
            raise DataError(path, f"no column {column!r} in the header {header}", 1)
        else:
            positions[column] = header.index(column)
    return positions


def _check_unique_columns(path: Path, layout: TableLayout, header: list[str]) -> None:
    # A repeated name would silently mean its first column; which one was meant is unknowable.
    for column in _used_columns(layout):
        if header.count(column) > 1:
            raise DataError(
                path, f"column {column!r} appears {header.count(column)} times in the header", 1
            )


def _used_columns(layout: TableLayout) -> list[Column]:
    columns = [*layout.text_columns, *layout.where]
    columns += [c for c in (layout.label_column, layout.index_column) if c is not None]
    return columns


def _make_example(path, line, layout: TableLayout, counts: ReadCounts, get) -> RawExample | None:
    """One example from a row, or None when the row is filtered or dropped."""
    if any(str(get(column)) != str(value) for column, value in layout.where.items()):
        return None
    label = None
    if layout.label_column is not None:
        label = _label_string(_present(path, line, layout.label_column, get))
        label = layout.label_map.get(label, label)
        if label in layout.drop_labels:
            counts.dropped_labels[label] += 1
            return None
    texts = tuple(
        _clean_text(_present(path, line, column, get), layout) for column in layout.text_columns
    )
    index = str(get(layout.index_column)) if layout.index_column is not None else str(counts.kept)
    counts.kept += 1
    return RawExample(texts, label, index, str(path), line)


def _present(path, line, column: Column, get):
    """The field's value; JSON's null is an error rather than the text "" or the label "None"."""
    value = get(column)
    if value is None:
        raise DataError(path, f"field {column!r} is null", line)
    if isinstance(value, (dict, list)):
        raise DataError(path, f"field {column!r} is a JSON {type(value).__name__}", line)
    return value


def _label_string(value) -> str:
    # JSON labels may be numbers; 1 and "1" name the same class.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _clean_text(text, layout: TableLayout) -> str:
    text = str(text)
    for old, new in layout.text_replacements.items():
        text = text.replace(old, new)
    return text


def _read_jsonl(path: Path, layout: TableLayout, counts: ReadCounts) -> Iterator[RawExample]:
    columns = _used_columns(layout)
    with open(path, encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            record = _parse_json_object(path, number, line)
            missing = [c for c in columns if c not in record]
            if missing:
                if layout.skip_malformed:
                    counts.malformed += 1
                    continue
                raise DataError(path, f"missing field(s) {missing}", number)
            example = _make_example(path, number, layout, counts, record.__getitem__)
            if example is not None:
                yield example


def _parse_json_object(path: Path, number: int, line: str) -> dict:
    try:
        record = json.loads(line, object_pairs_hook=_object_without_repeated_keys)
    except json.JSONDecodeError as error:
        raise DataError(path, f"not valid JSON ({error.msg})", number) from None
    except _RepeatedKey as repeated:
        raise DataError(path, f"key {repeated.key!r} appears twice in one object", number) from None
    if not isinstance(record, dict):
        raise DataError(path, f"expected a JSON object, found {type(record).__name__}", number)
    return record


class _RepeatedKey(Exception):
    def __init__(self, key: str):
        self.key = key


def _object_without_repeated_keys(pairs: list[tuple[str, object]]) -> dict:
    # json.loads keeps the last of repeated keys; which one the writer meant is unknowable.
    record = dict(pairs)
    if len(record) < len(pairs):
        key_counts = Counter(key for key, _ in pairs)
        raise _RepeatedKey(next(key for key, count in key_counts.items() if count > 1))
    return record


def _read_imdb(split_dir: Path, layout: TableLayout, counts: ReadCounts) -> Iterator[RawExample]:
    """`aclImdb/<split>/{neg,pos}/<id>_<rating>.txt`: the directory name is the label."""
    label_dirs = [split_dir / name for name in IMDB_LABEL_DIRS if (split_dir / name).is_dir()]
    if not label_dirs:
        raise DataError(split_dir, "no neg/ or pos/ directory (expected the aclImdb layout)")
    for label_dir in label_dirs:
        for review in sorted(label_dir.glob("*.txt")):
            try:
                text = _clean_text(review.read_text(encoding="utf-8"), layout)
            except UnicodeDecodeError as error:
                raise DataError(review, f"not valid UTF-8 ({error.reason})") from None
            label = label_dir.name if layout.label_column is not None else None
            counts.kept += 1
            yield RawExample((text,), label, f"{label_dir.name}/{review.stem}", str(review), None)


def _first_undecodable_line(path: Path) -> int | None:
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


_READERS = {"tsv": _read_tsv, "csv": _read_csv, "jsonl": _read_jsonl, "imdb": _read_imdb}


# ---- labels -----------------------------------------------------------------------------


def infer_label_names(examples: Sequence[RawExample]) -> list[str]:
    """The sorted set of labels; numerically sorted when every label is an integer.

    An empty label is refused rather than made a class: it is almost always a missing
    value. Where "" is a class, task.labels lists it (and label_ids accepts it).
    """
    names = {example.label for example in examples if example.label is not None}
    if "" in names:
        first = next(example for example in examples if example.label == "")
        raise DataError(first.path, _EMPTY_LABEL, first.line)
    if all(_is_int(name) for name in names):
        return sorted(names, key=int)
    return sorted(names)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


_EMPTY_LABEL = "empty label (drop such rows, or list '' in task.labels if it is a class)"


def label_ids(examples: Sequence[RawExample], label_names: Sequence[str]) -> list[int]:
    ids = {name: i for i, name in enumerate(label_names)}
    result = []
    for example in examples:
        if example.label == "" and "" not in ids:
            raise DataError(example.path, _EMPTY_LABEL, example.line)
        if example.label not in ids:
            raise DataError(
                example.path,
                f"label {example.label!r} is not one of {list(label_names)}",
                example.line,
            )
        result.append(ids[example.label])
    return result


def regression_targets(examples: Sequence[RawExample]) -> list[float]:
    """Float targets; NaN or infinity is refused (it would poison the loss or the metrics)."""
    targets = []
    for example in examples:
        try:
            target = float(example.label)
        except (TypeError, ValueError):
            raise DataError(
                example.path, f"regression target {example.label!r} is not a number", example.line
            ) from None
        if not math.isfinite(target):
            raise DataError(
                example.path, f"regression target {example.label!r} is not finite", example.line
            )
        targets.append(target)
    return targets


# ---- the Hugging Face Hub ---------------------------------------------------------------


@dataclass(frozen=True)
class HubSplit:
    path: str  # e.g. nyu-mll/glue
    name: str | None  # the dataset's configuration, e.g. mrpc
    split: str  # e.g. validation_matched
    text_columns: tuple[str, ...]
    label_column: str | None
    labels: tuple[str, ...] | None  # our label name for each class id the Hub uses

    @property
    def source(self) -> str:
        return (
            f"{self.path}[{self.name}]/{self.split}" if self.name else f"{self.path}/{self.split}"
        )


def read_hub(
    spec: HubSplit, labeled: bool = True, counts: ReadCounts | None = None
) -> list[RawExample]:
    """Load one split through `datasets`; rows without a gold label (id -1) are dropped.

    `counts`, as for `read_examples`: given, the caller reports what was dropped.
    """
    rows = _load_hub_split(spec)
    caller_reports = counts is not None
    counts, examples = counts if caller_reports else ReadCounts(), []
    for position, row in enumerate(rows):
        label = _hub_label(row[spec.label_column], spec) if labeled and spec.label_column else None
        if labeled and label is None:
            counts.dropped_labels["-1"] += 1
            continue
        texts = tuple(str(row[column]) for column in spec.text_columns)
        index = str(row.get("idx", position))
        examples.append(RawExample(texts, label, index, spec.source, position + 1))
        counts.kept += 1
    if not caller_reports:
        counts.report(spec.source)
    return examples


def _hub_label(value, spec: HubSplit) -> str | None:
    if isinstance(value, float) and not value.is_integer():
        return str(value)  # a regression score (STS-B)
    if int(value) < 0:
        return None  # the Hub's "no gold label" / hidden test label
    if spec.labels is None or isinstance(value, float):
        return _label_string(value)
    return spec.labels[int(value)]


def _load_hub_split(spec: HubSplit):
    hint = "set task.data_dir to a directory with the dataset's official files"
    try:
        import datasets
    except ImportError:
        raise DataError(spec.source, f"the `datasets` package is not installed; {hint}") from None
    try:
        return datasets.load_dataset(spec.path, spec.name, split=spec.split)
    except Exception as error:  # offline, unknown split, ...: all end in the same advice
        raise DataError(
            spec.source, f"cannot load from the Hub ({type(error).__name__}: {error}); {hint}"
        ) from None
