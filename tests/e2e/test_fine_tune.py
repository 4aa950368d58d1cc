"""Fine-tunes through bertlab-train: every classification task, a learnable one to high accuracy,
pretrain then fine-tune, a Hugging Face directory fine-tuned and exported again.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from bertlab.checkpoints.export import export
from bertlab.checkpoints.restore import load_module
from bertlab.cli.train import train
from bertlab.tasks.classify import ClassificationModule

from support.data import (
    GLUE_LABELS,
    GLUE_TEST_FILES,
    glue_rows,
    keyword_pair,
    write_custom,
    write_glue_task,
    write_imdb,
    write_snli,
    write_xnli,
)
from support.models import BERTLAB_MODEL, encode_pairs, run_onnx, save_hf_model, tiny_tokenizer
from support.runs import FAST_PRETRAINING, run_task

GLUE_REPORTED = {
    "cola": ["val/matthews_corrcoef"],
    "sst2": ["val/accuracy"],
    "mrpc": ["val/accuracy", "val/f1"],
    "stsb": ["val/pearson", "val/spearman"],
    "qqp": ["val/accuracy", "val/f1"],
    "mnli": ["val_matched/accuracy", "val_mismatched/accuracy"],
    "qnli": ["val/accuracy"],
    "rte": ["val/accuracy"],
    "wnli": ["val/accuracy"],
}


@pytest.mark.parametrize("task", sorted(GLUE_REPORTED))
def test_every_glue_task_fine_tunes_and_writes_its_submission_files(
    tmp_path: Path, task: str
) -> None:
    write_glue_task(tmp_path / "data", task, train=24, dev=8, test=5)
    results = run_task(
        tmp_path, f"glue/{task}", tmp_path / "data", "trainer.max_steps=2", "task.predict_test=true"
    )
    for name in GLUE_REPORTED[task]:
        assert math.isfinite(results["metrics"][name]), name
    for stem in GLUE_TEST_FILES[task]:
        lines = (tmp_path / "run" / f"{stem}.tsv").read_text().splitlines()
        assert lines[0] == "index\tprediction" and len(lines) == 6
        assert [line.split("\t")[0] for line in lines[1:]] == ["0", "1", "2", "3", "4"]
        labels = GLUE_LABELS[task]
        for line in lines[1:]:
            value = line.split("\t")[1]
            assert value in labels if labels else float(value) == float(value)


@pytest.mark.parametrize("task", ["snli", "xnli", "imdb", "custom_csv", "custom_jsonl"])
def test_other_tasks_fine_tune_and_report_accuracy(tmp_path: Path, task: str) -> None:
    data = tmp_path / "data"
    overrides = ["trainer.max_steps=2"]
    if task == "snli":
        write_snli(data, {"train": 20, "dev": 10})
    elif task == "xnli":
        write_xnli(data, language="de", train=20, dev=6)
        overrides.append("task.language=de")
    elif task == "imdb":
        write_imdb(data, per_label=6)
    else:
        suffix = task.split("_")[1]
        rows = [(keyword_pair(i % 2, i)[0], ["neg", "pos"][i % 2]) for i in range(20)]
        write_custom(data, suffix, f"train.{suffix}", rows)
        write_custom(data, suffix, f"dev.{suffix}", rows[:8])
        overrides += [f"task.train_file=train.{suffix}", f"task.val_files.val=dev.{suffix}"]
        overrides += ["task.text_columns=[review]", "task.label_column=stars"]
    results = run_task(tmp_path, task.split("_")[0], data, *overrides)
    assert 0.0 <= results["metrics"]["val/accuracy"] <= 1.0
    assert "val/majority_accuracy" in results["metrics"]


def test_a_learnable_task_reaches_high_accuracy_and_reloads_from_its_checkpoint(
    tmp_path: Path,
) -> None:
    write_glue_task(tmp_path / "data", "sst2", train=200, dev=40, test=10)
    results = run_task(
        tmp_path, "glue/sst2", tmp_path / "data", "trainer.max_epochs=3", "task.predict_test=true"
    )
    assert results["metrics"]["val/accuracy"] >= 0.9
    predictions = (tmp_path / "run" / "SST-2.tsv").read_text().splitlines()[1:]
    assert [line.split("\t")[1] for line in predictions] == [
        label for label, _, _ in glue_rows("sst2", 10)
    ]
    module = ClassificationModule.load_from_checkpoint(
        results["last_checkpoint"], map_location="cpu"
    )
    assert module.hparams.label_names == ["0", "1"] and module.hparams.val_splits == ["val"]


# ---- the chain: pretrain, then fine-tune from that checkpoint ----------------------------------


@pytest.mark.slow
def test_pretrain_then_fine_tune_from_the_checkpoint(
    make_config, corpus_file, tmp_path: Path
) -> None:
    train(make_config(*FAST_PRETRAINING, f"task.corpus={corpus_file}", "trainer.max_steps=10"))
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    pretrained = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    write_glue_task(tmp_path / "SST-2", "sst2", train=200, dev=40, test=10)
    cfg = make_config(
        "task=glue/sst2",
        f"task.data_dir={tmp_path / 'SST-2'}",
        f"model.init={checkpoint}",
        "task.batch_size=16",
        "task.predict_test=true",
        "optimizer.lr=1e-3",
        "trainer.enable_model_summary=false",
        "~callbacks.progress_bar",
        run_dir=tmp_path / "fine",
    )
    train(cfg)
    results = json.loads((tmp_path / "fine" / "results.json").read_text())
    assert results["metrics"]["val/accuracy"] >= 0.9
    assert (tmp_path / "fine" / "SST-2.tsv").exists()
    fine_tuned = torch.load(results["last_checkpoint"], map_location="cpu", weights_only=True)[
        "state_dict"
    ]
    # starts from, then moves away from, pretraining
    name = "model.bert.embeddings.position_embeddings.weight"
    assert fine_tuned[name].shape == pretrained[name].shape
    assert torch.allclose(fine_tuned[name], pretrained[name], atol=0.05)


def test_results_count_the_skipped_rows_on_every_run(tmp_path: Path) -> None:
    """QQP's malformed rows: counted in results.json by the run that reads them and by a rerun
    that takes the tokenized splits from the cache (issue 15)."""
    write_glue_task(tmp_path / "data", "qqp", train=24, dev=8, test=2)
    with open(tmp_path / "data" / "train.tsv", "a", encoding="utf-8") as out:
        out.write("363362\t493340\t493341\tHow do I ask a question\n")
    expected = {"examples": 24, "skipped_malformed_rows": 1, "dropped_rows_by_label": {}}
    for run in ("first", "cached"):
        results = run_task(tmp_path, "glue/qqp", tmp_path / "data", "trainer.max_steps=1")
        assert results["data"]["train"] == expected, run
        assert results["data"]["val"]["skipped_malformed_rows"] == 0, run


transformers = pytest.importorskip("transformers")


# ---- a Hugging Face directory through model.init, fine-tuning and export again -------------------


def test_hf_directory_fine_tunes_and_exports(make_config, tmp_path: Path) -> None:
    tokenizer = tiny_tokenizer()
    pretrained = save_hf_model(tmp_path / "hf", "BertForPreTraining", tokenizer)
    write_glue_task(tmp_path / "SST-2", "sst2", train=24, dev=8, test=4)
    cfg = make_config(
        "task=glue/sst2",
        f"task.data_dir={tmp_path / 'SST-2'}",
        f"model.init={tmp_path / 'hf'}",
        # The same values config.json holds: spelled out, a changed one would be an error.
        *(f"model.{key}={value}" for key, value in BERTLAB_MODEL.items()),
        "task.batch_size=8",
        "task.max_seq_length=32",
        "trainer.max_steps=3",
        "trainer.max_epochs=1",
        "trainer.enable_model_summary=false",
        "~callbacks.progress_bar",
        run_dir=tmp_path / "run",
    )
    train(cfg)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["steps"] == 3
    checkpoint = results["last_checkpoint"]
    module, _ = load_module(checkpoint)
    start = pretrained.bert.embeddings.word_embeddings.weight
    tuned = module.model.bert.embeddings.word_embeddings.weight
    assert torch.allclose(tuned, start, atol=1e-2)  # began from the Hugging Face weights

    export(checkpoint, "hf", tmp_path / "exported")
    reloaded = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "exported")
    assert reloaded.config.id2label == {0: "0", 1: "1"}
    batch = encode_pairs(tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(
            reloaded.eval()(**batch).logits, module.model(**batch), atol=1e-5, rtol=0
        )
        expected = module.model(**batch)
    if importlib.util.find_spec("onnxruntime"):
        export(checkpoint, "onnx", tmp_path / "onnx")
        (logits,) = run_onnx(tmp_path / "onnx" / "model.onnx")(batch)
        torch.testing.assert_close(torch.as_tensor(logits), expected, atol=1e-4, rtol=0)
