"""Reading SQuAD files (bertlab/qa/read.py): the rules of training and of evaluation files."""

from __future__ import annotations

import logging
import sys
import types

import pytest

from bertlab.errors import ConfigError, DataError
from bertlab.qa.datamodule import QuestionAnsweringDataModule
from bertlab.qa.read import UNKNOWN_START, read_squad_file

from .squad_files import generated_squad, one_paragraph, write_squad

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
