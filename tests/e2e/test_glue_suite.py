"""`bertlab-train -m experiment=glue_suite`: nine tasks in one multirun, the GLUE files at its
end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bertlab.glue import GLUE_TASKS, SUBMISSION_FILES

from support.data import GLUE_TEST_FILES, write_glue_download
from support.runs import TINY_MODEL

TASKS = [key.split("/")[1] for key in GLUE_TASKS]


FAST_SUITE = [
    *TINY_MODEL,
    "tokenizer.vocab_size=120",
    "tokenizer.min_frequency=1",
    "callbacks.progress_bar=null",
    "callbacks.lr_monitor=null",
    "+trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.max_steps=2",
    "task.batch_size=8",
]


def bertlab_train(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return subprocess.run(
        [sys.executable, "-m", "bertlab.cli.train", *arguments],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_suite_fails_before_any_training_when_a_folder_is_missing(tmp_path: Path) -> None:
    (tmp_path / "glue" / "CoLA").mkdir(parents=True)
    sweep = tmp_path / "sweep"
    run = bertlab_train(
        "-m",
        "experiment=glue_suite",
        f"glue_dir={tmp_path / 'glue'}",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert run.returncode == 2
    assert f"error: glue_dir={tmp_path / 'glue'}: no SST-2/ folder" in run.stderr
    assert not any(sweep.glob("*/results.json"))


def test_one_command_runs_nine_tasks_and_writes_the_glue_files_and_submission(
    tmp_path: Path,
) -> None:
    glue_dir = write_glue_download(tmp_path / "glue")
    sweep = tmp_path / "sweep"
    run = bertlab_train(
        "-m",
        "experiment=glue_suite",
        f"glue_dir={glue_dir}",
        "task.predict_test=true",
        f"hydra.sweep.dir={sweep}",
        f"cache_dir={tmp_path / 'cache'}",
        "logger=[csv,wandb]",
        *FAST_SUITE,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    tasks = {json.loads(p.read_text())["task"] for p in sweep.glob("*/results.json")}
    assert tasks == set(GLUE_TASKS)

    glue = json.loads((sweep / "glue.json").read_text())
    [(init, row)] = glue["checkpoints"].items()
    assert init == "none" and sorted(row["tasks"]) == sorted(TASKS)
    scores = [row["tasks"][name]["score"] for name in TASKS]
    assert row["glue_score"] == pytest.approx(sum(scores) / 9)
    assert row["tasks"]["mnli"]["score"] == pytest.approx(
        sum(row["tasks"]["mnli"]["metrics"].values()) / 2
    )
    assert (sweep / "glue.md").read_text().startswith("# GLUE")
    assert (sweep / "glue.csv").exists()
    page = (sweep / "report.html").read_text()
    assert "<h2>GLUE</h2>" in page and "<h2>Learning curves</h2>" in page

    with zipfile.ZipFile(sweep / "submission" / "none.zip") as bundle:
        assert sorted(bundle.namelist()) == sorted(SUBMISSION_FILES)
        for name in SUBMISSION_FILES:
            lines = bundle.read(name).decode().splitlines()
            assert lines[0] == "index\tprediction"
            assert len(lines) == 1 + (5 if name == "AX.tsv" else 4), name
    stems = {stem for files in GLUE_TEST_FILES.values() for stem in files}
    assert {f"{stem}.tsv" for stem in stems} | {"AX.tsv"} == set(SUBMISSION_FILES)

    # W&B: one offline run per job, tagged with its task, and one run holding the GLUE table.
    runs = list(sweep.rglob("offline-run-*"))
    assert len(runs) == 10
    tables = list(sweep.glob("wandb/offline-run-*/files/media/table/glue_*.table.json"))
    assert len(tables) == 1
    assert json.loads(tables[0].read_text())["columns"][:2] == ["checkpoint", "CoLA"]
