"""bertlab-export: Hugging Face directories that transformers loads, ONNX and TorchScript parity,
and a Hugging Face directory fine-tuned through `model.init` and exported again."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from test_hf import (
    BERTLAB_MODEL,
    PAIRS,
    encode_pairs,
    perturb,
    save_hf_model,
    save_module_checkpoint,
    tiny_tokenizer,
)
from test_readers import write_glue_task

from bertlab.checkpoints.export import export
from bertlab.checkpoints.restore import load_module
from bertlab.cli.export import main
from bertlab.cli.train import train
from bertlab.tasks.classify import ClassificationModule
from bertlab.tasks.pretrain import PretrainingModule
from bertlab.tasks.qa import QuestionAnsweringModule

transformers = pytest.importorskip("transformers")

LABELS = ["negative", "neutral", "positive"]


def build_module(kind: str, vocab_size: int):
    settings = {"model": BERTLAB_MODEL, "optimizer": {}, "vocab_size": vocab_size}
    if kind == "classification":
        return ClassificationModule(**settings, num_labels=3, label_names=LABELS)
    if kind == "regression":
        return ClassificationModule(**settings, num_labels=1, regression=True, metrics=["pearson"])
    if kind == "qa":
        return QuestionAnsweringModule(**settings, max_seq_length=48)
    return PretrainingModule(**settings)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Tiny random checkpoints of every task family, saved as training saves them."""
    directory = tmp_path_factory.mktemp("checkpoints")
    tokenizer = tiny_tokenizer()
    paths = {}
    for seed, kind in enumerate(("classification", "regression", "qa", "pretraining")):
        torch.manual_seed(seed)
        module = perturb(build_module(kind, tokenizer.get_vocab_size()), seed)
        paths[kind] = save_module_checkpoint(module, tokenizer, directory / f"{kind}.ckpt")
    return paths


def bertlab_outputs(module, batch: dict) -> tuple[torch.Tensor, ...]:
    """What the deployed model returns: logits, regression scores (B,), or start + end logits."""
    with torch.no_grad():
        outputs = module.model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    if isinstance(outputs, tuple):
        return outputs
    return (outputs.squeeze(-1),) if module.hparams.get("regression") else (outputs,)


# ---- format=hf ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["classification", "regression", "qa", "pretraining"])
def test_hf_export_loads_in_transformers_with_the_same_outputs(
    checkpoints, tmp_path: Path, kind: str
) -> None:
    out = tmp_path / "hf"
    export(checkpoints[kind], "hf", out)
    assert {"config.json", "model.safetensors", "tokenizer.json", "vocab.txt"} <= {
        p.name for p in out.iterdir()
    }
    config = transformers.AutoConfig.from_pretrained(out)
    model_class = getattr(transformers, config.architectures[0])
    reference, loading = model_class.from_pretrained(out, output_loading_info=True)
    assert not loading["missing_keys"]
    assert not loading["unexpected_keys"]

    module, tokenizer = load_module(checkpoints[kind])
    theirs = transformers.AutoTokenizer.from_pretrained(out)
    batch = encode_pairs(tokenizer)
    expected = theirs(
        [a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True, return_tensors="pt"
    )
    assert torch.equal(batch["input_ids"], expected["input_ids"])
    assert torch.equal(batch["token_type_ids"], expected["token_type_ids"])

    with torch.no_grad():
        outputs = reference.eval()(**batch)
    real = batch["attention_mask"].bool()
    if kind == "pretraining":
        with torch.no_grad():
            mlm_logits, nsp_logits = module.model(**batch)
        torch.testing.assert_close(
            mlm_logits[real], outputs.prediction_logits[real], atol=1e-5, rtol=0
        )
        torch.testing.assert_close(nsp_logits, outputs.seq_relationship_logits, atol=1e-5, rtol=0)
    elif kind == "qa":
        start_logits, end_logits = bertlab_outputs(module, batch)
        torch.testing.assert_close(
            start_logits[real], outputs.start_logits[real], atol=1e-5, rtol=0
        )
        torch.testing.assert_close(end_logits[real], outputs.end_logits[real], atol=1e-5, rtol=0)
    else:
        (ours,) = bertlab_outputs(module, batch)
        torch.testing.assert_close(ours, outputs.logits.squeeze(-1), atol=1e-5, rtol=0)


def test_hf_export_of_a_classifier_names_its_labels(checkpoints, tmp_path: Path) -> None:
    export(checkpoints["classification"], "hf", tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    assert config["label2id"] == {"negative": 0, "neutral": 1, "positive": 2}
    loaded = transformers.AutoConfig.from_pretrained(tmp_path)
    assert loaded.num_labels == 3 and loaded.id2label[2] == "positive"
    tokenizer_config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert tokenizer_config["do_lower_case"] is True
    assert tokenizer_config["model_max_length"] == BERTLAB_MODEL["max_position_embeddings"]


# ---- ONNX and TorchScript ---------------------------------------------------------------------


def serving_batches(vocab_size: int, max_length: int) -> list[dict[str, torch.Tensor]]:
    """Batch sizes 1 and 7 at a short and the longest sequence, the 7-row ones padded."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for batch_size in (1, 7):
        for length in (9, max_length):
            input_ids = torch.randint(5, vocab_size, (batch_size, length), generator=generator)
            lengths = torch.randint(3, length + 1, (batch_size,), generator=generator)
            lengths[0] = length
            attention_mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
            token_type_ids = (torch.arange(length)[None, :] >= lengths[:, None] // 2).long()
            batches.append(
                {
                    "input_ids": input_ids * attention_mask,
                    "token_type_ids": token_type_ids * attention_mask,
                    "attention_mask": attention_mask,
                }
            )
    return batches


def run_onnx(path: Path):
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(batch: dict) -> list:
        return session.run(None, {name: tensor.numpy() for name, tensor in batch.items()})

    return run


def run_torchscript(path: Path):
    traced = torch.jit.load(str(path))

    def run(batch: dict) -> list:
        with torch.no_grad():
            outputs = traced(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        return list(outputs) if isinstance(outputs, tuple) else [outputs]

    return run


@pytest.mark.parametrize("kind", ["classification", "regression", "qa"])
@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_onnx_and_torchscript_match_pytorch(checkpoints, tmp_path: Path, kind, format) -> None:
    if format == "onnx":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
    path = export(checkpoints[kind], format, tmp_path)
    run = run_onnx(path) if format == "onnx" else run_torchscript(path)
    module, tokenizer = load_module(checkpoints[kind])
    max_length = module.model.config.max_position_embeddings
    for batch in serving_batches(tokenizer.get_vocab_size(), max_length):
        expected = bertlab_outputs(module, batch)
        actual = run(batch)
        assert len(actual) == len(expected)
        for ours, theirs in zip(expected, actual, strict=True):
            torch.testing.assert_close(torch.as_tensor(theirs), ours, atol=1e-4, rtol=0)


def test_pretraining_checkpoints_export_to_hf_only(checkpoints, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(checkpoints["pretraining"]), "format=torchscript", f"out={tmp_path}"])
    assert exit_info.value.code == 2
    assert "PretrainingModule checkpoint: format=onnx and format=torchscript export" in (
        capsys.readouterr().err
    )


def test_export_settings_are_checked(checkpoints, tmp_path: Path, capsys) -> None:
    for arguments, message in (
        (["format=hf"], "usage: bertlab-export CKPT"),
        ([str(checkpoints["qa"]), "format=hf"], "missing out="),
        ([str(checkpoints["qa"]), "format=tflite", "out=x"], "format=tflite: choose one of hf"),
        ([str(checkpoints["qa"]), "format=hf", "out=x", "dtype=fp16"], "dtype=fp16: unknown"),
    ):
        with pytest.raises(SystemExit):
            main(arguments)
        assert message in capsys.readouterr().err
    main([str(checkpoints["qa"]), "format=hf", f"out={tmp_path / 'qa'}"])
    assert f"wrote {tmp_path / 'qa' / 'model.safetensors'}" in capsys.readouterr().out


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
