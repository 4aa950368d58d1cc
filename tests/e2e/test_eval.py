"""`bertlab-eval`: a fine-tuned checkpoint scored without training reproduces its run's numbers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from bertlab.cli.eval import evaluate
from bertlab.cli.train import train
from bertlab.errors import CheckpointError, ConfigError

from support.data import generated_squad, write_glue_task, write_squad
from support.runs import CONF_DIR, TINY_MODEL, compose_train_config

SMALL = [
    *TINY_MODEL,
    "tokenizer.vocab_size=120",
    "tokenizer.min_frequency=1",
    "callbacks.progress_bar=null",
    "callbacks.lr_monitor=null",
    "+trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "task.batch_size=8",
]


def config(tmp_path: Path, run: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(
            "train",
            overrides=[
                f"run_dir={tmp_path / run}",
                f"cache_dir={tmp_path / 'cache'}",
                *SMALL,
                *overrides,
            ],
        )


def validation_rows(run_dir: Path) -> list[dict[str, float]]:
    """The validation rows of the run's metrics.csv (one per validation)."""
    with (run_dir / "csv" / "metrics.csv").open() as file:
        rows = [
            {k: float(v) for k, v in row.items() if k.startswith("val") and v}
            for row in csv.DictReader(file)
        ]
    return [row for row in rows if row]


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory) -> Path:
    """A three-epoch MRPC fine-tune whose best epoch is not necessarily its last."""
    tmp_path = tmp_path_factory.mktemp("eval")
    data = write_glue_task(tmp_path / "MRPC", "mrpc", train=48, dev=16, test=5)
    cfg = config(
        tmp_path,
        "train",
        "task=glue/mrpc",
        f"task.data_dir={data}",
        "trainer.max_epochs=3",
        "optimizer.lr=3e-3",
    )
    train(cfg)
    return tmp_path


def test_evaluating_best_ckpt_reproduces_the_runs_best_validation(fine_tuned: Path) -> None:
    trained = json.loads((fine_tuned / "train" / "results.json").read_text())
    rows = validation_rows(fine_tuned / "train")
    best = max(rows, key=lambda row: row["val/accuracy"])  # first of the ties, as ModelCheckpoint
    cfg = config(
        fine_tuned,
        "eval",
        "task=glue/mrpc",
        f"task.data_dir={fine_tuned / 'MRPC'}",
        f"model.init={trained['best_checkpoint']}",
        "task.predict_test=true",
    )
    results = evaluate(cfg, overrides=["task=glue/mrpc"])
    assert results == json.loads((fine_tuned / "eval" / "results.json").read_text())
    assert results["task"] == "glue/mrpc" and results["steps"] == 0
    for name, value in best.items():
        assert results["metrics"][name] == value, name  # exactly
    assert (
        results["metrics"]["val/majority_accuracy"] == trained["metrics"]["val/majority_accuracy"]
    )
    predictions = (fine_tuned / "eval" / "MRPC.tsv").read_text().splitlines()
    assert predictions[0] == "index\tprediction" and len(predictions) == 6
    assert not (fine_tuned / "eval" / "checkpoints" / "best.ckpt").exists()


def test_evaluation_needs_a_checkpoint_with_the_task_head(fine_tuned: Path, tmp_path) -> None:
    cfg = config(tmp_path, "eval", "task=glue/mrpc", f"task.data_dir={fine_tuned / 'MRPC'}")
    with pytest.raises(ConfigError, match="model.init is not set"):
        evaluate(cfg)
    pretrained = tmp_path / "encoder.ckpt"
    import torch

    checkpoint = torch.load(
        fine_tuned / "train" / "checkpoints" / "best.ckpt", weights_only=True, map_location="cpu"
    )
    checkpoint["state_dict"] = {
        k: v for k, v in checkpoint["state_dict"].items() if "classifier" not in k
    }
    torch.save(checkpoint, pretrained)
    cfg = config(
        tmp_path,
        "eval",
        "task=glue/mrpc",
        f"task.data_dir={fine_tuned / 'MRPC'}",
        f"model.init={pretrained}",
    )
    with pytest.raises(CheckpointError, match="has no weights for model.*classifier|classifier"):
        evaluate(cfg)


def test_squad_evaluation_writes_the_official_files_and_scores(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_squad(data, "train-v2.0.json", generated_squad(24, 0, unanswerable=0.4))
    write_squad(data, "dev-v2.0.json", generated_squad(12, 1, unanswerable=0.4))
    squad = [
        "task=squad/v2", f"task.data_dir={data}", "task.max_seq_length=48", "task.doc_stride=16",
        "task.max_query_length=8", "task.batch_size=8", "tokenizer.vocab_size=200",
        "~callbacks.progress_bar", "trainer.enable_model_summary=false",
    ]  # fmt: skip
    train(compose_train_config([*squad, "trainer.max_steps=2"], tmp_path / "train"))
    trained = json.loads((tmp_path / "train" / "run" / "results.json").read_text())
    checkpoint = tmp_path / "train" / "run" / "checkpoints" / "last.ckpt"
    results = evaluate(
        compose_train_config([*squad, f"model.init={checkpoint}"], tmp_path / "eval")
    )
    run_dir = tmp_path / "eval" / "run"
    official = json.loads((run_dir / "squad_eval.json").read_text())
    assert results["metrics"]["val/f1"] == pytest.approx(official["f1"])
    assert (
        results["metrics"]["val/f1"] == trained["metrics"]["val/f1"]
    )  # last.ckpt = the final weights
    for name in ("predictions.json", "nbest_predictions.json", "null_odds.json"):
        assert (run_dir / name).exists(), name
