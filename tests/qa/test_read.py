"""Reading SQuAD files (bertlab/qa/read.py), and bad SQuAD files through the data steps of
`bertlab-train` (issues 8 and 15).

Each bad-data case writes a small valid v1.1 or v2.0 dataset, spoils one thing, and runs what
`bertlab-train` runs before building the model: data module, tokenizer, `prepare_data()`.
An error must be one line naming the file, which the command line prints with exit 2
(tests/cli/test_train.py). Where the reference tools accept something, so does bertlab, and
says so: a training question whose answer is not at its `answer_start` is skipped with a
warning (as BERT's `run_squad.py`); an evaluation file's `answer_start` is never read (as the
official scripts).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import types
from pathlib import Path

import pytest

from bertlab.errors import ConfigError, DataError
from bertlab.qa.datamodule import QuestionAnsweringDataModule
from bertlab.qa.read import UNKNOWN_START, read_squad_file

from support.bad_data import BAD_BYTES, ONE_MB
from support.data import generated_squad, one_paragraph, write_squad, write_squad_dataset
from support.runs import SMALL_SQUAD, compose_train_config, run_data_steps, user_error

PARIS = "Paris is in France."


def _misplaced_answer(qid: str) -> dict:
    """A question whose answer text is not at its answer_start."""
    return {"id": qid, "question": "?", "answers": [{"text": "France", "answer_start": 3}]}


def test_answer_start_that_misses_its_text_skips_the_training_question(tmp_path, caplog):
    content = one_paragraph(
        PARIS,
        [
            _misplaced_answer("bad-1"),
            {"id": "ok", "question": "?", "answers": [{"text": "France", "answer_start": 12}]},
        ],
    )
    path = write_squad(tmp_path, "train-v1.1.json", content)
    with caplog.at_level(logging.WARNING):
        split = read_squad_file(path, training=True)
    assert [example.qid for example in split.examples] == ["ok"] and split.skipped == ["bad-1"]
    assert (
        f"{path}: skipped 1 training questions whose answer text is not at its answer_start"
        in caplog.text
    )
    assert "'bad-1'" in caplog.text


def test_training_file_whose_every_answer_is_misplaced_names_the_file(tmp_path):
    path = write_squad(tmp_path, "train-v1.1.json", one_paragraph(PARIS, [_misplaced_answer("a")]))
    with pytest.raises(DataError, match=r"train-v1\.1\.json: no questions left after skipping 1"):
        read_squad_file(path, training=True)


def test_evaluation_file_needs_only_answer_texts(tmp_path):
    """The official evaluation never reads answer_start: wrong or missing, the question counts."""
    qas = [
        _misplaced_answer("wrong-start"),
        {"id": "no-start", "question": "?", "answers": [{"text": "Paris"}]},
    ]
    path = write_squad(tmp_path, "dev-v1.1.json", one_paragraph(PARIS, qas))
    split = read_squad_file(path, training=False)
    assert [example.qid for example in split.examples] == ["wrong-start", "no-start"]
    assert split.examples[1].answer_texts == ("Paris",)
    assert split.examples[1].answer_starts == (UNKNOWN_START,) and split.skipped == []


def test_evaluation_answer_without_text_names_the_question(tmp_path):
    qas = [{"id": "q", "question": "?", "answers": [{"answer_start": 0}]}]
    path = write_squad(tmp_path, "dev-v1.1.json", one_paragraph(PARIS, qas))
    with pytest.raises(
        DataError, match=r"dev-v1\.1\.json: question 'q': every answer needs a 'text'"
    ):
        read_squad_file(path, training=False)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(
    "content",
    [{"data": []}, {"version": "1.1", "data": [{"title": "t", "paragraphs": []}]}],
    ids=["no-articles", "no-paragraphs"],
)
def test_file_without_questions_names_the_file(tmp_path, training, content):
    path = write_squad(tmp_path, "some.json", content)
    with pytest.raises(DataError, match=rf"^{path}: no questions: nothing to train or evaluate on"):
        read_squad_file(path, training=training)


def test_repeated_question_id_in_an_evaluation_file_names_file_and_id(tmp_path):
    content = generated_squad(4, 1)
    paragraphs = content["data"][0]["paragraphs"]
    paragraphs[2]["qas"][0]["id"] = paragraphs[0]["qas"][0]["id"]  # q0 twice
    path = write_squad(tmp_path, "dev-v1.1.json", content)
    with pytest.raises(DataError, match=rf"^{path}: question id 'q0' is used by 2 questions;"):
        read_squad_file(path, training=False)
    # Training never keys anything by id: the reference reads such a file as it is.
    assert len(read_squad_file(path, training=True).examples) == 4


def test_broken_json_names_file_and_line(tmp_path):
    path = tmp_path / "dev-v1.1.json"
    path.write_text('{"data": [\n  oops]}')
    with pytest.raises(DataError, match=r"dev-v1\.1\.json:2: not valid JSON"):
        read_squad_file(path, training=False)


def test_missing_local_file_names_task_data_dir(tmp_path):
    write_squad(tmp_path, "train-v1.1.json", generated_squad(2, 0))
    with pytest.raises(ConfigError, match=r"task\.data_dir=.*no dev-v1\.1\.json"):
        QuestionAnsweringDataModule(data_dir=str(tmp_path))


def test_no_local_data_and_no_hub_names_task_data_dir(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed (or offline)
    datamodule = QuestionAnsweringDataModule(cache_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=r"set task\.data_dir=DIR"):
        datamodule.read_split("validation")


def test_hub_rows_share_paragraphs_and_are_checked(tmp_path, monkeypatch, caplog):
    rows = [
        {
            "id": "a",
            "question": "where?",
            "context": PARIS,
            "answers": {"text": ["France"], "answer_start": [12]},
        },
        {
            "id": "b",
            "question": "who?",
            "context": PARIS,
            "answers": {"text": [], "answer_start": []},
        },
    ]
    fake_datasets = types.SimpleNamespace(load_dataset=lambda name, split: rows)
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets)
    datamodule = QuestionAnsweringDataModule(
        hub_dataset="rajpurkar/squad_v2", cache_dir=str(tmp_path)
    )
    split = datamodule.read_split("validation")
    assert split.contexts == [PARIS] and [e.is_impossible for e in split.examples] == [
        False,
        True,
    ]
    rows[0]["answers"]["answer_start"] = [0]
    with caplog.at_level(logging.WARNING):
        train = datamodule.read_split("train")
    assert train.skipped == ["a"] and [example.qid for example in train.examples] == ["b"]
    assert "rajpurkar/squad_v2:train: skipped 1 training questions" in caplog.text


# ---- bad SQuAD files through the data steps of bertlab-train --------------------------------

VERSIONS = ["v1.1", "v2.0"]


@pytest.fixture
def dataset(tmp_path):
    """(version) -> (config, train file, dev file), with valid data written."""

    def prepare(version: str):
        train_path, dev_path = write_squad_dataset(tmp_path / "data", version)
        task = "squad/v2" if version == "v2.0" else "squad/v1"
        overrides = [f"task={task}", f"task.data_dir={tmp_path / 'data'}", *SMALL_SQUAD]
        return compose_train_config(overrides, tmp_path), train_path, dev_path

    return prepare


def edit(path: Path, change) -> dict:
    """Apply `change` to the parsed file, write it back; returns the parsed content."""
    content = json.loads(path.read_text(encoding="utf-8"))
    change(content)
    path.write_text(json.dumps(content), encoding="utf-8")
    return content


def first_answered(content: dict) -> dict:
    return next(
        qa
        for paragraph in content["data"][0]["paragraphs"]
        for qa in paragraph["qas"]
        if qa["answers"]
    )


def move_first_answer(content: dict, by: int) -> None:
    """Point the first answer's answer_start `by` characters away from its text."""
    first_answered(content)["answers"][0]["answer_start"] += by


@pytest.mark.parametrize("version", VERSIONS)
def test_valid_data_passes(dataset, version):
    cfg, _, _ = dataset(version)
    run_data_steps(cfg)


@pytest.mark.parametrize("version", VERSIONS)
def test_empty_file(dataset, version):
    cfg, path, _ = dataset(version)
    path.write_bytes(b"")
    message = user_error(cfg)
    assert message.startswith(str(path)) and "not valid JSON" in message, message


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("which", ["train", "dev"])
def test_file_without_questions_names_it(dataset, version, which):
    """`{"data": []}` trained 0 steps and exited 0 (issue 15); now an error naming the file."""
    cfg, train_path, dev_path = dataset(version)
    path = train_path if which == "train" else dev_path
    path.write_text('{"data": []}', encoding="utf-8")
    assert user_error(cfg) == f"{path}: no questions: nothing to train or evaluate on"


@pytest.mark.parametrize("version", VERSIONS)
def test_file_not_found(dataset, version):
    cfg, path, _ = dataset(version)
    path.unlink()
    message = user_error(cfg)
    assert path.name in message and re.search(r"no .* there", message)


@pytest.mark.parametrize("version", VERSIONS)
def test_bytes_that_are_not_utf8(dataset, version):
    cfg, path, _ = dataset(version)
    content = path.read_bytes()
    path.write_bytes(content.replace(b'"context": "', b'"context": "' + BAD_BYTES, 1))
    message = user_error(cfg)
    assert message.startswith(f"{path}:1: not") and "UTF-8" in message, message


@pytest.mark.parametrize("version", VERSIONS)
def test_a_megabyte_text_is_read_and_truncated(dataset, version):
    """Official SQuAD files are a single line of JSON: a long context is windows, not an error."""
    cfg, path, _ = dataset(version)
    long_text = "lengthy " * (ONE_MB // 8)

    def lengthen(content):
        content["data"][0]["paragraphs"][0]["context"] += " " + long_text  # offsets stay

    edit(path, lengthen)
    run_data_steps(cfg)


@pytest.mark.parametrize("version", VERSIONS)
def test_training_answer_not_at_its_offset_is_skipped_and_counted(dataset, version, caplog):
    cfg, path, _ = dataset(version)
    content = edit(path, lambda content: move_first_answer(content, by=3))
    qid = first_answered(content)["id"]
    with caplog.at_level(logging.WARNING):
        datamodule = run_data_steps(cfg)
    assert re.search(
        rf"{re.escape(str(path))}: skipped 1 training questions whose answer text is not at "
        rf"its answer_start \(as BERT's run_squad.py\): '{qid}'",
        caplog.text,
    )
    assert datamodule.info()["train questions skipped"] == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_dev_answer_not_at_its_offset_is_accepted(dataset, version, caplog):
    """The official evaluation reads only the answer texts."""
    cfg, _, path = dataset(version)
    edit(path, lambda content: move_first_answer(content, by=3))
    with caplog.at_level(logging.WARNING):
        datamodule = run_data_steps(cfg)
    assert "skipped" not in caplog.text
    assert datamodule.info()["validation questions"] == 4


@pytest.mark.parametrize("version", VERSIONS)
def test_repeated_question_id_in_the_dev_file_names_file_and_id(dataset, version):
    cfg, _, path = dataset(version)

    def repeat_first_id(content):
        paragraphs = content["data"][0]["paragraphs"]
        paragraphs[1]["qas"][0]["id"] = paragraphs[0]["qas"][0]["id"]

    edit(path, repeat_first_id)
    assert user_error(cfg).startswith(f"{path}: question id 'q0' is used by 2 questions;")


@pytest.mark.parametrize("version", VERSIONS)
def test_squad_question_missing_a_field(dataset, version):
    cfg, path, _ = dataset(version)
    content = edit(
        path, lambda content: content["data"][0]["paragraphs"][1]["qas"][0].pop("question")
    )
    qid = content["data"][0]["paragraphs"][1]["qas"][0]["id"]
    assert user_error(cfg).startswith(f"{path}: question '{qid}': missing 'question'")
