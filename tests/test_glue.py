"""The GLUE score (bertlab/glue.py) from job directories as bertlab-train writes them."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import pytest
import yaml

from bertlab.glue import (
    SUBMISSION_FILES,
    collect_submission,
    find_glue_jobs,
    glue_scores,
    glue_table,
    task_score,
    write_glue_files,
)

from support.data import BERT_LARGE, write_glue_job, write_glue_suite


def test_bert_large_leaderboard_row_gives_80_5() -> None:
    scores = {task.split("/")[1]: task_score(metrics) for task, metrics in BERT_LARGE.items()}
    assert scores["mrpc"] == pytest.approx(87.35) and scores["mnli"] == pytest.approx(86.3)
    glue, without_wnli = glue_scores(scores)
    assert round(glue, 1) == 80.5
    assert without_wnli == pytest.approx((sum(scores.values()) - 65.1) / 8)


def test_glue_files_from_job_directories(tmp_path: Path) -> None:
    write_glue_suite(tmp_path / "sweep", BERT_LARGE)
    files = write_glue_files([tmp_path / "sweep"])
    result = json.loads(files.json.read_text())
    row = result["checkpoints"]["bert-large"]
    assert round(row["glue_score"], 1) == 80.5
    assert row["tasks"]["mrpc"]["metrics"] == pytest.approx({"val/f1": 89.3, "val/accuracy": 85.4})
    assert row["tasks"]["cola"]["seeds"] == 1 and row["missing_tasks"] == []
    assert row["fine_tuning_wall_seconds"] == pytest.approx(90.0)
    markdown = files.markdown.read_text()
    assert "| bert-large | 60.5 | 94.9 | 89.3/85.4 | 87.6/86.5 |" in markdown
    assert "| 80.5 | 82.5 |" in markdown  # GLUE, and the average without WNLI
    [record] = list(csv.DictReader(files.csv.open()))
    assert float(record["glue_score"]) == pytest.approx(row["glue_score"])
    assert float(record["mnli_score"]) == pytest.approx(86.3)


def test_seeds_give_mean_std_and_best(tmp_path: Path) -> None:
    for seed, accuracy in ((1, 60.0), (2, 70.0), (3, 80.0)):
        write_glue_job(tmp_path / f"rte{seed}", "glue/rte", {"val/accuracy": accuracy}, seed=seed)
    [row] = glue_table(find_glue_jobs([tmp_path]))
    rte = row.as_json()["tasks"]["rte"]
    assert (rte["score"], rte["seeds"], rte["score_best"], rte["best_seed"]) == (70.0, 3, 80.0, 3)
    assert rte["score_std"] == pytest.approx(10.0)
    assert row.as_json()["glue_score"] is None  # eight tasks missing
    assert row.as_json()["missing_tasks"] == [
        "cola",
        "sst2",
        "mrpc",
        "stsb",
        "qqp",
        "mnli",
        "qnli",
        "wnli",
    ]


def test_one_row_per_checkpoint_and_other_overrides(tmp_path: Path) -> None:
    write_glue_suite(tmp_path / "a", BERT_LARGE, init="runs/a/last.ckpt")
    write_glue_suite(
        tmp_path / "b", BERT_LARGE, init="runs/b/last.ckpt", overrides=("optimizer.lr=1e-5",)
    )
    write_glue_job(
        tmp_path / "pretraining", "pretrain", {"val/mlm_accuracy": 40.0}
    )  # not GLUE: ignored
    rows = glue_table(find_glue_jobs([tmp_path]))
    assert sorted(row.label for row in rows) == [
        "runs/a/last.ckpt",
        "runs/b/last.ckpt optimizer.lr=1e-5",
    ]


def test_pretraining_steps_and_tokens_of_a_bertlab_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "pretrain"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    (run / "results.json").write_text(json.dumps({"steps": 1000}))
    (run / ".hydra").mkdir()
    config = {
        "task": {"batch_size": 32, "max_seq_length": 128},
        "trainer": {"accumulate_grad_batches": 2, "devices": 4, "num_nodes": 1},
    }
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    write_glue_suite(tmp_path / "sweep", BERT_LARGE, init=str(run / "checkpoints" / "last.ckpt"))
    [row] = glue_table(find_glue_jobs([tmp_path / "sweep"]))
    assert row.pretraining == {"steps": 1000, "tokens": 1000 * 32 * 128 * 2 * 4}
    assert row.as_json()["pretraining_tokens"] == 32_768_000


def test_submission_holds_the_eleven_files_of_the_best_seeds(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_glue_suite(sweep, BERT_LARGE)
    worse = write_glue_job(sweep / "worse_rte", "glue/rte", {"val/accuracy": 50.0}, seed=2)
    for job_dir in find_glue_jobs([sweep]):
        for stem in job_dir.task.submission:
            (job_dir.directory / f"{stem}.tsv").write_text(f"index\tprediction\n0\t{stem}\n")
    (worse / "RTE.tsv").write_text("index\tprediction\n0\tworse\n")
    [archive] = collect_submission(glue_table(find_glue_jobs([sweep])), sweep)
    assert archive == sweep / "submission" / "bert-large.zip"
    with zipfile.ZipFile(archive) as bundle:
        assert sorted(bundle.namelist()) == sorted(SUBMISSION_FILES)
        assert bundle.read("RTE.tsv").decode().endswith("0\tRTE\n")  # the better seed's
    assert len(SUBMISSION_FILES) == 11
    assert not (sweep / "submission" / "bert-large" / "MISSING.txt").exists()
