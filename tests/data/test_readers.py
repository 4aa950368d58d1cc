"""Readers on small files written in each dataset's real on-disk format, quirks included, and
each reader's bad data: a one-line error naming the file and the line or record.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import types
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bertlab.data.readers import (
    TableLayout,
    infer_label_names,
    label_ids,
    read_examples,
    regression_targets,
)
from bertlab.errors import DataError

from support.bad_data import (
    BAD_BYTES,
    BY_NAME,
    CLASSIFICATION_READERS,
    FILES,
    JSON_LINES,
    LABELED,
    ONE_MB,
    PRETRAINING_TEXT,
    TABLES,
    as_regression,
    first_data_line,
    label_column,
    lines_of,
    set_field,
    text_columns,
    write_lines,
)
from support.data import (
    GLUE_LAYOUTS,
    GLUE_TEST_FILES,
    glue_rows,
    write_custom,
    write_glue_task,
    write_imdb,
    write_snli,
    write_tsv,
    write_xnli,
)
from support.runs import datamodule_for, read_split, run_data_steps, user_error

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


# ---- bad data, for every reader, through the data steps of bertlab-train (issue 8) -----------
# Each case writes a small valid dataset in the reader's official layout (tests/support/data.py),
# spoils one thing (tests/support/bad_data.py), and runs the data steps of `bertlab-train`
# in-process: data module, tokenizer, `prepare_data()`. The error must be one the command line
# turns into `error: <message>` and exit 2 (tests/cli/test_train.py). Where the documented policy
# is to skip and report (QQP's malformed rows, SNLI's pairs without a gold label), the count must
# be reported. A 1 MB text in these formats is one long text, truncated to `task.max_seq_length`
# like any other (pretraining text: tests/data/test_corpus.py).


@pytest.mark.parametrize("name", CLASSIFICATION_READERS)
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
        as_regression(reader, cfg, path)  # numbers as targets, then one that is not
    line = first_data_line(reader, cfg) + 1
    set_field(reader, cfg, path, line, "high", "label")
    assert user_error(cfg).startswith(f"{path}:{line}: regression target 'high' is not a number")


@pytest.mark.parametrize("name", [n for n in FILES if n != PRETRAINING_TEXT])
def test_empty_file(prepared, name):
    reader, cfg, path = prepared(name)
    path.write_bytes(b"")
    message = user_error(cfg)
    assert message.startswith(str(path)) or str(path) in message, message
    assert re.search(r"empty|no examples|not valid JSON|needs more documents|no text", message)


@pytest.mark.parametrize("name", CLASSIFICATION_READERS)
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


@pytest.mark.parametrize("name", [n for n in FILES if n != PRETRAINING_TEXT])
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


# ---- nothing absorbed silently, through the data steps (issue 15) -------------------------


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
        as_regression(reader, cfg, path)
    if split == "val":
        path = path.with_name(f"dev.{path.suffix.lstrip('.')}")
    line = first_data_line(reader, cfg) + 1
    set_field(reader, cfg, path, line, value, "label")
    assert user_error(cfg).startswith(f"{path}:{line}: regression target '{value}' is not finite")


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
