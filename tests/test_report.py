"""bertlab-report on a fake Hydra multirun directory: numbers, order, files, warnings, errors."""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bertlab.cli.report import main
from bertlab.report import load_sweep

from support.data import BERT_LARGE, write_corpus, write_glue_suite
from support.runs import FAST_PRETRAINING

# accuracy per seed 1, 2, 3 for each learning rate; 3e-5 wins
ACCURACY = {"1e-05": [0.70, 0.72, 0.74], "3e-05": [0.80, 0.81, 0.85]}
F1 = {"1e-05": [0.90, 0.91, 0.92], "3e-05": [0.60, 0.62, 0.64]}


def write_job(
    job_dir: Path, overrides: list[str], metrics: dict[str, float], objective: str = "val/accuracy"
) -> None:
    """One job directory as bertlab-train writes it under a multirun sweep."""
    (job_dir / ".hydra").mkdir(parents=True)
    (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    config = {
        "seed": 1,
        "task": {"name": "glue/mrpc", "objective": objective, "objective_mode": "max"},
    }
    (job_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    results = {
        "task": "glue/mrpc",
        "metrics": metrics,
        "best_checkpoint": str(job_dir / "checkpoints" / "best.ckpt"),
        "last_checkpoint": str(job_dir / "checkpoints" / "last.ckpt"),
        "steps": 30,
        "wall_seconds": 12.5,
        "overrides": overrides,
    }
    (job_dir / "results.json").write_text(json.dumps(results))
    write_logger_metrics(job_dir / "csv" / "version_0" / "metrics.csv", metrics["val/accuracy"])


def write_logger_metrics(path: Path, final_accuracy: float) -> None:
    """A Lightning CSVLogger file: sparse rows, train loss every 10 steps, validation per epoch."""
    path.parent.mkdir(parents=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["epoch", "step", "train/loss", "val/accuracy"])
        for step in (9, 19, 29):
            writer.writerow([step // 10, step, 1.0 / (step + 1), ""])
            writer.writerow([step // 10, step, "", final_accuracy - 0.01 * (29 - step) / 10])


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    """2 learning rates x 3 seeds, as `bertlab-train -m task=glue/mrpc optimizer.lr=1e-5,3e-5
    seed=1,2,3`.
    """
    sweep = tmp_path / "multirun" / "2024-05-01" / "12-00-00"
    job = 0
    for lr, accuracies in ACCURACY.items():
        for seed, accuracy in enumerate(accuracies, start=1):
            overrides = ["task=glue/mrpc", f"optimizer.lr={lr}", f"seed={seed}"]
            metrics = {"val/accuracy": accuracy, "val/f1": F1[lr][seed - 1]}
            write_job(sweep / str(job), overrides, metrics)
            job += 1
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    return sweep


def read_csv_report(path: Path) -> list[dict[str, str]]:
    with (path / "report.csv").open(newline="") as file:
        return list(csv.DictReader(file))


def test_csv_has_one_row_per_configuration_best_first(sweep_dir: Path) -> None:
    assert main([str(sweep_dir)]) == 0

    rows = read_csv_report(sweep_dir)
    assert [row["optimizer.lr"] for row in rows] == ["3e-05", "1e-05"]
    assert [row["rank"] for row in rows] == ["1", "2"]
    for row in rows:
        accuracies, f1 = ACCURACY[row["optimizer.lr"]], F1[row["optimizer.lr"]]
        assert row["seeds"] == "3"
        assert float(row["val/accuracy_mean"]) == pytest.approx(statistics.fmean(accuracies))
        assert float(row["val/accuracy_std"]) == pytest.approx(statistics.stdev(accuracies))
        assert float(row["val/f1_mean"]) == pytest.approx(statistics.fmean(f1))
        assert float(row["steps_mean"]) == 30
        assert row["overrides"] == f"task=glue/mrpc optimizer.lr={row['optimizer.lr']}"
        assert len(row["jobs"].split(";")) == 3
    assert "task" not in rows[0]  # the same in every job: not a swept column


def test_markdown_table_holds_means_and_stds(
    sweep_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main([str(sweep_dir)]) == 0

    markdown = (sweep_dir / "report.md").read_text()
    assert "| rank | optimizer.lr | seeds | val/accuracy | val/f1 |" in markdown
    assert "| 1 | 3e-05 | 3 | 0.8200 ± 0.0265 | 0.6200 ± 0.0200 |" in markdown
    assert "| 2 | 1e-05 | 3 | 0.7200 ± 0.0200 | 0.9100 ± 0.0100 |" in markdown
    assert markdown.index("3e-05 |") < markdown.index("1e-05 |")
    assert "Common overrides: `task=glue/mrpc`" in markdown
    printed = capsys.readouterr().out
    assert "0.8200 ± 0.0265" in printed
    assert "6 jobs in 2 configurations, 0 skipped" in printed


def test_objective_option_changes_the_order(sweep_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert main([str(sweep_dir), "--objective", "val/f1", "--out", str(out)]) == 0

    rows = read_csv_report(out)
    assert [row["optimizer.lr"] for row in rows] == ["1e-05", "3e-05"]
    assert list(rows[0])[4] == "val/f1_mean"  # the objective is the first metric column
    assert not (sweep_dir / "report.csv").exists()


def test_min_mode_ranks_lowest_first(sweep_dir: Path) -> None:
    sweep = load_sweep(sweep_dir, objective="val/accuracy", mode="min")
    assert [c.overrides[-1] for c in sweep.configurations] == [
        "optimizer.lr=1e-05",
        "optimizer.lr=3e-05",
    ]


def test_objective_falls_back_to_first_validation_metric(sweep_dir: Path) -> None:
    for config in sweep_dir.rglob("config.yaml"):
        config.unlink()
    sweep = load_sweep(sweep_dir)
    assert (sweep.objective, sweep.objective_mode) == ("val/accuracy", "max")


def test_plots_are_png_files(sweep_dir: Path) -> None:
    pytest.importorskip("matplotlib")
    assert main([str(sweep_dir)]) == 0

    for name in ("objective_vs_optimizer.lr.png", "learning_curves.png"):
        assert (sweep_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_broken_jobs_are_warned_about_counted_and_skipped(
    sweep_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    corrupt = sweep_dir / "6"
    write_job(corrupt, ["task=glue/mrpc", "optimizer.lr=5e-05", "seed=1"], {"val/accuracy": 0.9})
    (corrupt / "results.json").write_text('{"metrics": {"val/accura')
    failed = sweep_dir / "7"
    write_job(failed, ["task=glue/mrpc", "optimizer.lr=5e-05", "seed=2"], {"val/accuracy": 0.9})
    (failed / "results.json").unlink()

    assert main([str(sweep_dir)]) == 0

    captured = capsys.readouterr()
    assert f"skipped {corrupt / 'results.json'}: corrupt results.json" in captured.err
    assert f"skipped {failed / 'results.json'}: no results.json" in captured.err
    assert "6 jobs in 2 configurations, 2 skipped" in captured.out
    assert [row["optimizer.lr"] for row in read_csv_report(sweep_dir)] == ["3e-05", "1e-05"]
    assert f"- `{corrupt / 'results.json'}`: corrupt" in (sweep_dir / "report.md").read_text()


def test_directory_without_results_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    empty = tmp_path / "multirun" / "nothing-here"
    empty.mkdir(parents=True)

    assert main([str(empty)]) == 2

    assert f"{empty}: no results.json found under it" in capsys.readouterr().err


def test_unknown_objective_exits_2_listing_metrics(
    sweep_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main([str(sweep_dir), "--objective", "val/bleu"]) == 2
    assert (
        "'val/bleu' is in no job's metrics; logged: val/accuracy, val/f1" in capsys.readouterr().err
    )


def test_single_run_directory_is_a_one_job_report(sweep_dir: Path) -> None:
    sweep = load_sweep(sweep_dir / "0")
    assert len(sweep.jobs) == 1
    assert sweep.configurations[0].std("val/accuracy") is None  # one seed: no spread to report


def test_corrupt_overrides_file_is_named(sweep_dir: Path, capsys: pytest.CaptureFixture) -> None:
    overrides = sweep_dir / "5" / ".hydra" / "overrides.yaml"
    overrides.write_text("- [unclosed\n")

    assert main([str(sweep_dir)]) == 0

    assert f"skipped {overrides}: corrupt overrides.yaml" in capsys.readouterr().err


def test_long_sampled_values_are_shortened_in_the_table_only(tmp_path: Path) -> None:
    sweep = tmp_path / "optuna"
    for job, lr in enumerate(("2.368863950364079e-05", "7.348118405270451e-05")):
        write_job(
            sweep / str(job),
            ["hparams_search=glue_optuna", f"optimizer.lr={lr}"],
            {"val/accuracy": 0.5 + job / 10},
        )

    assert main([str(sweep)]) == 0

    assert "| 1 | 7.348e-05 | 1 | 0.6000 |" in (sweep / "report.md").read_text()
    assert read_csv_report(sweep)[0]["optimizer.lr"] == "7.348118405270451e-05"


@pytest.mark.slow
def test_report_numbers_equal_a_real_multiruns_results(tmp_path: Path) -> None:
    """A 2 x 2 pretraining multirun of bertlab-train, then the report on it."""
    pytest.importorskip("bertlab.conf")
    sweep = tmp_path / "multirun"
    command = [sys.executable, "-m", "bertlab.cli.train", "-m", f"hydra.sweep.dir={sweep}"]
    command += [
        f"task.corpus={write_corpus(tmp_path / 'corpus.txt')}",
        f"cache_dir={tmp_path / 'cache'}",
    ]
    command += [*FAST_PRETRAINING, "trainer.max_steps=10", "optimizer.lr=1e-4,1e-3", "seed=1,2"]
    finished = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert finished.returncode == 0, finished.stderr[-3000:]

    assert main([str(sweep)]) == 0

    rows = read_csv_report(sweep)
    assert sorted(row["optimizer.lr"] for row in rows) == ["0.0001", "0.001"]
    for row in rows:
        results = [
            json.loads((sweep / job / "results.json").read_text()) for job in row["jobs"].split(";")
        ]
        objective = [r["metrics"]["val/mlm_accuracy"] for r in results]
        assert float(row["val/mlm_accuracy_mean"]) == pytest.approx(statistics.fmean(objective))
        assert float(row["val/mlm_accuracy_std"]) == pytest.approx(statistics.stdev(objective))
    for name in ("objective_vs_optimizer.lr.png", "learning_curves.png"):
        assert (sweep / name).is_file()


# ---- report.html, several directories, GLUE ------------------------------------------------


def test_report_html_is_self_contained_with_tables_and_plots(sweep_dir: Path) -> None:
    pytest.importorskip("matplotlib")
    assert main([str(sweep_dir)]) == 0
    page = (sweep_dir / "report.html").read_text()
    assert "<h2>Runs</h2>" in page and "optimizer.lr" in page
    assert "<h2>Learning curves</h2>" in page and "<h2>Hyperparameters</h2>" in page
    assert page.count("src='data:image/png;base64,") == 2
    assert "http" not in page  # nothing to fetch: opens offline
    # MRPC jobs are GLUE jobs: their row, one per learning rate, has no GLUE score (8 tasks missing)
    glue = json.loads((sweep_dir / "glue.json").read_text())["checkpoints"]
    assert sorted(glue) == ["none optimizer.lr=1e-05", "none optimizer.lr=3e-05"]
    assert glue["none optimizer.lr=3e-05"]["tasks"]["mrpc"]["score"] == pytest.approx(
        100 * statistics.fmean(ACCURACY["3e-05"] + F1["3e-05"])
    )
    assert glue["none optimizer.lr=3e-05"]["glue_score"] is None


def test_seeds_of_one_configuration_form_a_band(sweep_dir: Path) -> None:
    from bertlab.dashboard import seed_band
    from bertlab.report import read_logged_curves

    sweep = load_sweep(sweep_dir)
    curves = {job.directory: read_logged_curves(job.directory) for job in sweep.jobs}
    best = sweep.configurations[0]  # lr 3e-5: final accuracies 0.80, 0.81, 0.85
    steps, mean, low, high = seed_band(best, curves, "val/accuracy")
    assert steps == [9.0, 19.0, 29.0]
    assert (low[-1], high[-1]) == (0.80, 0.85)
    assert mean[-1] == pytest.approx(statistics.fmean([0.80, 0.81, 0.85]))


def test_rates_get_a_log_axis() -> None:
    from bertlab.dashboard import log_scale

    assert log_scale("optimizer.lr", [1e-5, 3e-5])
    assert log_scale("optimizer.weight_decay", [0.001, 0.01])
    assert not log_scale("trainer.max_epochs", [2, 3])
    assert log_scale("task.batch_size", [8, 128])  # spans more than ten times


def test_several_directories_are_compared_side_by_side(sweep_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    write_job(
        other / "0", ["task=glue/mrpc", "optimizer.lr=1e-05", "seed=1"], {"val/accuracy": 0.9}
    )
    assert main([str(sweep_dir), str(other), "--out", str(tmp_path / "compare")]) == 0
    rows = read_csv_report(tmp_path / "compare")
    assert rows[0]["source"] == str(other) and rows[0]["seeds"] == "1"  # 0.9 ranks first
    assert {row["source"] for row in rows} == {str(sweep_dir), str(other)}
    assert (tmp_path / "compare" / "report.html").is_file()


def test_pretraining_jobs_plot_mlm_and_nsp_accuracy(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    job = tmp_path / "pretrain"
    write_job(job, [], {"val/accuracy": 0.5, "val/mlm_accuracy": 0.3}, objective="val/mlm_accuracy")
    path = job / "csv" / "metrics.csv"
    path.write_text(
        "epoch,step,train/loss,val/mlm_accuracy,val/nsp_accuracy\n"
        "0,9,5.0,,\n0,9,,0.1,0.5\n1,19,4.0,,\n1,19,,0.3,0.6\n"
    )
    assert main([str(job)]) == 0
    page = (job / "report.html").read_text()
    assert "<h2>Pretraining</h2>" in page


def test_glue_jobs_get_the_glue_table_and_files(tmp_path: Path) -> None:
    sweep = write_glue_suite(tmp_path / "suite", BERT_LARGE)
    assert main([str(sweep)]) == 0
    assert (
        round(
            json.loads((sweep / "glue.json").read_text())["checkpoints"]["bert-large"][
                "glue_score"
            ],
            1,
        )
        == 80.5
    )
    page = (sweep / "report.html").read_text()
    assert "<h2>GLUE</h2>" in page and "<td>80.5</td>" in page
