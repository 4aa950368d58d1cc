"""Readers on small files written in each dataset's real on-disk format, quirks included.

The writers below know the official layouts independently of conf/task/*.yaml, so these
tests check the task files as much as the reader code. test_classification.py reuses them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import types
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bertlab.data.classification import ClassificationDataModule
from bertlab.data.readers import (
    TableLayout,
    infer_label_names,
    label_ids,
    read_examples,
    regression_targets,
)
from bertlab.errors import DataError

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

# ---- the official layouts -----------------------------------------------------------------

MNLI_PARSES = [
    "sentence1_binary_parse",
    "sentence2_binary_parse",
    "sentence1_parse",
    "sentence2_parse",
]
GLUE_LAYOUTS = {
    # task: (train/dev header or None, test header, how a labeled row is laid out)
    "cola": (None, ["index", "sentence"]),
    "sst2": (["sentence", "label"], ["index", "sentence"]),
    "mrpc": (
        ["\ufeffQuality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
        ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"],
    ),
    "stsb": (
        [
            "index",
            "genre",
            "filename",
            "year",
            "old_index",
            "source1",
            "source2",
            "sentence1",
            "sentence2",
            "score",
        ],
        [
            "index",
            "genre",
            "filename",
            "year",
            "old_index",
            "source1",
            "source2",
            "sentence1",
            "sentence2",
        ],
    ),
    "qqp": (
        ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
        ["id", "question1", "question2"],
    ),
    "mnli": (
        [
            "index",
            "promptID",
            "pairID",
            "genre",
            *MNLI_PARSES,
            "sentence1",
            "sentence2",
            "label1",
            "gold_label",
        ],
        ["index", "promptID", "pairID", "genre", *MNLI_PARSES, "sentence1", "sentence2"],
    ),
    "qnli": (["index", "question", "sentence", "label"], ["index", "question", "sentence"]),
    "rte": (["index", "sentence1", "sentence2", "label"], ["index", "sentence1", "sentence2"]),
    "wnli": (["index", "sentence1", "sentence2", "label"], ["index", "sentence1", "sentence2"]),
}
GLUE_LABELS = {
    "cola": ["0", "1"],
    "sst2": ["0", "1"],
    "mrpc": ["0", "1"],
    "qqp": ["0", "1"],
    "wnli": ["0", "1"],
    "mnli": ["contradiction", "entailment", "neutral"],
    "qnli": ["entailment", "not_entailment"],
    "rte": ["entailment", "not_entailment"],
    "stsb": None,
}
GLUE_TEST_FILES = {
    "cola": {"CoLA": "test.tsv"},
    "sst2": {"SST-2": "test.tsv"},
    "mrpc": {"MRPC": "test.tsv"},
    "stsb": {"STS-B": "test.tsv"},
    "qqp": {"QQP": "test.tsv"},
    "mnli": {"MNLI-m": "test_matched.tsv", "MNLI-mm": "test_mismatched.tsv"},
    "qnli": {"QNLI": "test.tsv"},
    "rte": {"RTE": "test.tsv"},
    "wnli": {"WNLI": "test.tsv"},
}
WORDS = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "it",
    "that",
    "with",
    "for",
    "on",
    "as",
    "by",
    "at",
]


# One cue word per label; words of the pretraining corpus in conftest, so its vocabulary has them.
CUES = ["river", "stone", "cloud", "garden", "window", "music"]


def keyword_pair(label_index: int, row: int) -> tuple[str, str]:
    """A sentence pair whose label is learnable: sentence A carries the label's cue word."""
    filler = [WORDS[(row * 7 + k * 3) % len(WORDS)] for k in range(3 + row % 5)]
    return " ".join([*filler[:2], CUES[label_index], *filler[2:]]), " ".join(reversed(filler))


def glue_rows(task: str, count: int, start: int = 0) -> list[tuple[str, str, str]]:
    """(label, sentence A, sentence B); STS-B's label is a score 0-5 tied to the cue."""
    labels = GLUE_LABELS[task]
    rows = []
    for row in range(start, start + count):
        label_index = row % (6 if labels is None else len(labels))
        a, b = keyword_pair(label_index, row)
        rows.append((f"{label_index:.1f}" if labels is None else labels[label_index], a, b))
    return rows


def glue_line(task: str, row: int, label: str | None, a: str, b: str) -> list[str]:
    """One row in the task's own columns; `label=None` writes a test row."""
    test = label is None
    if task == "cola":
        return [str(row), a] if test else ["gj04", label, "" if label == "1" else "*", a]
    if task == "sst2":
        return [str(row), a] if test else [a, label]
    if task == "mrpc":
        ids = [str(1000 + row), str(2000 + row)]
        return [str(row), *ids, a, b] if test else [label, *ids, a, b]
    if task == "stsb":
        return [str(row), "main-captions", "MSRvid", "2012test", str(row), "none", "none", a, b] + (
            [] if test else [label]
        )
    if task == "qqp":
        return [str(row), a, b] if test else [str(row), str(2 * row), str(2 * row + 1), a, b, label]
    if task == "mnli":
        fields = [
            str(row),
            str(row),
            f"{row}e",
            "fiction",
            f"( {a} )",
            f"( {b} )",
            f"(ROOT {a})",
            f"(ROOT {b})",
            a,
            b,
        ]
        return fields if test else [*fields, label, label]
    return [str(row), a, b] if test else [str(row), a, b, label]  # qnli, rte, wnli


def write_tsv(path: Path, header: list[str] | None, lines: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ([header] if header else []) + lines
    path.write_text("".join("\t".join(fields) + "\n" for fields in rows), encoding="utf-8")
    return path


def write_glue_task(
    directory: Path, task: str, train: int = 40, dev: int = 12, test: int = 6
) -> Path:
    """train.tsv, dev(_matched/_mismatched).tsv and test file(s) as the GLUE download has them."""
    labeled_header, test_header = GLUE_LAYOUTS[task]
    if task == "mnli":  # dev files carry five annotator labels
        labeled_header = labeled_header[:-2] + [
            "label1",
            "label2",
            "label3",
            "label4",
            "label5",
            "gold_label",
        ]
        dev_names = ["dev_matched.tsv", "dev_mismatched.tsv"]
    else:
        dev_names = ["dev.tsv"]

    def labeled(rows, dev_file: bool) -> list[list[str]]:
        lines = []
        for row, (label, a, b) in enumerate(rows):
            fields = glue_line(task, row, label, a, b)
            if task == "mnli" and dev_file:
                fields = fields[:-2] + [label] * 6
            lines.append(fields)
        return lines

    train_header = GLUE_LAYOUTS[task][0]
    write_tsv(directory / "train.tsv", train_header, labeled(glue_rows(task, train), False))
    for name in dev_names:
        write_tsv(
            directory / name, labeled_header, labeled(glue_rows(task, dev, start=train), True)
        )
    for name in GLUE_TEST_FILES[task].values():
        lines = [
            glue_line(task, row, None, a, b) for row, (_, a, b) in enumerate(glue_rows(task, test))
        ]
        write_tsv(directory / name, test_header, lines)
    return directory


def write_snli(directory: Path, rows_per_split: dict[str, int], unlabeled_every: int = 5) -> Path:
    labels = ["contradiction", "entailment", "neutral"]
    directory.mkdir(parents=True, exist_ok=True)
    for split, count in rows_per_split.items():
        with open(directory / f"snli_1.0_{split}.jsonl", "w", encoding="utf-8") as out:
            for row in range(count):
                a, b = keyword_pair(row % 3, row)
                gold = "-" if row % unlabeled_every == unlabeled_every - 1 else labels[row % 3]
                record = {
                    "annotator_labels": [labels[row % 3]],
                    "captionID": f"{row}.jpg#0",
                    "gold_label": gold,
                    "pairID": f"{row}.jpg#0r1e",
                    "sentence1": a,
                    "sentence1_binary_parse": f"( {a} )",
                    "sentence1_parse": f"(ROOT {a})",
                    "sentence2": b,
                    "sentence2_binary_parse": f"( {b} )",
                    "sentence2_parse": f"(ROOT {b})",
                }
                out.write(json.dumps(record) + "\n")
    return directory


XNLI_HEADER = [
    "language",
    "gold_label",
    *MNLI_PARSES,
    "sentence1",
    "sentence2",
    "promptID",
    "pairID",
    "genre",
]
XNLI_HEADER += ["label1", "label2", "label3", "label4", "label5"]


def write_xnli(directory: Path, language: str = "de", train: int = 45, dev: int = 12) -> Path:
    """XNLI-1.0/xnli.{dev,test}.tsv (all languages) and XNLI-MT-1.0/multinli/multinli.train.<lang>.tsv."""
    labels = ["contradiction", "entailment", "neutral"]
    mt_rows = []
    for row in range(train):
        a, b = keyword_pair(row % 3, row)
        mt_rows.append([a, b, "contradictory" if row % 3 == 0 else labels[row % 3]])
    write_tsv(
        directory / "XNLI-MT-1.0" / "multinli" / f"multinli.train.{language}.tsv",
        ["premise", "hypo", "label"],
        mt_rows,
    )
    for split in ("dev", "test"):
        lines = []
        for lang in ("en", language, "zh"):
            for row in range(dev):
                a, b = keyword_pair(row % 3, row)
                gold = labels[row % 3]
                lines.append(
                    [lang, gold, a, b, a, b, a, b, str(row), str(row), "fiction", *[gold] * 5]
                )
        write_tsv(directory / "XNLI-1.0" / f"xnli.{split}.tsv", XNLI_HEADER, lines)
    return directory


def write_imdb(directory: Path, per_label: int = 10) -> Path:
    for split in ("train", "test"):
        for label_index, label in enumerate(("neg", "pos")):
            folder = directory / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for row in range(per_label):
                text, _ = keyword_pair(label_index, row)
                (folder / f"{row}_{3 + 5 * label_index}.txt").write_text(
                    f"{text}<br /><br />the end", encoding="utf-8"
                )
        # Files beside the label directories, and train/unsup/, are not examples.
        (directory / split / "urls_pos.txt").write_text("http://example.invalid\n")
    (directory / "train" / "unsup").mkdir()
    (directory / "train" / "unsup" / "0_0.txt").write_text("an unlabeled review", encoding="utf-8")
    return directory


def write_custom(directory: Path, file_format: str, name: str, rows: list[tuple[str, str]]) -> Path:
    """(text, label) rows as CSV (with a quoted comma), TSV or JSON Lines, with a header."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    if file_format == "jsonl":
        path.write_text(
            "".join(json.dumps({"review": t, "stars": label}) + "\n" for t, label in rows)
        )
    elif file_format == "csv":
        path.write_text(
            "id,review,stars\n"
            + "".join(f'{i},"{t}, truly",{label}\n' for i, (t, label) in enumerate(rows))
        )
    else:
        write_tsv(path, ["review", "stars"], [[t, label] for t, label in rows])
    return path


# ---- the real task configs -----------------------------------------------------------------


RESERVED_TASK_KEYS = ("name", "datamodule", "module", "objective", "objective_mode")


def task_cfg(task: str, data_dir: Path | None, *overrides: str):
    """The real task file composed by Hydra, with command-line style overrides."""
    data_dir_value = data_dir if data_dir else "null"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(overrides=[f"+task={task}", f"task.data_dir={data_dir_value}", *overrides])


def datamodule_for(task: str, data_dir: Path | None, *overrides: str) -> ClassificationDataModule:
    """What `bertlab-train` builds: every non-reserved task key as a keyword argument."""
    settings = OmegaConf.to_container(task_cfg(task, data_dir, *overrides).task, resolve=True)
    settings = {k: v for k, v in settings.items() if k not in RESERVED_TASK_KEYS}
    return ClassificationDataModule(
        **settings, cache_dir=str(Path(data_dir or ".") / "_cache"), seed=0
    )


def read_split(task: str, data_dir: Path, split: str, *overrides: str):
    return datamodule_for(task, data_dir, *overrides).sources[split].read()


# ---- GLUE ------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", sorted(GLUE_LAYOUTS))
def test_every_glue_task_reads_its_official_files(tmp_path: Path, task: str) -> None:
    write_glue_task(tmp_path, task, train=10, dev=4, test=3)
    datamodule = datamodule_for(f"glue/{task}", tmp_path)
    train = datamodule.sources["train"].read()
    assert len(train) == 10
    expected = glue_rows(task, 10)
    assert [e.label for e in train] == [label for label, _, _ in expected]
    pair_task = task not in ("cola", "sst2")
    assert [e.texts for e in train] == [(a, b) if pair_task else (a,) for _, a, b in expected]
    for split in datamodule.val_split_names:
        assert len(datamodule.sources[split].read()) == 4
    for split in GLUE_TEST_FILES[task]:
        test = datamodule.sources[split].read()
        assert [e.index for e in test] == ["0", "1", "2"] and all(e.label is None for e in test)


def test_cola_train_has_no_header_but_test_has_one(tmp_path: Path) -> None:
    write_glue_task(tmp_path, "cola", train=3, dev=2, test=2)
    first_line = (tmp_path / "train.tsv").read_text().splitlines()[0]
    assert first_line.startswith("gj04\t0\t*\t")
    train = read_split("glue/cola", tmp_path, "train")
    assert len(train) == 3 and train[0].line == 1  # the first line is data, not a header
    assert read_split("glue/cola", tmp_path, "CoLA")[1].texts == (glue_rows("cola", 2)[1][1],)


def test_mnli_has_matched_and_mismatched_dev_and_optional_diagnostic(tmp_path: Path) -> None:
    write_glue_task(tmp_path / "MNLI", "mnli", train=6, dev=3, test=2)
    datamodule = datamodule_for("glue/mnli", tmp_path / "MNLI")
    assert datamodule.val_split_names == ["val_matched", "val_mismatched"]
    assert datamodule.test_split_names == ["MNLI-m", "MNLI-mm"]  # no diagnostic/ directory
    write_tsv(
        tmp_path / "diagnostic" / "diagnostic.tsv",
        ["index", "sentence1", "sentence2"],
        [["0", "a b", "c d"]],
    )
    datamodule = datamodule_for("glue/mnli", tmp_path / "MNLI")
    assert datamodule.test_split_names == ["MNLI-m", "MNLI-mm", "AX"]
    assert datamodule.sources["AX"].read()[0].texts == ("a b", "c d")


def test_qqp_rows_with_missing_fields_are_skipped_and_counted(tmp_path: Path, caplog) -> None:
    write_glue_task(tmp_path, "qqp", train=8, dev=2, test=2)
    with open(tmp_path / "train.tsv", "a", encoding="utf-8") as out:
        out.write(
            "363362\t493340\t493341\tHow do I ask a question\n"
        )  # the real file has such rows
        out.write("402761\t536040\t536041\t\n")
    with caplog.at_level(logging.WARNING):
        train = read_split("glue/qqp", tmp_path, "train")
    assert len(train) == 8
    assert "skipped 2 malformed rows" in caplog.text and "train.tsv" in caplog.text


def test_stsb_reads_scores_as_regression_targets(tmp_path: Path) -> None:
    write_glue_task(tmp_path, "stsb", train=7, dev=2, test=2)
    datamodule = datamodule_for("glue/stsb", tmp_path)
    assert datamodule.regression and datamodule.label_names is None
    assert [e.label for e in datamodule.sources["train"].read()][:3] == ["0.0", "1.0", "2.0"]


# ---- SNLI, XNLI, IMDB ------------------------------------------------------------------------


def test_snli_drops_pairs_without_gold_label_and_reports_the_count(tmp_path: Path, caplog) -> None:
    write_snli(tmp_path, {"train": 20, "dev": 5})
    with caplog.at_level(logging.INFO):
        train = read_split("snli", tmp_path, "train")
    assert len(train) == 16
    assert {e.label for e in train} == {"contradiction", "entailment", "neutral"}
    assert "dropped 4 rows labelled '-'" in caplog.text


def test_xnli_selects_one_language_and_reads_the_translated_train_file(tmp_path: Path) -> None:
    write_xnli(tmp_path, language="de", train=9, dev=4)
    train = read_split("xnli", tmp_path, "train", "task.language=de")
    assert len(train) == 9 and "contradictory" not in {e.label for e in train}
    assert train[0].label == "contradiction"
    dev = read_split("xnli", tmp_path, "val", "task.language=de")
    assert len(dev) == 4 and dev[0].path.endswith("xnli.dev.tsv")
    with pytest.raises(DataError, match=r"multinli.train.fr.tsv: not found"):
        read_split("xnli", tmp_path, "train", "task.language=fr")


def test_imdb_reads_the_aclimdb_directory_layout(tmp_path: Path) -> None:
    write_imdb(tmp_path / "aclImdb", per_label=3)
    train = read_split("imdb", tmp_path / "aclImdb", "train")
    assert [e.label for e in train] == ["neg"] * 3 + ["pos"] * 3
    assert "<br />" not in train[0].texts[0] and train[0].index == "neg/0_3"
    assert len(read_split("imdb", tmp_path / "aclImdb", "val")) == 6  # IMDB validates on test/


# ---- custom data ------------------------------------------------------------------------------


@pytest.mark.parametrize("file_format", ["csv", "tsv", "jsonl"])
def test_custom_files_with_configured_columns_and_inferred_labels(
    tmp_path: Path, file_format: str
) -> None:
    rows = [("great film", "5"), ("dull", "1"), ("fine", "10"), ("okay", "5")]
    write_custom(tmp_path, file_format, f"train.{file_format}", rows)
    overrides = [
        f"task.train_file=train.{file_format}",
        "task.val_files={}",
        "task.text_columns=[review]",
        "task.label_column=stars",
    ]
    train = read_split("custom", tmp_path, "train", *overrides)
    assert [e.label for e in train] == ["5", "1", "10", "5"]
    assert train[0].texts == ("great film, truly",) if file_format == "csv" else ("great film",)
    assert infer_label_names(train) == ["1", "5", "10"]  # integers sort as numbers


def test_csv_record_spanning_lines_reports_its_first_line(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text('text,label\n"two\nlines",a\nok,b,extra\n')
    with pytest.raises(DataError, match=r"train.csv:4: expected 2"):
        read_examples(path, TableLayout(multiline_fields=True))


# ---- bad data names the file and the line ----------------------------------------------------


def test_wrong_column_count_names_file_and_line(tmp_path: Path) -> None:
    write_glue_task(tmp_path, "rte", train=5, dev=2, test=2)
    with open(tmp_path / "dev.tsv", "a", encoding="utf-8") as out:
        out.write("99\tonly one sentence\tentailment\n")
    with pytest.raises(DataError, match=r"dev.tsv:4: expected 4 .* found 3"):
        read_split("glue/rte", tmp_path, "val")


def test_label_outside_the_label_set_names_file_and_line(tmp_path: Path) -> None:
    write_glue_task(tmp_path, "rte", train=5, dev=2, test=2)
    lines = (tmp_path / "train.tsv").read_text().splitlines()
    lines[3] = lines[3].rsplit("\t", 1)[0] + "\tmaybe"
    (tmp_path / "train.tsv").write_text("\n".join(lines) + "\n")
    datamodule = datamodule_for("glue/rte", tmp_path)
    with pytest.raises(DataError, match=r"train.tsv:4: label 'maybe' is not one of"):
        label_ids(datamodule.sources["train"].read(), datamodule.label_names)


def test_non_numeric_stsb_score_names_file_and_line(tmp_path: Path) -> None:
    write_glue_task(tmp_path, "stsb", train=5, dev=2, test=2)
    lines = (tmp_path / "train.tsv").read_text().splitlines()
    lines[2] = lines[2].rsplit("\t", 1)[0] + "\thigh"
    (tmp_path / "train.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train.tsv:3: regression target 'high' is not a number"):
        regression_targets(read_split("glue/stsb", tmp_path, "train"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"data.tsv: empty file"),
        (b"text\tlabel\n", r"data.tsv: no examples"),
        (b"text\tlabel\nok\ta\nbad \xff byte\tb\n", r"data.tsv:3: not valid UTF-8"),
        (b"sentence\tlabel\nok\ta\n", r"data.tsv:1: no column 'text' in the header"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "data.tsv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_examples(path, TableLayout())


def test_a_column_number_past_the_row_is_named(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_text("a\t1\nb\t0\n")
    with pytest.raises(DataError, match=r"train.tsv: column 3 named, but rows have 2 fields"):
        read_examples(path, TableLayout(header=False, text_columns=(3,), label_column=1))


def test_missing_file_and_bad_json_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope.tsv: not found \(task.data_dir"):
        read_examples(tmp_path / "nope.tsv", TableLayout())
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", \n')
    with pytest.raises(DataError, match=r"data.jsonl:2: not valid JSON"):
        read_examples(path, TableLayout())
    path.write_text('{"text": "a", "label": 1}\n{"label": 0}\n')
    with pytest.raises(DataError, match=r"data.jsonl:2: missing field\(s\) \['text'\]"):
        read_examples(path, TableLayout())


# ---- the Hub -------------------------------------------------------------------------------------


def test_without_data_dir_and_without_datasets_the_error_names_task_data_dir(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails as if not installed
    datamodule = datamodule_for("glue/mrpc", None)
    with pytest.raises(DataError, match=r"nyu-mll/glue\[mrpc\]/train: .*set task.data_dir"):
        datamodule.sources["train"].read()


def test_hub_rows_map_class_ids_to_the_task_label_names(monkeypatch) -> None:
    rows = [
        {"premise": "p0", "hypothesis": "h0", "label": 0, "idx": 0},
        {"premise": "p1", "hypothesis": "h1", "label": 2, "idx": 1},
        {"premise": "p2", "hypothesis": "h2", "label": -1, "idx": 2},
    ]
    calls = []

    def load_dataset(path, name, split):
        calls.append((path, name, split))
        return rows

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    datamodule = datamodule_for("glue/mnli", None)
    examples = datamodule.sources["val_mismatched"].read()
    assert calls == [("nyu-mll/glue", "mnli", "validation_mismatched")]
    assert [e.label for e in examples] == [
        "entailment",
        "contradiction",
    ]  # Hub ids 0, 2; -1 dropped
    assert datamodule.sources["AX"].hub.name == "ax"


def test_a_wrong_data_dir_is_named_before_a_tokenizer_is_trained(tmp_path: Path) -> None:
    datamodule = datamodule_for("glue/cola", tmp_path / "CoLA")
    with pytest.raises(DataError, match=r"CoLA/train.tsv: not found \(task.data_dir"):
        datamodule.data_fingerprint()


def test_hub_class_ids_default_to_the_task_label_order(monkeypatch) -> None:
    rows = [{"question": "q", "sentence": "s", "label": 1, "idx": 7}]
    fake = types.SimpleNamespace(load_dataset=lambda path, name, split: rows)
    monkeypatch.setitem(sys.modules, "datasets", fake)
    examples = datamodule_for("glue/qnli", None).sources["train"].read()
    assert [(e.label, e.index, e.texts) for e in examples] == [("not_entailment", "7", ("q", "s"))]


# ---- nothing absorbed silently (issue 15) ------------------------------------------------------


def plain_csv(path: Path, texts: list[str]) -> Path:
    """`text,label` rows written without quoting, as a hand-made or exported CSV often is."""
    labels = ["neg", "pos"]
    path.write_text(
        "text,label\n" + "".join(f"{t},{labels[i % 2]}\n" for i, t in enumerate(texts)),
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize("closing_line", ['Fine" she said', 'Fine"'])
def test_an_unbalanced_csv_quote_names_the_line_where_it_opened(
    tmp_path: Path, closing_line: str
) -> None:
    # 60 rows; row 5 opens a quote that only row 15 closes. The csv module used to read the
    # ten rows between as one text: 50 examples, no word (closing mid-field or cleanly).
    texts = [f"review {i}" for i in range(60)]
    texts[4], texts[14] = '"Great movie', closing_line
    path = plain_csv(tmp_path / "train.csv", texts)
    with pytest.raises(DataError, match=r"train.csv:6: .*an unbalanced quote\?"):
        read_examples(path, TableLayout())


def test_csv_fields_span_lines_only_where_the_layout_says_so(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text('text,label\n"two\nlines",a\none line,b\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"train.csv:2: a quoted field opened on this line runs"):
        read_examples(path, TableLayout())
    examples = read_examples(path, TableLayout(multiline_fields=True))
    assert [(e.texts, e.line) for e in examples] == [(("two\nlines",), 2), (("one line",), 4)]
    path.write_text('text,label\nok,a\n"never closed,b\nmore,a\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"train.csv:3: unexpected end of data"):
        read_examples(path, TableLayout(multiline_fields=True))


def test_a_quote_in_a_tsv_is_text(tmp_path: Path) -> None:
    # GLUE's TSVs are written without quoting: a quote never joins rows there.
    path = tmp_path / "train.tsv"
    texts = ['"opened' if i == 2 else f"row {i}" for i in range(10)]
    rows = "".join(f"{text}\t{i % 2}\n" for i, text in enumerate(texts))
    path.write_text("text\tlabel\n" + rows, encoding="utf-8")
    examples = read_examples(path, TableLayout())
    assert len(examples) == 10 and examples[2].texts == ('"opened',)


def test_an_empty_label_is_an_error_unless_the_labels_list_it(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_text("text\tlabel\na\tpos\nb\t\nc\tneg\n", encoding="utf-8")
    examples = read_examples(path, TableLayout())
    with pytest.raises(DataError, match=r"train.tsv:3: empty label"):
        infer_label_names(examples)
    with pytest.raises(DataError, match=r"train.tsv:3: empty label"):
        label_ids(examples, ["neg", "pos"])
    assert label_ids(examples, ["", "neg", "pos"]) == [2, 0, 1]


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-Infinity"])
def test_a_non_finite_regression_target_names_file_and_line(tmp_path: Path, value: str) -> None:
    path = tmp_path / "train.tsv"
    path.write_text(f"text\tlabel\na\t1.5\nb\t{value}\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"train.tsv:3: regression target '{value}' is not finite"):
        regression_targets(read_examples(path, TableLayout()))


@pytest.mark.parametrize(("suffix", "separator"), [(".csv", ","), (".tsv", "\t")])
def test_a_repeated_column_name_is_an_error(tmp_path: Path, suffix: str, separator: str) -> None:
    path = tmp_path / f"train{suffix}"
    lines = [["text", "label", "text"], ["a", "pos", "b"]]
    path.write_text("".join(separator.join(line) + "\n" for line in lines), encoding="utf-8")
    with pytest.raises(DataError, match=rf"train{suffix}:1: column 'text' appears 2 times"):
        read_examples(path, TableLayout())


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ('{"text": "a", "label": "pos", "text": "b"}', "key 'text' appears twice in one object"),
        ('{"text": null, "label": "pos"}', "field 'text' is null"),
        ('{"text": "a", "label": null}', "field 'label' is null"),
        ('{"text": ["a"], "label": "pos"}', "field 'text' is a JSON list"),
    ],
)
def test_json_lines_that_would_be_read_as_something_else(
    tmp_path: Path, record: str, message: str
) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "ok", "label": "neg"}\n' + record + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"train.jsonl:2: {re.escape(message)}"):
        read_examples(path, TableLayout())
