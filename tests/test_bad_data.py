"""Bad data, for every reader (issue 8): a one-line error naming the file and line or record.

Each case writes a small valid dataset in the reader's official layout (the writers of
test_readers.py), spoils one thing, and runs the data steps of
`bertlab-train` in-process: data module, tokenizer, `prepare_data()`. The error must be
one the command line turns into `error: <message>` and exit 2 (checked through the real
command line for a few cases). Where the documented policy is to skip and report (QQP's
malformed rows, SNLI's pairs without a gold label), the count must be reported.
A 1 MB line is an error in pretraining text (one sentence per line); in the other formats
it is one long text, truncated to `task.max_seq_length` like any other. SQuAD's cases are
in tests/qa/test_bad_data.py.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CONF_MODULE, write_corpus
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict
from test_readers import write_custom, write_glue_task, write_imdb, write_snli, write_xnli

from bertlab import pipeline
from bertlab.cli.errors import USER_ERRORS

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


# ---- composing and running the data steps ---------------------------------------------------


@pytest.fixture(scope="module")
def composed(tmp_path_factory):
    """Each task's composed config, composed once (Hydra's compose() is the slow part)."""
    configs: dict[str, DictConfig] = {}
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONF_MODULE, version_base="1.3"):

        def compose_task(task: str) -> DictConfig:
            if task not in configs:
                configs[task] = compose("train", overrides=[f"task={task}"])
            return configs[task].copy()

        yield compose_task
    GlobalHydra.instance().clear()


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


def run_data_steps(cfg: DictConfig) -> None:
    """What bertlab-train does before building the model, in the same order."""
    datamodule = pipeline.build_datamodule(cfg)
    tokenizer = pipeline.resolve_tokenizer(cfg, datamodule, init=None)
    datamodule.set_tokenizer(tokenizer)
    datamodule.prepare_data()
    datamodule.module_kwargs()


def user_error(cfg: DictConfig) -> str:
    with pytest.raises(USER_ERRORS) as error:
        run_data_steps(cfg)
    message = str(error.value)
    assert "\n" not in message, message
    return message


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


@pytest.fixture
def prepared(composed, tmp_path):
    """(reader name) -> (reader, cfg, the file to spoil), with valid data written."""

    def prepare(name: str):
        reader = BY_NAME[name]
        data_dir = tmp_path / "data"
        data_file = reader.write(data_dir)
        return reader, config_for(composed, reader, data_dir, data_file), data_file

    return prepare


@pytest.mark.parametrize("name", [r.name for r in READERS])
def test_valid_data_passes(prepared, name):
    _, cfg, _ = prepared(name)
    run_data_steps(cfg)


@pytest.mark.parametrize("name", TABLES)
def test_wrong_column_count(prepared, name, caplog):
    reader, cfg, path = prepared(name)
    line = first_data_line(reader, cfg) + 1
    lines = lines_of(path)
    lines[line - 1] = "just one field"
    write_lines(path, lines)
    if cfg.task.get("skip_malformed"):  # QQP's documented policy: skip, count, report
        with caplog.at_level(logging.WARNING):
            run_data_steps(cfg)
        assert f"{path}: skipped 1 malformed rows (wrong number of fields)" in caplog.text
        return
    assert re.match(rf"{re.escape(str(path))}:{line}: expected \d+ .*found 1", user_error(cfg))


@pytest.mark.parametrize("name", JSON_LINES)
def test_jsonl_record_that_is_not_json(prepared, name):
    reader, cfg, path = prepared(name)
    lines = lines_of(path)
    lines[2] = lines[2][:-5]
    write_lines(path, lines)
    assert user_error(cfg).startswith(f"{path}:3: not valid JSON")


@pytest.mark.parametrize(
    "name", [*JSON_LINES, *[n for n in TABLES if BY_NAME[n].task != "glue/cola"]]
)
def test_missing_field(prepared, name):
    reader, cfg, path = prepared(name)
    lines = lines_of(path)
    column = text_columns(reader, cfg)[-1]
    if reader.kind == "jsonl":  # one record lacks the field
        record = json.loads(lines[3])
        del record[column]
        lines[3] = json.dumps(record)
        expected = f"{path}:4: missing field(s) ['{column}']"
    else:  # the header lacks the column
        separator = "," if reader.kind == "csv" else "\t"
        lines[0] = lines[0].replace(column, "renamed")
        expected = f"{path}:1: no column '{column}' in the header"
    write_lines(path, lines)
    assert user_error(cfg).startswith(expected), separator if reader.kind != "jsonl" else ""


@pytest.mark.parametrize("name", LABELED)
def test_label_outside_the_label_set(prepared, name):
    reader, cfg, path = prepared(name)
    line = first_data_line(reader, cfg) + 2
    set_field(reader, cfg, path, line, "maybe", "label")
    assert re.match(
        rf"{re.escape(str(path))}:{line}: label 'maybe' is not one of \[", user_error(cfg)
    )


@pytest.mark.parametrize("name", ["glue-stsb", "custom-csv", "custom-jsonl"])
def test_non_numeric_regression_target(prepared, name):
    reader, cfg, path = prepared(name)
    if reader.task == "custom":
        _as_regression(reader, cfg, path)  # numbers as targets, then one that is not
    line = first_data_line(reader, cfg) + 1
    set_field(reader, cfg, path, line, "high", "label")
    assert user_error(cfg).startswith(f"{path}:{line}: regression target 'high' is not a number")


def _with_number(reader: Reader, line: str, number: int) -> str:
    if reader.kind == "jsonl":
        record = json.loads(line)
        record["stars"] = number % 5
        return json.dumps(record)
    return line.rsplit(",", 1)[0] + f",{number % 5}"


@pytest.mark.parametrize("name", FILES)
def test_empty_file(prepared, name):
    reader, cfg, path = prepared(name)
    path.write_bytes(b"")
    message = user_error(cfg)
    assert message.startswith(str(path)) or str(path) in message, message
    assert re.search(r"empty|no examples|not valid JSON|needs more documents|no text", message)


@pytest.mark.parametrize("name", [r.name for r in READERS])
def test_file_not_found(prepared, name):
    reader, cfg, path = prepared(name)
    if path.is_dir():
        for review in path.rglob("*"):
            if review.is_file():
                review.unlink()
        for folder in sorted(path.rglob("*"), reverse=True):
            folder.rmdir()
        path.rmdir()
    else:
        path.unlink()
    message = user_error(cfg)
    assert path.name in message and re.search(r"not found|matches no file|no .* there", message)


@pytest.mark.parametrize("name", FILES)
def test_bytes_that_are_not_utf8(prepared, name):
    reader, cfg, path = prepared(name)
    content = path.read_bytes()
    lines = content.split(b"\n")
    line = first_data_line(reader, cfg) + 1
    lines[line - 1] = lines[line - 1].replace(b" ", b" " + BAD_BYTES + b" ", 1)
    spoiled = b"\n".join(lines)
    path.write_bytes(spoiled)
    message = user_error(cfg)
    assert message.startswith(f"{path}:{line}: not") and "UTF-8" in message, message


def test_imdb_review_that_is_not_utf8(prepared):
    _, cfg, split_dir = prepared("imdb")
    review = sorted((split_dir / "pos").glob("*.txt"))[0]
    review.write_bytes(BAD_BYTES)
    assert user_error(cfg).startswith(f"{review}: not valid UTF-8")


def test_a_megabyte_line_of_pretraining_text_is_an_error(prepared):
    _, cfg, path = prepared("pretraining-text")
    lines = lines_of(path)
    lines[1] = "word " * (ONE_MB // 5)
    write_lines(path, lines)
    assert re.match(rf"{re.escape(str(path))}:2: line of 1,000,000 characters", user_error(cfg))


@pytest.mark.parametrize("name", [n for n in FILES if BY_NAME[n].kind not in ("text", "csv")])
def test_a_megabyte_text_is_read_and_truncated(prepared, name):
    reader, cfg, path = prepared(name)
    long_text = "lengthy " * (ONE_MB // 8)
    set_field(reader, cfg, path, first_data_line(reader, cfg) + 1, long_text.strip(), "text")
    run_data_steps(cfg)


def test_a_megabyte_csv_field_is_an_error_naming_file_and_line(prepared):
    """Python's csv module caps a field at 131,072 characters; past it, the row is named."""
    reader, cfg, path = prepared("custom-csv")
    line = first_data_line(reader, cfg) + 1
    set_field(reader, cfg, path, line, "lengthy " * (ONE_MB // 8), "text")
    assert re.match(rf"{re.escape(str(path))}:{line}: field larger than", user_error(cfg))


def test_snli_pairs_without_gold_label_are_counted(prepared, caplog):
    _, cfg, path = prepared("snli")
    with caplog.at_level(logging.INFO):
        run_data_steps(cfg)
    assert re.search(rf"{re.escape(str(path))}: dropped \d+ rows labelled '-'", caplog.text)


# ---- nothing absorbed silently (issue 15) ----------------------------------------------------


def test_an_unbalanced_csv_quote_is_an_error_at_the_line_it_opened(prepared):
    reader, cfg, path = prepared("custom-csv")  # rows: id,"text, truly",label
    line = first_data_line(reader, cfg) + 4
    lines = lines_of(path)
    lines[line - 1] = lines[line - 1].replace('",', ",", 1)  # the text's closing quote lost
    write_lines(path, lines)
    assert re.match(rf"{re.escape(str(path))}:{line}: .*unbalanced quote", user_error(cfg))


@pytest.mark.parametrize("name", LABELED)
def test_an_empty_label_is_an_error(prepared, name):
    reader, cfg, path = prepared(name)
    line = first_data_line(reader, cfg) + 2
    set_field(reader, cfg, path, line, "", "label")
    assert user_error(cfg).startswith(f"{path}:{line}: empty label")


@pytest.mark.parametrize("name", ["custom-csv", "custom-jsonl"])
def test_an_empty_label_is_inferred_as_no_class(prepared, name):
    reader, cfg, path = prepared(name)
    OmegaConf.update(cfg, "task.labels", None)
    line = first_data_line(reader, cfg) + 2
    set_field(reader, cfg, path, line, "", "label")
    assert user_error(cfg).startswith(f"{path}:{line}: empty label")


def test_an_empty_label_is_a_class_where_task_labels_lists_it(prepared):
    reader, cfg, path = prepared("custom-jsonl")
    OmegaConf.update(cfg, "task.labels", ["", "neg", "pos"])
    set_field(reader, cfg, path, first_data_line(reader, cfg) + 2, "", "label")
    run_data_steps(cfg)


@pytest.mark.parametrize("name", ["glue-stsb", "custom-csv", "custom-jsonl"])
@pytest.mark.parametrize(("split", "value"), [("train", "nan"), ("val", "nan"), ("val", "inf")])
def test_a_non_finite_regression_target_is_an_error(prepared, name, split, value):
    reader, cfg, path = prepared(name)
    if reader.task == "custom":
        _as_regression(reader, cfg, path)
    if split == "val":
        path = path.with_name(f"dev.{path.suffix.lstrip('.')}")
    line = first_data_line(reader, cfg) + 1
    set_field(reader, cfg, path, line, value, "label")
    assert user_error(cfg).startswith(f"{path}:{line}: regression target '{value}' is not finite")


def _as_regression(reader: Reader, cfg: DictConfig, path: Path) -> None:
    """Turn the custom task's data and config into a regression (numbers as targets)."""
    OmegaConf.update(cfg, "task.regression", True)
    OmegaConf.update(cfg, "task.labels", None)
    OmegaConf.update(cfg, "task.metrics", ["pearson"])
    lines = lines_of(path)
    first = first_data_line(reader, cfg) - 1
    numbered = [_with_number(reader, line, i) for i, line in enumerate(lines[first:])]
    write_lines(path, [*lines[:first], *numbered])
    write_lines(path.with_name(f"dev.{reader.kind}"), lines_of(path))


@pytest.mark.parametrize("name", ["custom-csv", "custom-tsv"])
def test_a_repeated_column_is_an_error_naming_it(prepared, name):
    reader, cfg, path = prepared(name)
    separator = "," if reader.kind == "csv" else "\t"
    lines = lines_of(path)  # one more column, named like the text column
    lines = [lines[0] + f"{separator}review"] + [line + f"{separator}other" for line in lines[1:]]
    write_lines(path, lines)
    assert user_error(cfg) == f"{path}:1: column 'review' appears 2 times in the header"


@pytest.mark.parametrize("name", JSON_LINES)
def test_a_repeated_json_key_is_an_error(prepared, name):
    reader, cfg, path = prepared(name)
    lines = lines_of(path)
    key = text_columns(reader, cfg)[0]
    lines[2] = lines[2][:-1] + f", {json.dumps(key)}: " + '"the second one"}'
    write_lines(path, lines)
    assert user_error(cfg) == f"{path}:3: key '{key}' appears twice in one object"


@pytest.mark.parametrize("name", JSON_LINES)
@pytest.mark.parametrize("which", ["text", "label"])
def test_a_null_json_field_is_an_error(prepared, name, which):
    reader, cfg, path = prepared(name)
    lines = lines_of(path)
    record = json.loads(lines[2])
    key = label_column(reader, cfg) if which == "label" else text_columns(reader, cfg)[0]
    record[key] = None
    lines[2] = json.dumps(record)
    write_lines(path, lines)
    assert user_error(cfg) == f"{path}:3: field '{key}' is null"


def test_skipped_rows_are_reported_again_when_the_cache_is_reused(prepared, caplog):
    reader, cfg, path = prepared("glue-qqp")
    lines = lines_of(path)
    lines[2] = "just one field"
    write_lines(path, lines)
    expected = f"{path}: skipped 1 malformed rows (wrong number of fields)"
    for run in ("first", "cached"):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            datamodule = pipeline.build_datamodule(cfg)
            datamodule.set_tokenizer(pipeline.resolve_tokenizer(cfg, datamodule, None))
            datamodule.prepare_data()
        assert expected in caplog.text, run
        report = datamodule.data_report()
        assert report["train"]["skipped_malformed_rows"] == 1, run
        assert report["train"]["examples"] == len(lines) - 2  # less the header and that row
        assert report["val"]["skipped_malformed_rows"] == 0


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


def test_command_line_exits_2_with_the_file_and_line(tmp_path):
    reader = BY_NAME["glue-rte"]
    path = reader.write(tmp_path / "data")
    lines = lines_of(path)
    lines[3] = lines[3].rsplit("\t", 1)[0] + "\tmaybe"
    write_lines(path, lines)
    run = subprocess.run(
        train_command(reader, tmp_path / "data", path, tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2, run.stderr[-2000:]
    last_line = run.stderr.strip().splitlines()[-1]
    assert last_line == (
        f"error: {path}:4: label 'maybe' is not one of ['entailment', 'not_entailment']"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "spoil", "expected"),
    [
        (
            "pretraining-text",
            lambda p: p.write_bytes(b"ok line\n" + BAD_BYTES + b"\n"),
            r":2: not UTF-8",
        ),
        ("custom-jsonl", lambda p: p.write_bytes(b""), r": empty file"),
    ],
)
def test_command_line_exit_code_for_other_readers(tmp_path, name, spoil, expected):
    reader = BY_NAME[name]
    path = reader.write(tmp_path / "data")
    spoil(path)
    run = subprocess.run(
        train_command(reader, tmp_path / "data", path, tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2, run.stderr[-2000:]
    last_line = run.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"error: {path}") and re.search(expected, last_line), last_line
