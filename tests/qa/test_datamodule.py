"""QuestionAnsweringDataModule (bertlab/qa/datamodule.py): batches, cache, what it reports."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from bertlab.errors import DataError

from support.data import generated_squad, write_squad
from support.models import squad_tokenizer
from support.runs import squad_datamodule


@pytest.fixture(scope="module")
def tokenizer():
    return squad_tokenizer()


def test_batches_are_int64_dicts_and_features_are_cached(tmp_path, tokenizer):
    datamodule = squad_datamodule(tmp_path, tokenizer)
    train = next(iter(datamodule.train_dataloader()))
    assert set(train) == {
        "input_ids",
        "token_type_ids",
        "attention_mask",
        "start_positions",
        "end_positions",
    }
    assert all(value.dtype == torch.int64 for value in train.values())
    validation = next(iter(datamodule.val_dataloader()))
    assert "feature_index" in validation and "start_positions" not in validation
    assert (
        validation["attention_mask"].sum(1)
        == torch.from_numpy(datamodule.eval_set().lengths[validation["feature_index"].numpy()])
    ).all()
    entries = sorted((tmp_path / "cache" / "squad-features").glob("*/complete.json"))
    assert len(entries) == 2
    again = squad_datamodule(tmp_path, tokenizer)  # same files, tokenizer, settings: cache hit
    assert len(again.eval_set().lengths) == len(datamodule.eval_set().lengths)
    assert sorted((tmp_path / "cache" / "squad-features").glob("*/complete.json")) == entries


def _misplace_first_answer(path) -> str:
    content = json.loads(path.read_text(encoding="utf-8"))
    qa = content["data"][0]["paragraphs"][0]["qas"][0]
    qa["answers"][0]["answer_start"] += 3
    path.write_text(json.dumps(content), encoding="utf-8")
    return qa["id"]


def test_skipped_training_questions_are_reported_on_every_run(tmp_path, tokenizer, caplog):
    """Skipped when read, and still reported when a rerun finds the windows cached."""
    data_dir = tmp_path / "data"
    write_squad(data_dir, "train-v1.1.json", generated_squad(30, 0))
    _misplace_first_answer(data_dir / "train-v1.1.json")
    write_squad(data_dir, "dev-v1.1.json", generated_squad(12, 1))
    _misplace_first_answer(data_dir / "dev-v1.1.json")  # evaluation: kept, never checked
    for run in ("first", "cached"):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            datamodule = squad_datamodule(tmp_path, tokenizer, write=False)
        expected = {
            "first": "train-v1.1.json: skipped 1 training questions whose answer text is not at",
            "cached": "train-v1.1.json: 1 training questions skipped (answer text not at its",
        }[run]
        assert expected in caplog.text, run
        facts = datamodule.info()
        assert facts["train questions"] == 29 and facts["train questions skipped"] == 1, run
        assert facts["validation questions"] == 12, run


@pytest.mark.parametrize("stage_file", ["train-v1.1.json", "dev-v1.1.json"])
def test_empty_split_is_an_error_naming_the_file(tmp_path, tokenizer, stage_file):
    write_squad(tmp_path / "data", "train-v1.1.json", generated_squad(30, 0))
    write_squad(tmp_path / "data", "dev-v1.1.json", generated_squad(12, 1))
    empty = write_squad(tmp_path / "data", stage_file, {"data": []})
    with pytest.raises(DataError, match=rf"^{empty}: no questions"):
        squad_datamodule(tmp_path, tokenizer, write=False)
