"""bertlab-export's writers: Hugging Face directories that transformers loads, ONNX and TorchScript
parity.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bertlab.checkpoints.export import export
from bertlab.checkpoints.restore import load_module

from support.models import BERTLAB_MODEL, PAIRS, encode_pairs, run_onnx

transformers = pytest.importorskip("transformers")


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
