"""bertlab-predict --runtime onnx: the torch path's outputs within 1e-4, int8, clear errors.

A tiny SST-2 classifier is fine-tuned by bertlab-train on generated GLUE files (a learnable
rule, so int8's label agreement is measured on a model with real decision margins);
regression and QA checkpoints are tiny task modules with perturbed random weights, saved
as training saves them (the numerical path is the same).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from bertlab.checkpoints.export import export
from bertlab.checkpoints.hf import hf_model_config
from bertlab.checkpoints.restore import load_module
from bertlab.cli import predict
from bertlab.cli.train import train
from bertlab.errors import CheckpointError, ConfigError, UserError
from bertlab.inference import onnx_runtime
from bertlab.inference.batches import SentenceEncoder
from bertlab.inference.task_model import CLASSIFICATION, torch_task_model
from bertlab.tasks.classify import ClassificationModule
from bertlab.tasks.qa import QuestionAnsweringModule
from bertlab.tokenizer import train_wordpiece

from support.data import WORDS
from support.models import save_module_checkpoint
from support.runs import compose_config

pytest.importorskip("onnxruntime")

TINY_MODEL = {
    "num_layers": 2,
    "hidden_size": 32,
    "num_heads": 4,
    "intermediate_size": 37,
    "max_position_embeddings": 64,
}
POSITIVE = {"summer", "music", "garden", "meadow"}  # the generated task's rule
CONTEXT = (
    "The river runs under the stone bridge. A silver lantern hangs in the harbor every winter "
    "morning, and the orchard behind the castle turns yellow in summer."
)
QUESTIONS = [
    {"id": "a", "question": "where does the river run", "context": CONTEXT},
    {"id": "b", "question": "what hangs in the harbor", "context": CONTEXT * 3},  # several windows
]


def sentences(count: int, seed: int) -> list[tuple[str, str]]:
    """(sentence, label): 1 when a word of POSITIVE occurs."""
    rng = random.Random(seed)
    neutral = [word for word in WORDS if word not in POSITIVE]
    rows = []
    for row in range(count):
        words = rng.sample(neutral, rng.randint(3, 9))
        label = row % 2
        if label:
            words.insert(rng.randrange(len(words)), rng.choice(sorted(POSITIVE)))
        rows.append((" ".join(words), str(label)))
    return rows


def write_sst2(directory: Path) -> Path:
    """train.tsv, dev.tsv (sentence, label) and test.tsv (index, sentence) as GLUE has them."""
    directory.mkdir(parents=True)
    for name, count, seed in (("train", 256, 0), ("dev", 64, 1)):
        with open(directory / f"{name}.tsv", "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out, delimiter="\t", lineterminator="\n")
            writer.writerows([("sentence", "label"), *sentences(count, seed)])
    with open(directory / "test.tsv", "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, delimiter="\t", lineterminator="\n")
        writer.writerows([("index", "sentence"), *enumerate(s for s, _ in sentences(8, 2))])
    return directory


def perturbed(module, seed: int):
    """Random non-zero biases and non-unit LayerNorms, as a trained model has."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return module


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Exports of .ckpt files go to a per-module cache, not the user's."""
    directory = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BERTLAB_CACHE", str(directory))
        yield directory


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, cache) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("onnx-runtime")
    data = write_sst2(directory / "SST-2")
    cfg = compose_config(
        [
            "task=glue/sst2",
            f"task.data_dir={data}",
            *(f"model.{key}={value}" for key, value in TINY_MODEL.items()),
            "task.batch_size=16",
            "task.max_seq_length=32",
            "optimizer.lr=3e-3",
            "trainer.max_steps=250",
            "trainer.max_epochs=20",
            "trainer.enable_model_summary=false",
            "~callbacks.progress_bar",
        ],
        directory / "run",
        directory / "train-cache",
    )
    train(cfg)
    results = json.loads((directory / "run" / "results.json").read_text())
    assert results["metrics"]["val/accuracy"] >= 0.9  # it learned the rule
    paths = {"classification": Path(results["last_checkpoint"])}

    tokenizer = train_wordpiece(
        [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))], 120, min_frequency=1
    )
    settings = {"model": TINY_MODEL, "optimizer": {}, "vocab_size": tokenizer.get_vocab_size()}
    torch.manual_seed(1)
    regression = ClassificationModule(
        **settings, num_labels=1, regression=True, metrics=["pearson"]
    )
    paths["regression"] = save_module_checkpoint(
        perturbed(regression, 1), tokenizer, directory / "regression.ckpt"
    )
    torch.manual_seed(2)
    qa = QuestionAnsweringModule(**settings, max_seq_length=48)
    paths["qa"] = save_module_checkpoint(perturbed(qa, 2), tokenizer, directory / "qa.ckpt")
    return paths


def write_json_lines(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def read_json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def sentence_rows(count: int = 24, seed: int = 3) -> list[dict]:
    rows = [{"id": i, "text": text} for i, (text, _) in enumerate(sentences(count, seed))]
    rows[1]["text_pair"] = "river stone"  # a pair among single sentences
    return rows


def run_predict(model: Path | str, rows: list[dict], tmp_path: Path, *options: str) -> list[dict]:
    source = write_json_lines(tmp_path / "in.jsonl", rows)
    out = tmp_path / f"out-{len(list(tmp_path.iterdir()))}.jsonl"
    predict.main([str(model), str(source), "--out", str(out), *options])
    return read_json_lines(out)


def assert_same_outputs(torch_rows: list[dict], onnx_rows: list[dict], tolerance: float) -> None:
    """Same keys, the same strings (labels, answers), numbers within `tolerance`."""
    for ours, theirs in zip(torch_rows, onnx_rows, strict=True):
        assert set(ours) == set(theirs)
        for key, value in ours.items():
            if isinstance(value, (float, list)):
                np.testing.assert_allclose(theirs[key], value, atol=tolerance, rtol=0)
            else:
                assert theirs[key] == value, key


# ---- equal outputs --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["classification", "regression", "qa"])
def test_onnx_runtime_equals_the_torch_path(checkpoints, tmp_path: Path, kind: str) -> None:
    rows = QUESTIONS if kind == "qa" else sentence_rows()
    options = ["--batch-size", "5"] + ([] if kind == "qa" else ["--logits"])
    from_torch = run_predict(checkpoints[kind], rows, tmp_path, *options)
    from_checkpoint = run_predict(checkpoints[kind], rows, tmp_path, *options, "--runtime", "onnx")
    assert_same_outputs(from_torch, from_checkpoint, 1e-4)
    if kind == "qa":
        assert all(row["answer"] and row["answer"] in row["context"] for row in from_torch)
    if kind == "classification":
        assert {row["label"] for row in from_torch} == {"0", "1"}

    # An exported directory gives the same, decoded from its config.json (a QA directory
    # does not record the training window: pass it, as for a Hugging Face directory).
    export(checkpoints[kind], "onnx", tmp_path / "exported")
    window = ["--max-length", "48"] if kind == "qa" else []
    from_directory = run_predict(
        tmp_path / "exported", rows, tmp_path, *options, *window, "--runtime", "onnx"
    )
    assert_same_outputs(from_torch, from_directory, 1e-4)


def test_the_optimizer_graph_equals_torch_and_runs_when_it_fused_attention(
    checkpoints, tmp_path: Path, caplog
) -> None:
    export(checkpoints["classification"], "onnx", tmp_path / "exported")
    model_file = tmp_path / "exported" / "model.onnx"
    config = hf_model_config(tmp_path / "exported")
    fused_file, report = onnx_runtime.optimizer_graph(model_file, config)
    assert report["fused"]["SkipLayerNormalization"] == 2 * TINY_MODEL["num_layers"]

    module, tokenizer = load_module(checkpoints["classification"])
    batch, _ = SentenceEncoder(tokenizer, 64)(sentence_rows())
    session = onnx_runtime.new_session(fused_file, threads=1)
    fused_logits = onnx_runtime.session_forward(session, CLASSIFICATION)(batch)
    torch_logits = torch_task_model(module).forward(batch)
    torch.testing.assert_close(fused_logits, torch_logits, atol=1e-4, rtol=0)

    with caplog.at_level("INFO", logger="bertlab"):
        chosen = onnx_runtime.fused_graph(model_file, config)
    if onnx_runtime.ATTENTION_OPERATORS & set(report["fused"]):
        assert chosen == fused_file
    else:  # bertlab's export today: the exported graph runs, and the log says why
        assert chosen == model_file
        assert "fused no attention" in caplog.text and "running the exported graph" in caplog.text


def test_no_fusion_skips_the_optimizer(checkpoints, tmp_path: Path, monkeypatch) -> None:
    def unexpected(*args, **kwargs):
        raise AssertionError("the optimizer ran")

    monkeypatch.setattr("onnxruntime.transformers.optimizer.optimize_model", unexpected)
    monkeypatch.setenv("BERTLAB_CACHE", str(tmp_path / "cache"))
    rows = sentence_rows(4)
    expected = run_predict(checkpoints["regression"], rows, tmp_path)
    got = run_predict(checkpoints["regression"], rows, tmp_path, "--runtime", "onnx", "--no-fusion")
    assert_same_outputs(expected, got, 1e-4)


def test_a_failing_optimizer_falls_back_to_the_exported_graph(
    checkpoints, tmp_path: Path, monkeypatch, caplog
) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("pattern mismatch\nsecond line")

    monkeypatch.setattr("onnxruntime.transformers.optimizer.optimize_model", broken)
    monkeypatch.setenv("BERTLAB_CACHE", str(tmp_path / "cache"))  # a fresh cache
    rows = sentence_rows(6)
    expected = run_predict(checkpoints["classification"], rows, tmp_path, "--logits")
    with caplog.at_level("WARNING", logger="bertlab"):
        got = run_predict(
            checkpoints["classification"], rows, tmp_path, "--logits", "--runtime", "onnx"
        )
    assert_same_outputs(expected, got, 1e-4)
    (note,) = [r.getMessage() for r in caplog.records if "transformer optimizer" in r.message]
    assert "RuntimeError: pattern mismatch" in note and "running the exported graph" in note


# ---- int8 -----------------------------------------------------------------------------------


def test_int8_keeps_most_labels(checkpoints, tmp_path: Path) -> None:
    rows = sentence_rows(64, seed=4)
    fp32 = run_predict(checkpoints["classification"], rows, tmp_path, "--runtime", "onnx")
    int8 = run_predict(
        checkpoints["classification"], rows, tmp_path, "--runtime", "onnx", "--quantize", "int8"
    )
    agreement = np.mean([a["label"] == b["label"] for a, b in zip(fp32, int8, strict=True)])
    assert agreement >= 0.95
    probability_change = np.abs(
        np.array([row["probs"] for row in fp32]) - np.array([row["probs"] for row in int8])
    ).max()
    assert 0 < probability_change < 0.1  # quantized (not the fp32 graph), and close

    # The export option writes the same int8 graph: its outputs equal --quantize int8's.
    export(checkpoints["classification"], "onnx", tmp_path / "int8", quantize="int8")
    assert onnx_runtime.is_quantized(tmp_path / "int8" / "model.onnx")
    exported = run_predict(tmp_path / "int8", rows, tmp_path, "--runtime", "onnx")
    assert_same_outputs(int8, exported, 1e-5)


def test_quantize_is_an_onnx_option(checkpoints, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_predict(checkpoints["classification"], sentence_rows(2), tmp_path, "--quantize", "int8")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: --quantize int8: an option of --runtime onnx"
    )
    with pytest.raises(ConfigError, match="quantize=int8: only format=onnx quantizes"):
        export(checkpoints["classification"], "torchscript", tmp_path / "ts", quantize="int8")


# ---- errors ---------------------------------------------------------------------------------


def test_a_directory_without_model_onnx_is_one_line(checkpoints, tmp_path: Path, capsys) -> None:
    export(checkpoints["classification"], "hf", tmp_path / "hf")
    with pytest.raises(SystemExit) as exit_info:
        run_predict(tmp_path / "hf", sentence_rows(2), tmp_path, "--runtime", "onnx")
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error.startswith(f"error: {tmp_path / 'hf'}: no model.onnx; --runtime onnx takes")


def test_missing_onnxruntime_is_a_user_error(checkpoints, tmp_path: Path, monkeypatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "onnxruntime" else real_find_spec(name, *args),
    )
    with pytest.raises(
        UserError, match=r"^onnxruntime is not installed: pip install 'bertlab\[onnx\]'"
    ):
        onnx_runtime.load_onnx_task_model(checkpoints["classification"])


def test_a_corrupt_model_file_is_a_checkpoint_error(checkpoints, tmp_path: Path) -> None:
    export(checkpoints["regression"], "onnx", tmp_path / "exported")
    (tmp_path / "exported" / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(CheckpointError, match="ONNX Runtime cannot load it"):
        onnx_runtime.load_onnx_task_model(tmp_path / "exported", fuse=False)
