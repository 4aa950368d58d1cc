"""ModernBERT-family models fine-tuned through bertlab-train, exported and reloaded."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from bertlab.checkpoints.export import export
from bertlab.checkpoints.restore import load_module
from bertlab.cli.train import train
from bertlab.errors import CheckpointError
from bertlab.tasks.classify import ClassificationModule
from bertlab.tasks.qa import QuestionAnsweringModule

from support.data import generated_squad, write_glue_task, write_squad
from support.models import padded_batch
from support.runs import compose_train_config, run_task

transformers = pytest.importorskip("transformers")


# ---- fine-tuning a ModernBERT-family model through bertlab-train --------------------------------


def test_modernbert_tiny_fine_tunes_on_a_glue_task(tmp_path: Path) -> None:
    write_glue_task(tmp_path / "data", "mrpc", train=24, dev=8, test=5)
    results = run_task(
        tmp_path, "glue/mrpc", tmp_path / "data", "model=modernbert_tiny", "trainer.max_steps=3"
    )
    assert math.isfinite(results["metrics"]["val/accuracy"])
    module = ClassificationModule.load_from_checkpoint(results["last_checkpoint"])
    assert module.model.config.pooling == "mean" and module.model.config.type_vocab_size == 0
    assert "bert.pooler.LayerNorm.weight" in module.model.state_dict()

    # bertlab-export format=hf writes a ModernBERT directory: transformers loads it with the
    # same outputs, and bertlab-predict takes that directory as it takes the checkpoint.
    exported = tmp_path / "exported"
    export(results["last_checkpoint"], "hf", exported)
    theirs = transformers.ModernBertForSequenceClassification.from_pretrained(exported).eval()
    batch = padded_batch()
    batch["input_ids"] %= module.model.config.vocab_size  # this run's small vocabulary
    with torch.no_grad():
        mine = module.eval().model(batch["input_ids"], None, batch["attention_mask"])
        torch.testing.assert_close(theirs(**batch).logits, mine, atol=1e-5, rtol=0)
    restored, _ = load_module(str(exported))
    with torch.no_grad():
        again = restored.model(batch["input_ids"], None, batch["attention_mask"])
    torch.testing.assert_close(again, mine, atol=1e-6, rtol=0)
    assert restored.hparams.label_names == module.hparams.label_names


def test_export_refuses_hf_for_an_architecture_neither_family_has(tmp_path: Path) -> None:
    write_glue_task(tmp_path / "data", "mrpc", train=24, dev=8, test=5)
    neither = ["model.layer_norm_position=pre", "model.final_layer_norm=true"]  # absolute positions
    results = run_task(tmp_path, "glue/mrpc", tmp_path / "data", *neither, "trainer.max_steps=1")
    with pytest.raises(CheckpointError, match=r"format=hf: neither .*model\.layer_norm_position"):
        export(results["last_checkpoint"], "hf", tmp_path / "exported")
    export(results["last_checkpoint"], "onnx", tmp_path / "onnx")  # other formats still work
    assert (tmp_path / "onnx" / "model.onnx").is_file()


def test_modernbert_tiny_fine_tunes_on_squad(tmp_path: Path) -> None:
    write_squad(tmp_path / "data", "train-v1.1.json", generated_squad(24, 0))
    write_squad(tmp_path / "data", "dev-v1.1.json", generated_squad(8, 1))
    overrides = [
        "task=squad/v1", f"task.data_dir={tmp_path / 'data'}", "model=modernbert_tiny",
        "task.max_seq_length=48", "task.doc_stride=16", "task.max_query_length=8",
        "task.batch_size=8", "tokenizer.vocab_size=200", "trainer.max_steps=3",
        "~callbacks.progress_bar", "trainer.enable_model_summary=false",
    ]  # fmt: skip
    train(compose_train_config(overrides, tmp_path))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert math.isfinite(results["metrics"]["val/f1"])
    module = QuestionAnsweringModule.load_from_checkpoint(results["last_checkpoint"])
    assert hasattr(module.model, "qa_transform")  # ModernBertForQuestionAnswering's head
