"""The bad-data matrix: every reader of bertlab-train with valid data in its official layout,
and the ways the tests spoil one of its files.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from support.data import (
    write_corpus,
    write_custom,
    write_glue_task,
    write_imdb,
    write_snli,
    write_xnli,
)

ONE_MB = 1_000_000
BAD_BYTES = b"caf\xe9 au lait"  # Latin-1, not UTF-8
PARSER = OverridesParser.create()


# ---- the readers --------------------------------------------------------------------------


@dataclass(frozen=True)
class Reader:
    """One reader: its task config, how to write valid data, and the file the cases spoil."""

    name: str
    task: str
    kind: str  # tsv, csv, jsonl, text, imdb
    write: Callable[[Path], Path]  # writes a valid dataset under the directory; returns the file
    overrides: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()  # (label, *texts) of the spoiled file when not the task's


def label_column(reader: Reader, cfg: DictConfig):
    return reader.columns[0] if reader.columns else cfg.task.label_column


def text_columns(reader: Reader, cfg: DictConfig) -> list:
    return list(reader.columns[1:]) if reader.columns else list(cfg.task.text_columns)


def _made(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def custom_rows() -> list[tuple[str, str]]:
    return [
        (f"review number {i} was {'good' if i % 2 else 'bad'}", "pos" if i % 2 else "neg")
        for i in range(20)
    ]


def custom(file_format: str) -> Callable[[Path], Path]:
    def write(directory: Path) -> Path:
        write_custom(directory, file_format, f"dev.{file_format}", custom_rows())
        return write_custom(directory, file_format, f"train.{file_format}", custom_rows())

    return write


def glue(task: str) -> Callable[[Path], Path]:
    return lambda directory: write_glue_task(directory, task, train=12, dev=4, test=2) / "train.tsv"


def custom_overrides(file_format: str) -> tuple[str, ...]:
    return (
        f"task.train_file=train.{file_format}",
        f"task.val_files.val=dev.{file_format}",
        "task.text_columns=[review]",
        "task.label_column=stars",
        "task.labels=[neg,pos]",
    )


READERS = [
    Reader(
        "pretraining-text", "pretrain", "text", lambda d: write_corpus(_made(d) / "corpus.txt", 30)
    ),
    *[Reader(f"glue-{t}", f"glue/{t}", "tsv", glue(t)) for t in ("cola", "sst2", "mrpc", "stsb")],
    *[
        Reader(f"glue-{t}", f"glue/{t}", "tsv", glue(t))
        for t in ("qqp", "mnli", "qnli", "rte", "wnli")
    ],
    Reader(
        "snli",
        "snli",
        "jsonl",
        lambda d: write_snli(d, {"train": 30, "dev": 6}) / "snli_1.0_train.jsonl",
    ),
    Reader(
        "xnli",
        "xnli",
        "tsv",
        lambda d: write_xnli(d, "de", train=30) / "XNLI-MT-1.0/multinli/multinli.train.de.tsv",
        ("task.language=de",),
        ("label", "premise", "hypo"),  # the translated train file's own columns
    ),
    Reader("imdb", "imdb", "imdb", lambda d: write_imdb(d) / "train"),
    *[
        Reader(f"custom-{f}", "custom", f, custom(f), custom_overrides(f))
        for f in ("csv", "tsv", "jsonl")
    ],
]


BY_NAME = {reader.name: reader for reader in READERS}
# The reader of pretraining text (bertlab/data/corpus.py); the others read classification data.
PRETRAINING_TEXT = "pretraining-text"
CLASSIFICATION_READERS = [r.name for r in READERS if r.name != PRETRAINING_TEXT]


def config_for(composed, reader: Reader, data_dir: Path, data_file: Path) -> DictConfig:
    cfg = composed(reader.task)
    with open_dict(cfg):
        cfg.run_dir, cfg.cache_dir = str(data_dir / "run"), str(data_dir / "cache")
    updates = ["tokenizer.vocab_size=120", "tokenizer.min_frequency=1", *reader.overrides]
    updates.append(
        f"task.corpus={data_file}" if reader.kind == "text" else f"task.data_dir={data_dir}"
    )
    for override in PARSER.parse_overrides(updates):
        OmegaConf.update(cfg, override.key_or_group, override.value(), force_add=True)
    if reader.kind == "text":
        OmegaConf.update(cfg, "task.val_fraction", 0.2)
        OmegaConf.update(cfg, "task.max_seq_length", 64)
    return cfg


# ---- spoiling a file ------------------------------------------------------------------------


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def first_data_line(reader: Reader, cfg: DictConfig) -> int:
    """1-based line number of the first data row (after the header, if any)."""
    return 1 if reader.kind == "jsonl" or cfg.task.get("header") is False else 2


def label_position(path: Path, column) -> int:
    if isinstance(column, int):
        return column
    return [name.lstrip("\ufeff") for name in lines_of(path)[0].split("\t")].index(column)


def set_field(
    reader: Reader, cfg: DictConfig, path: Path, line: int, value: str, which: str
) -> None:
    """Set the label (`which="label"`) or the first text field of one row to `value`."""
    lines = lines_of(path)
    if reader.kind == "jsonl":
        record = json.loads(lines[line - 1])
        key = label_column(reader, cfg) if which == "label" else text_columns(reader, cfg)[0]
        record[key] = value
        lines[line - 1] = json.dumps(record)
    elif reader.kind == "csv":  # write_custom's CSV: id,"text, truly",label
        row_id, rest = lines[line - 1].split(",", 1)
        text, label = rest.rsplit(",", 1)
        lines[line - 1] = (
            f"{row_id},{text},{value}" if which == "label" else f'{row_id},"{value}",{label}'
        )
    else:
        fields = lines[line - 1].split("\t")
        if which == "label":
            fields[label_position(path, label_column(reader, cfg))] = value
        else:
            text_column = text_columns(reader, cfg)[0]
            header = [name.lstrip("\ufeff") for name in lines_of(path)[0].split("\t")]
            fields[text_column if isinstance(text_column, int) else header.index(text_column)] = (
                value
            )
        lines[line - 1] = "\t".join(fields)
    write_lines(path, lines)


# ---- the matrix -----------------------------------------------------------------------------


TABLES = [r.name for r in READERS if r.kind in ("tsv", "csv")]
JSON_LINES = [r.name for r in READERS if r.kind == "jsonl"]
LABELED = [r.name for r in READERS if r.kind in ("tsv", "csv", "jsonl") and r.task != "glue/stsb"]
FILES = [r.name for r in READERS if r.kind != "imdb"]


def _with_number(reader: Reader, line: str, number: int) -> str:
    if reader.kind == "jsonl":
        record = json.loads(line)
        record["stars"] = number % 5
        return json.dumps(record)
    return line.rsplit(",", 1)[0] + f",{number % 5}"


def as_regression(reader: Reader, cfg: DictConfig, path: Path) -> None:
    """Turn the custom task's data and config into a regression (numbers as targets)."""
    OmegaConf.update(cfg, "task.regression", True)
    OmegaConf.update(cfg, "task.labels", None)
    OmegaConf.update(cfg, "task.metrics", ["pearson"])
    lines = lines_of(path)
    first = first_data_line(reader, cfg) - 1
    numbered = [_with_number(reader, line, i) for i, line in enumerate(lines[first:])]
    write_lines(path, [*lines[:first], *numbered])
    write_lines(path.with_name(f"dev.{reader.kind}"), lines_of(path))


# ---- through the command line ---------------------------------------------------------------


def train_command(reader: Reader, data_dir: Path, data_file: Path, tmp_path: Path) -> list[str]:
    location = f"task.corpus={data_file}" if reader.kind == "text" else f"task.data_dir={data_dir}"
    return [
        sys.executable,
        "-m",
        "bertlab.cli.train",
        f"task={reader.task}",
        location,
        *reader.overrides,
        f"cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "tokenizer.vocab_size=120",
        "tokenizer.min_frequency=1",
    ]
