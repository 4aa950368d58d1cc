"""Real Hydra multiruns of bertlab-train: job directories, offline W&B runs, failing jobs."""

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from support.data import write_corpus
from support.runs import FAST_PRETRAINING

# A `.wandb` file is a LevelDB-style log (32 KiB blocks, 7-byte record headers) of the
# wandb package's own protobuf `Record`s; wandb 0.31 has no public reader for offline runs.
BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, position = [], b"", HEADER
    while position + HEADER <= len(data):
        room = BLOCK - position % BLOCK
        if room < HEADER:  # the rest of a block too short for a header is padding
            position += room
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + HEADER])
        chunk = data[position + HEADER : position + HEADER + length]
        position += HEADER + length
        if kind == FULL:
            records.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            records.append(pending + chunk)
        elif length == 0:  # zero padding up to the block end
            position += BLOCK - position % BLOCK
    return [wandb_internal_pb2.Record.FromString(r) for r in records]


def read_wandb_run(run_dir: Path) -> dict:
    """Name, group, config and logged metric keys of the one offline W&B run in run_dir."""
    [run_file] = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    run = {"config": {}, "history_keys": set()}
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run["name"], run["group"] = record.run.display_name, record.run.run_group
            for item in record.run.config.update:
                run["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                run["config"][item.key] = json.loads(item.value_json)
        elif kind == "history":
            run["history_keys"].update(
                item.key or "/".join(item.nested_key) for item in record.history.item
            )
    return run


def multirun(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(tmp_path), "WANDB_SILENT": "true"}  # no W&B credentials
    env.pop("WANDB_MODE", None)
    env.pop("WANDB_API_KEY", None)
    command = [
        sys.executable,
        "-m",
        "bertlab.cli.train",
        "-m",
        *FAST_PRETRAINING,
        "trainer.max_steps=4",
        f"cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        *overrides,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


def test_two_by_two_multirun_with_offline_wandb_runs_grouped_by_sweep(tmp_path):
    pytest.importorskip("wandb")
    corpus = write_corpus(tmp_path / "corpus.txt")
    result = multirun(
        tmp_path,
        f"task.corpus={corpus}",
        "logger=[csv,wandb]",
        "optimizer.lr=1e-3,2e-3",
        "trainer.log_every_n_steps=1",
        "seed=1,2",
    )
    assert result.returncode == 0, result.stderr
    jobs = sorted((tmp_path / "sweep").glob("[0-9]*"))
    assert [j.name for j in jobs] == ["0", "1", "2", "3"]
    seen = set()
    for job in jobs:
        results = json.loads((job / "results.json").read_text())
        assert results["steps"] == 4 and "val/mlm_accuracy" in results["metrics"]
        run = read_wandb_run(job)
        assert run["group"] == str(tmp_path / "sweep")
        lr, seed = run["config"]["optimizer"]["lr"], run["config"]["seed"]
        assert (
            run["name"]
            == {1e-3: "optimizer.lr=0.001", 2e-3: "optimizer.lr=0.002"}[lr] + f" seed={seed}"
        )
        assert {"train/loss", "val/mlm_accuracy"} <= run["history_keys"]
        seen.add((lr, seed))
    assert seen == {(1e-3, 1), (1e-3, 2), (2e-3, 1), (2e-3, 2)}


def test_a_failing_job_does_not_stop_the_sweep_and_is_reported(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    result = multirun(tmp_path, f"task.corpus={tmp_path}/missing*.txt,{corpus}")
    assert result.returncode != 0  # Hydra reports the failed job when the sweep ends
    assert f"error: {tmp_path}/missing*.txt: task.corpus matches no file" in result.stderr
    assert not (tmp_path / "sweep" / "0" / "results.json").exists()
    assert json.loads((tmp_path / "sweep" / "1" / "results.json").read_text())["steps"] == 4

    report = subprocess.run(
        [sys.executable, "-m", "bertlab.cli.report", str(tmp_path / "sweep")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr
    assert "1 skipped" in report.stdout + report.stderr
