"""bertlab-train's command line: a user error is one line, `error: <message>`, and exit 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support.bad_data import BAD_BYTES, BY_NAME, lines_of, train_command, write_lines
from support.data import write_squad_dataset
from support.runs import SMALL_SQUAD

# ---- bad data, named with file and line ------------------------------------------------------


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


# ---- bad SQuAD files ------------------------------------------------------------------------


def squad_train_command(data_dir: Path, tmp_path: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bertlab.cli.train",
        "task=squad/v1",
        f"task.data_dir={data_dir}",
        f"cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        *SMALL_SQUAD,
    ]


def _last_error_line(tmp_path: Path, spoil) -> tuple[Path, str]:
    train_path, _ = write_squad_dataset(tmp_path / "data", "v1.1")
    spoil(train_path)
    run = subprocess.run(
        squad_train_command(tmp_path / "data", tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
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


# ---- settings that cannot work -------------------------------------------------------------


def test_missing_corpus_is_a_one_line_error(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bertlab.cli.train",
            f"task.corpus={tmp_path}/nothing*.txt",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert (
        run.stderr.strip().splitlines()[-1]
        == f"error: {tmp_path}/nothing*.txt: task.corpus matches no file"
    )


def test_gpu_trainer_on_a_cpu_machine_is_one_line_and_exit_2(tmp_path):
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    refused = subprocess.run(
        [sys.executable, "-m", "bertlab.cli.train", "trainer=gpu", f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )
    if "mps" in refused.stderr:
        pytest.skip("an Apple GPU counts as a GPU")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "error: trainer.accelerator='gpu': this machine has no GPU that torch can use; "
        "choose trainer=cpu (or trainer.accelerator=cpu)"
    ]
