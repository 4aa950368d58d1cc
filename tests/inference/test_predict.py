"""bertlab-predict and bertlab-embed: JSON Lines and text in, JSON Lines (or .npy) out, errors
named.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bertlab.checkpoints.export import export
from bertlab.checkpoints.restore import load_module
from bertlab.cli import embed, predict

from support.models import LABELS, PAIRS, save_hf_model, tiny_tokenizer, write_malicious_checkpoint

CONTEXT = (
    "The river runs under the stone bridge. A silver lantern hangs in the harbor every winter "
    "morning, and the orchard behind the castle turns yellow in summer."
)


def write_lines(path: Path, rows: list) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


PAIR_ROWS = [{"id": i, "text": a, "text_pair": b} for i, (a, b) in enumerate(PAIRS)]


# ---- classification and regression -----------------------------------------------------------


def test_classification_adds_label_and_probs_to_each_input(checkpoints, tmp_path: Path) -> None:
    singles = [{"text": "winter harbor"}, {"text": "quiet", "text_pair": None}]
    source = write_lines(tmp_path / "in.jsonl", [*PAIR_ROWS, *singles])
    predict.main([str(checkpoints["classification"]), str(source), "--out", str(tmp_path / "o")])
    rows = read_json_lines(tmp_path / "o")
    assert [row.get("id") for row in rows] == [0, 1, 2, None, None]
    assert rows[1]["text_pair"] == PAIRS[1][1]
    for row in rows:
        assert row["label"] in LABELS
        assert len(row["probs"]) == 3 and sum(row["probs"]) == pytest.approx(1.0, abs=1e-6)
        assert row["label"] == LABELS[int(np.argmax(row["probs"]))]


def test_batching_and_padding_do_not_change_predictions(checkpoints, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", PAIR_ROWS * 3)
    for batch_size in ("1", "4"):
        predict.main(
            [str(checkpoints["classification"]), str(source), "--batch-size", batch_size]
            + ["--logits", "--out", str(tmp_path / f"b{batch_size}")]
        )
    one, four = read_json_lines(tmp_path / "b1"), read_json_lines(tmp_path / "b4")
    np.testing.assert_allclose(
        [row["logits"] for row in one], [row["logits"] for row in four], atol=1e-5
    )


def test_plain_text_lines_are_single_sentences(checkpoints, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.txt", ["this movie is so great", "", "river stone"])
    predict.main([str(checkpoints["classification"]), str(source), "--out", str(tmp_path / "o")])
    rows = read_json_lines(tmp_path / "o")
    assert [row["text"] for row in rows] == ["this movie is so great", "river stone"]
    assert all(row["label"] in LABELS for row in rows)


def test_stdin_to_stdout(checkpoints, monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO('{"text": "quiet morning"}\n'))
    predict.main([str(checkpoints["regression"])])
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    module, tokenizer = load_module(checkpoints["regression"])
    encoding = tokenizer.encode("quiet morning")
    ids = torch.tensor([encoding.ids])
    with torch.no_grad():
        expected = module.model(ids, torch.zeros_like(ids), torch.ones_like(ids)).item()
    assert set(row) == {"text", "score"}
    assert row["score"] == pytest.approx(expected, abs=1e-5)


def test_round_trip_through_transformers_gives_the_predicted_logits(
    checkpoints, tmp_path: Path
) -> None:
    transformers = pytest.importorskip("transformers")
    export(checkpoints["classification"], "hf", tmp_path / "hf")
    source = write_lines(tmp_path / "in.jsonl", PAIR_ROWS)
    predict.main(
        [str(checkpoints["classification"]), str(source), "--logits", "--out", str(tmp_path / "o")]
    )
    predicted = [row["logits"] for row in read_json_lines(tmp_path / "o")]

    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf")
    inputs = tokenizer(
        [a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        logits = model.eval()(**inputs).logits
    np.testing.assert_allclose(predicted, logits.numpy(), atol=1e-5, rtol=0)
    labels = [model.config.id2label[i] for i in logits.argmax(-1).tolist()]
    assert labels == [row["label"] for row in read_json_lines(tmp_path / "o")]


@pytest.mark.parametrize("kind", ["classification", "regression", "qa"])
def test_a_hugging_face_directory_predicts_like_its_checkpoint(
    checkpoints, tmp_path: Path, kind: str
) -> None:
    export(checkpoints[kind], "hf", tmp_path / "hf")
    rows = (
        [{"question": "where does the river run", "context": CONTEXT}]
        if kind == "qa"
        else PAIR_ROWS
    )
    source = write_lines(tmp_path / "in.jsonl", rows)
    # The window length is a run-time choice; a HF directory does not record the 48 of training.
    window = ["--max-length", "48"] if kind == "qa" else []
    for out, model in (("from-ckpt", checkpoints[kind]), ("from-hf", tmp_path / "hf")):
        predict.main([str(model), str(source), "--logits", *window, "--out", str(tmp_path / out)])
    from_checkpoint, from_hf = (read_json_lines(tmp_path / o) for o in ("from-ckpt", "from-hf"))
    for ours, theirs in zip(from_checkpoint, from_hf, strict=True):
        assert set(ours) == set(theirs)
        for key, value in ours.items():
            if isinstance(value, str):
                assert theirs[key] == value, key  # label names and answers
            else:
                np.testing.assert_allclose(theirs[key], value, atol=1e-5, rtol=0)


def test_a_classifier_saved_by_transformers_predicts_its_logits(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    labels = {0: "contradiction", 1: "entailment", 2: "neutral"}
    model = save_hf_model(
        tmp_path / "hf", "BertForSequenceClassification", tiny_tokenizer(), id2label=labels
    )
    source = write_lines(tmp_path / "in.jsonl", PAIR_ROWS)
    predict.main([str(tmp_path / "hf"), str(source), "--logits", "--out", str(tmp_path / "o")])
    rows = read_json_lines(tmp_path / "o")

    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    inputs = tokenizer(
        [a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        logits = model(**inputs).logits
    np.testing.assert_allclose([row["logits"] for row in rows], logits.numpy(), atol=1e-5, rtol=0)
    assert [row["label"] for row in rows] == [labels[i] for i in logits.argmax(-1).tolist()]


def test_a_hugging_face_pretraining_directory_is_sent_to_embed(tmp_path: Path, capsys) -> None:
    pytest.importorskip("transformers")
    save_hf_model(tmp_path / "hf", "BertForPreTraining", tiny_tokenizer())
    source = write_lines(tmp_path / "in.txt", ["river stone"])
    with pytest.raises(SystemExit) as exit_info:
        predict.main([str(tmp_path / "hf"), str(source)])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "config.json" in message and "bertlab-embed" in message


# ---- question answering ---------------------------------------------------------------------


def test_question_answering_answers_with_a_span_of_the_context(checkpoints, tmp_path: Path) -> None:
    questions = [
        "where does the river run",
        "what hangs in the harbor",
        "when is the orchard yellow",
    ]
    rows = [{"id": f"q{i}", "question": q, "context": CONTEXT} for i, q in enumerate(questions)]
    source = write_lines(tmp_path / "qa.jsonl", [*rows, {"question": "anything", "context": ""}])
    predict.main(
        [str(checkpoints["qa"]), str(source), "--batch-size", "2", "--out", str(tmp_path / "o")]
    )
    answers = read_json_lines(tmp_path / "o")
    assert [row.get("id") for row in answers] == ["q0", "q1", "q2", None]
    for row in answers[:3]:
        assert (
            row["answer"] and row["answer"] in CONTEXT
        )  # the 48-token model needs several windows
        assert 0.0 < row["score"] <= 1.0
    assert answers[3]["answer"] == ""


# ---- embeddings ----------------------------------------------------------------------------


def test_embed_checkpoint_tokens_vectors_and_pooling(checkpoints, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.txt", ["river stone", "candle forest bridge silver"])
    for pooling in ("cls", "mean"):
        embed.main(
            [str(checkpoints["pretraining"]), str(source), "--pooling", pooling]
            + ["--out", str(tmp_path / pooling)]
        )
    for cls_row, mean_row in zip(
        read_json_lines(tmp_path / "cls"), read_json_lines(tmp_path / "mean"), strict=True
    ):
        tokens, vectors = cls_row["tokens"], np.asarray(cls_row["token_vectors"])
        assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and len(tokens) == len(vectors)
        assert vectors.shape[1] == 32
        np.testing.assert_allclose(cls_row["sentence_vector"], vectors[0], atol=1e-6)
        np.testing.assert_allclose(mean_row["sentence_vector"], vectors.mean(0), atol=1e-5)

    embed.main(
        [
            str(checkpoints["pretraining"]),
            str(source),
            "--format",
            "npy",
            "--out",
            str(tmp_path / "v.npy"),
        ]
    )
    vectors = np.load(tmp_path / "v.npy")
    assert vectors.shape == (2, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(
        vectors, [row["sentence_vector"] for row in read_json_lines(tmp_path / "cls")], atol=1e-6
    )


def test_embed_hf_directory_matches_transformers(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    tokenizer = tiny_tokenizer()
    reference = save_hf_model(tmp_path / "hf", "BertModel", tokenizer)
    sentences = ["river stone cloud", "winter"]
    source = write_lines(tmp_path / "in.jsonl", [{"text": s} for s in sentences])
    embed.main([str(tmp_path / "hf"), str(source), "--out", str(tmp_path / "o")])
    rows = read_json_lines(tmp_path / "o")
    inputs = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")(
        sentences, padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        hidden = reference.eval()(**inputs).last_hidden_state
    for row, states, mask in zip(rows, hidden, inputs["attention_mask"], strict=True):
        np.testing.assert_allclose(row["token_vectors"], states[mask.bool()].numpy(), atol=1e-5)


# ---- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"text": "a"}', '{"text": "b"'], "in.jsonl:2: not valid JSON"),
        (['{"text": "a"}', "", '["text"]'], "in.jsonl:3: expected a JSON object per line"),
        (['{"text": "a"}', '{"sentence": "b"}'], "in.jsonl:2: missing field 'text'"),
        (['{"text": 3}'], "in.jsonl:1: field 'text' must be a string"),
        (['{"text": "a", "text_pair": ["b"]}'], "in.jsonl:1: field 'text_pair' must be a string"),
    ],
)
def test_bad_input_lines_are_named_with_exit_2(
    checkpoints, tmp_path: Path, capsys, lines, message
) -> None:
    source = write_lines(tmp_path / "in.jsonl", lines)
    with pytest.raises(SystemExit) as exit_info:
        predict.main([str(checkpoints["classification"]), str(source)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and error.count("\n") == 1


def test_question_answering_needs_question_and_context(checkpoints, tmp_path, capsys) -> None:
    source = write_lines(tmp_path / "in.jsonl", [{"question": "where"}])
    with pytest.raises(SystemExit):
        predict.main([str(checkpoints["qa"]), str(source)])
    assert (
        "in.jsonl:1: missing field 'context' (expected question, context)"
        in capsys.readouterr().err
    )


def test_pretraining_checkpoint_is_sent_to_embed(checkpoints, tmp_path, capsys) -> None:
    source = write_lines(tmp_path / "in.txt", ["river"])
    with pytest.raises(SystemExit):
        predict.main([str(checkpoints["pretraining"]), str(source)])
    assert "bertlab-embed gives a pretrained model's vectors" in capsys.readouterr().err


def test_malicious_checkpoint_is_refused_before_it_runs(tmp_path: Path, capsys) -> None:
    target = tmp_path / "pwned"
    checkpoint = write_malicious_checkpoint(tmp_path / "evil.ckpt", target)
    source = write_lines(tmp_path / "in.txt", ["river"])
    for command in (predict.main, embed.main):
        with pytest.raises(SystemExit) as exit_info:
            command([str(checkpoint), str(source)])
        assert exit_info.value.code == 2
        assert "evil.ckpt: refused to load" in capsys.readouterr().err
    assert not target.exists()
