"""`--precision bf16` of bertlab-predict and bertlab-embed: autocast's numbers, float32 out."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bertlab.cli import embed, predict
from bertlab.inference.precision import for_precision, native_bf16_note
from bertlab.inference.task_model import torch_task_model

from support.models import PAIRS, build_module, encode_pairs, perturb, tiny_tokenizer


def write_pairs(path: Path) -> Path:
    rows = [{"text": a, "text_pair": b} for a, b in PAIRS]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def read_json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("kind", ["classification", "regression", "qa"])
def test_bf16_outputs_are_autocasts_to_the_last_bit(kind) -> None:
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    module = perturb(build_module(kind, tokenizer.get_vocab_size())).eval()
    batch = encode_pairs(tokenizer)
    inputs = (batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = copy.deepcopy(module).model(*inputs)  # float32 weights, cast on each call
    outputs = torch_task_model(module, "bf16").forward(batch)
    if kind == "regression":
        expected = expected.squeeze(-1)
    pairs = zip(outputs, expected, strict=True) if kind == "qa" else [(outputs, expected)]
    for got, want in pairs:
        assert got.dtype == torch.float32
        assert torch.equal(got, want.float())
    query = module.model.bert.encoder.layer[0].attention.self.query
    assert query.weight.dtype == torch.bfloat16  # cast once, not on every call


def test_a_tied_decoder_leaves_the_embedding_table_float32() -> None:
    module = build_module("pretraining", 50)
    model = for_precision(module.model, "bf16")
    assert model.bert.embeddings.word_embeddings.weight.dtype == torch.float32
    assert model.bert.encoder.layer[0].attention.self.query.weight.dtype == torch.bfloat16


def test_predict_bf16_is_close_to_fp32_and_onnx_refuses_it(checkpoints, tmp_path, capsys) -> None:
    source = write_pairs(tmp_path / "in.jsonl")
    for precision in ("fp32", "bf16"):
        predict.main(
            [str(checkpoints["classification"]), str(source), "--logits"]
            + ["--precision", precision, "--out", str(tmp_path / precision)]
        )
    fp32, bf16 = read_json_lines(tmp_path / "fp32"), read_json_lines(tmp_path / "bf16")
    logits = np.asarray([row["logits"] for row in fp32])
    np.testing.assert_allclose(
        [row["logits"] for row in bf16], logits, atol=3e-2 * np.abs(logits).max()
    )
    assert not np.allclose([row["logits"] for row in bf16], logits, atol=1e-6)  # it is bf16
    for row in bf16:
        assert sum(row["probs"]) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(SystemExit) as exit_info:
        predict.main(
            [str(checkpoints["classification"]), str(source), "--runtime", "onnx"]
            + ["--precision", "bf16"]
        )
    assert exit_info.value.code == 2
    assert "--precision bf16: an option of --runtime torch" in capsys.readouterr().err


def test_embed_bf16_vectors_are_close_to_fp32(checkpoints, tmp_path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("river stone\ncandle forest bridge silver\n", encoding="utf-8")
    for precision in ("fp32", "bf16"):
        embed.main(
            [str(checkpoints["pretraining"]), str(source), "--precision", precision]
            + ["--format", "npy", "--out", str(tmp_path / f"{precision}.npy")]
        )
    fp32, bf16 = np.load(tmp_path / "fp32.npy"), np.load(tmp_path / "bf16.npy")
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    np.testing.assert_allclose(bf16, fp32, atol=3e-2 * np.abs(fp32).max())
    assert not np.allclose(bf16, fp32, atol=1e-6)


def test_the_note_names_emulated_bf16_only_where_the_flags_say_so() -> None:
    assert "emulated" in native_bf16_note("bf16", flags="fpu sse avx2 avx512f")
    assert native_bf16_note("bf16", flags="avx512f amx_bf16 amx_tile") is None
    assert native_bf16_note("bf16", flags="avx512f avx512_bf16") is None
    assert native_bf16_note("fp32", flags="fpu sse") is None
    assert native_bf16_note("bf16", flags="") is None  # unknown (not Linux): say nothing


def test_an_unknown_precision_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="fp32, bf16"):
        for_precision(nn.Linear(2, 2), "fp16")
