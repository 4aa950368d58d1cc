"""`bertlab-train -m experiment=glue_suite`: nine tasks in one multirun, the GLUE files at its end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from test_readers import CONF_DIR, GLUE_TEST_FILES, write_glue_task, write_tsv

from bertlab.errors import ConfigError
from bertlab.glue import GLUE_TASKS, SUBMISSION_FILES
from bertlab.glue_suite import check_task_dirs

TASKS = [key.split("/")[1] for key in GLUE_TASKS]
FAST_SUITE = [
    "model.hidden_size=32",
    "model.num_layers=1",
    "model.num_heads=2",
    "model.intermediate_size=64",
    "tokenizer.vocab_size=120",
    "tokenizer.min_frequency=1",
    "callbacks.progress_bar=null",
    "callbacks.lr_monitor=null",
    "+trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.max_steps=2",
    "task.batch_size=8",
]


def write_glue_download(root: Path, diagnostic: bool = True) -> Path:
    """The GLUE download's layout (CoLA/, SST-2/, ..., diagnostic/), tiny files in the real formats."""
    for name in TASKS:
        write_glue_task(root / GLUE_TASKS[f"glue/{name}"].directory, name, train=16, dev=6, test=4)
    if diagnostic:
        rows = [[str(i), f"river stone {i}", f"cloud {i}"] for i in range(5)]
        write_tsv(root / "diagnostic" / "diagnostic.tsv", ["index", "sentence1", "sentence2"], rows)
    return root


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


@pytest.mark.parametrize("name", TASKS)
def test_each_task_reads_its_folder_with_its_reference_settings(name: str) -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train", overrides=["experiment=glue_suite", f"glue_task={name}", "glue_dir=/g"]
        )
    task = GLUE_TASKS[f"glue/{name}"]
    assert (cfg.task.name, cfg.task.data_dir) == (f"glue/{name}", f"/g/{task.directory}")
    assert (cfg.optimizer._target_, cfg.optimizer.lr, cfg.optimizer.warmup_ratio) == (
        "bertlab.optim.BertAdam",
        2e-5,
        0.1,
    )
    reference = {"sst2": (16, 128, 4, 1e-6), "mnli": (32, 80, 3, 1e-8), "wnli": (32, 128, 5, 1e-6)}
    expected = reference.get(name, (32, 128, 3, 1e-6))
    found = (
        cfg.task.batch_size,
        cfg.task.max_seq_length,
        cfg.trainer.max_epochs,
        cfg.optimizer.eps,
    )
    assert found == expected


def test_command_line_overrides_win_over_the_suite_settings() -> None:
    overrides = [
        "experiment=glue_suite",
        "glue_task=sst2",
        "optimizer.lr=1e-5",
        "task.batch_size=8",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "trainer.max_epochs=1", "glue_dir=/g"])
    assert (cfg.optimizer.lr, cfg.task.batch_size, cfg.trainer.max_epochs) == (1e-5, 8, 1)


def test_a_missing_task_folder_names_glue_dir_and_the_folder(tmp_path: Path) -> None:
    write_glue_download(tmp_path / "glue", diagnostic=False)
    (tmp_path / "glue" / "QNLI" / "train.tsv").unlink()
    (tmp_path / "glue" / "QNLI" / "dev.tsv").unlink()
    (tmp_path / "glue" / "QNLI" / "test.tsv").unlink()
    (tmp_path / "glue" / "QNLI").rmdir()
    with pytest.raises(ConfigError, match=r"glue_dir=.*glue: no QNLI/ folder for glue_task=qnli"):
        check_task_dirs(str(tmp_path / "glue"), TASKS, predict_test=False)
    check_task_dirs(str(tmp_path / "glue"), ["rte", "mrpc"], predict_test=False)
    with pytest.raises(ConfigError, match="diagnostic/diagnostic.tsv"):
        check_task_dirs(str(tmp_path / "glue"), ["mnli"], predict_test=True)
    with pytest.raises(ConfigError, match="glue_dir is not set"):
        check_task_dirs(None, TASKS, predict_test=False)


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
