"""Bad SQuAD files through the data steps of `bertlab-train` (issues 8 and 15).

Each case writes a small valid v1.1 or v2.0 dataset, spoils one thing, and runs what
`bertlab-train` runs before building the model: data module, tokenizer, `prepare_data()`.
An error must be one line naming the file, which the command line prints with exit 2.
Where the reference tools accept something, so does bertlab, and says so: a training
question whose answer is not at its `answer_start` is skipped with a warning (as BERT's
`run_squad.py`); an evaluation file's `answer_start` is never read (as the official scripts).
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bertlab import pipeline
from bertlab.cli.errors import USER_ERRORS

from .squad_files import compose_train_config, generated_squad, write_squad

BAD_BYTES = b"caf\xe9 au lait"  # Latin-1, not UTF-8
ONE_MB = 1_000_000
VERSIONS = ["v1.1", "v2.0"]
SMALL = [
    "tokenizer.vocab_size=120",
    "tokenizer.min_frequency=1",
    "task.max_seq_length=64",
    "task.doc_stride=32",
    "task.max_query_length=16",
]


def write_dataset(data_dir: Path, version: str) -> tuple[Path, Path]:
    """Valid training and dev files; returns (train, dev)."""
    unanswerable = 0.3 if version == "v2.0" else 0.0
    dev = write_squad(data_dir, f"dev-{version}.json", generated_squad(4, 1, unanswerable))
    train = write_squad(data_dir, f"train-{version}.json", generated_squad(8, 0, unanswerable))
    return train, dev


@pytest.fixture
def dataset(tmp_path):
    """(version) -> (config, train file, dev file), with valid data written."""

    def prepare(version: str):
        train_path, dev_path = write_dataset(tmp_path / "data", version)
        task = "squad/v2" if version == "v2.0" else "squad/v1"
        overrides = [f"task={task}", f"task.data_dir={tmp_path / 'data'}", *SMALL]
        return compose_train_config(overrides, tmp_path), train_path, dev_path

    return prepare


def run_data_steps(cfg) -> object:
    """What bertlab-train does before building the model, in the same order."""
    datamodule = pipeline.build_datamodule(cfg)
    tokenizer = pipeline.resolve_tokenizer(cfg, datamodule, init=None)
    datamodule.set_tokenizer(tokenizer)
    datamodule.prepare_data()
    datamodule.module_kwargs()
    return datamodule


def user_error(cfg) -> str:
    with pytest.raises(USER_ERRORS) as error:
        run_data_steps(cfg)
    message = str(error.value)
    assert "\n" not in message, message
    return message


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


# ---- through the command line ---------------------------------------------------------------


def train_command(data_dir: Path, tmp_path: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bertlab.cli.train",
        "task=squad/v1",
        f"task.data_dir={data_dir}",
        f"cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        *SMALL,
    ]


def _last_error_line(tmp_path: Path, spoil) -> tuple[Path, str]:
    train_path, _ = write_dataset(tmp_path / "data", "v1.1")
    spoil(train_path)
    run = subprocess.run(
        train_command(tmp_path / "data", tmp_path), capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 2, run.stderr[-2000:]
    assert not (tmp_path / "run" / "results.json").exists()
    return train_path, run.stderr.strip().splitlines()[-1]


def test_command_line_refuses_a_training_file_without_questions(tmp_path):
    path, last_line = _last_error_line(tmp_path, lambda p: p.write_text('{"data": []}'))
    assert last_line == f"error: {path}: no questions: nothing to train or evaluate on"


@pytest.mark.slow
def test_command_line_names_broken_json(tmp_path):
    path, last_line = _last_error_line(
        tmp_path, lambda p: p.write_text('{"data": [', encoding="utf-8")
    )
    assert last_line.startswith(f"error: {path}:1: not valid JSON"), last_line
