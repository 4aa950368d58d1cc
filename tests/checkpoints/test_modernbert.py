"""ModernBERT: parity with transformers on random weights, both directions, and what cannot
export.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bertlab.checkpoints import hf
from bertlab.checkpoints.init import init_model_config, load_pretrained, resolve
from bertlab.checkpoints.modernbert import hf_representable, write_hf_directory
from bertlab.errors import CheckpointError
from bertlab.model import (
    BertConfig,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
)

from support.models import VOCAB, padded_batch, perturb

transformers = pytest.importorskip("transformers")


WINDOW = 8  # local layers see 4 tokens each side: the test sequences are longer


# (name, transformers config) pairs: every dimension distinct, windows shorter than the text.
SHAPES = {
    "every-3rd-global": dict(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=37
    ),
    "every-2nd-global-biases-mean": dict(
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=3,
        intermediate_size=20,
        global_attn_every_n_layers=2,
        norm_bias=True,
        attention_bias=True,
        mlp_bias=True,
        classifier_bias=True,
        classifier_pooling="mean",
        global_rope_theta=5000.0,
        local_rope_theta=300.0,
    ),
    "all-global-untied": dict(
        hidden_size=24,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=16,
        global_attn_every_n_layers=1,
        tie_word_embeddings=False,
    ),
}


def hf_config(shape: str, attention: str, **extra):
    return transformers.ModernBertConfig(
        vocab_size=VOCAB,
        max_position_embeddings=64,
        local_attention=WINDOW,
        pad_token_id=0,
        bos_token_id=2,
        cls_token_id=2,
        eos_token_id=3,
        sep_token_id=3,
        attn_implementation=attention,
        **{**SHAPES[shape], **extra},
    )


def save_reference(directory: Path, class_name: str, shape: str, attention: str = "sdpa", **extra):
    torch.manual_seed(0)
    model = getattr(transformers, class_name)(hf_config(shape, attention, **extra))
    model = perturb(model).eval()
    model.save_pretrained(directory)
    return model


def from_directory(directory: Path, model_class, **head):
    config = BertConfig.from_dict(hf.hf_model_config(directory))
    model = model_class(config, **head).eval()
    load_pretrained(model, resolve(directory))
    return model


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("shape", SHAPES)
def test_masked_lm_matches_transformers(tmp_path: Path, shape: str, attention: str) -> None:
    reference = save_reference(tmp_path, "ModernBertForMaskedLM", shape, attention)
    ours = from_directory(tmp_path, BertForPreTraining, next_sentence=False)
    batch = padded_batch()
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        expected = reference(**batch, output_hidden_states=True)
        hidden, pooled = ours.bert(batch["input_ids"], None, batch["attention_mask"])
        logits, nsp = ours(batch["input_ids"], None, batch["attention_mask"])
    assert pooled is None and nsp is None
    torch.testing.assert_close(hidden[real], expected.hidden_states[-1][real], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[real], expected.logits[real], atol=1e-5, rtol=0)


def test_model_without_padding_and_bare_encoder_names(tmp_path: Path) -> None:
    """A saved ModernBertModel has no `model.` prefix; an unpadded batch takes no mask."""
    reference = save_reference(tmp_path, "ModernBertModel", "every-3rd-global")
    config = BertConfig.from_dict(hf.hf_model_config(tmp_path))
    ours = BertForPreTraining(config, next_sentence=False).eval()
    report = load_pretrained(ours, resolve(tmp_path))
    assert report["newly_initialized"] == ["cls.predictions.bias"] + [
        f"cls.predictions.transform.{p}" for p in ("LayerNorm.weight", "dense.weight")
    ]
    input_ids = padded_batch(lengths=(21, 21))["input_ids"]
    with torch.no_grad():
        expected = reference(input_ids=input_ids).last_hidden_state
        torch.testing.assert_close(ours.bert(input_ids)[0], expected, atol=1e-5, rtol=0)


def test_masked_positions_head_equals_the_full_head(tmp_path: Path) -> None:
    save_reference(tmp_path, "ModernBertForMaskedLM", "every-3rd-global")
    ours = from_directory(tmp_path, BertForPreTraining, next_sentence=False)
    batch = padded_batch()
    positions = torch.tensor([[1, 9, 20], [3, 13, -1], [5, -1, -1]])
    with torch.no_grad():
        full, _ = ours(batch["input_ids"], None, batch["attention_mask"])
        gathered, _ = ours(batch["input_ids"], None, batch["attention_mask"], positions)
    expected = torch.stack(
        [full[0, 1], full[0, 9], full[0, 20], full[1, 3], full[1, 13], full[2, 5]]
    )
    torch.testing.assert_close(gathered, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", ["every-3rd-global", "every-2nd-global-biases-mean"])
def test_sequence_classification_matches_transformers(tmp_path: Path, shape: str) -> None:
    reference = save_reference(tmp_path, "ModernBertForSequenceClassification", shape, num_labels=3)
    ours = from_directory(tmp_path, BertForSequenceClassification, num_labels=3)
    batch = padded_batch()
    with torch.no_grad():
        torch.testing.assert_close(
            ours(batch["input_ids"], None, batch["attention_mask"]),
            reference(**batch).logits,
            atol=1e-5,
            rtol=0,
        )


def test_question_answering_matches_transformers(tmp_path: Path) -> None:
    reference = save_reference(tmp_path, "ModernBertForQuestionAnswering", "every-3rd-global")
    ours = from_directory(tmp_path, BertForQuestionAnswering)
    batch = padded_batch()
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        expected = reference(**batch)
        start, end = ours(batch["input_ids"], None, batch["attention_mask"])
    torch.testing.assert_close(start[real], expected.start_logits[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(end[real], expected.end_logits[real], atol=1e-5, rtol=0)


def test_config_json_becomes_the_model_section(tmp_path: Path) -> None:
    save_reference(tmp_path, "ModernBertForMaskedLM", "every-2nd-global-biases-mean")
    model = hf.hf_model_config(tmp_path)
    assert model == {
        "num_layers": 3,
        "hidden_size": 48,
        "num_heads": 3,
        "intermediate_size": 20,
        "vocab_size": VOCAB,
        "max_position_embeddings": 64,
        "layer_norm_eps": 1e-5,
        "hidden_act": "gelu",
        "hidden_dropout": 0.0,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "layer_norm_position": "pre",
        "feed_forward": "glu",
        "position_embedding_type": "rotary",
        "type_vocab_size": 0,
        "embedding_layer_norm": True,
        "final_layer_norm": True,
        "bias": True,
        "global_rope_theta": 5000.0,
        "local_attention": WINDOW,
        "global_attn_every_n_layers": 2,
        "local_rope_theta": 300.0,
        "tie_word_embeddings": True,
        "pooling": "mean",
    }
    # model.init=DIR gives a run this architecture, whatever model= preset it started from.
    tiny = {"name": "tiny", "num_layers": 2, "hidden_size": 128, "init": str(tmp_path)}
    inherited = init_model_config(tiny, resolve(tmp_path), overrides=[f"model.init={tmp_path}"])
    architecture = {k: v for k, v in model.items() if k != "vocab_size"}  # from the tokenizer
    assert {k: inherited[k] for k in architecture} == architecture


def test_unrepresentable_config_json_is_named(tmp_path: Path) -> None:
    save_reference(tmp_path, "ModernBertForMaskedLM", "every-3rd-global")
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "mlp_bias": True}))
    with pytest.raises(CheckpointError, match="model.bias.*differ"):
        hf.hf_model_config(tmp_path)
    layer_types = ["full_attention", "full_attention", "sliding_attention", "full_attention"]
    (tmp_path / "config.json").write_text(json.dumps({**config, "layer_types": layer_types}))
    with pytest.raises(CheckpointError, match="layer_types=.*every n-th layer global"):
        hf.hf_model_config(tmp_path)


# ---- bertlab -> transformers --------------------------------------------------------------


MODERN = {
    "num_layers": 4,
    "hidden_size": 32,
    "num_heads": 4,
    "intermediate_size": 24,
    "vocab_size": VOCAB,
    "max_position_embeddings": 64,
    "type_vocab_size": 0,
    "layer_norm_eps": 1e-5,
    "hidden_dropout": 0.0,
    "attention_dropout": 0.0,
    "layer_norm_position": "pre",
    "feed_forward": "glu",
    "bias": False,
    "position_embedding_type": "rotary",
    "global_rope_theta": 160000.0,
    "local_attention": WINDOW,
    "global_attn_every_n_layers": 3,
    "final_layer_norm": True,
    "pooling": "cls",
}


@pytest.mark.parametrize(
    ("model_class", "head", "reference_class"),
    [
        (BertForPreTraining, {"next_sentence": False}, "ModernBertForMaskedLM"),
        (BertForSequenceClassification, {"num_labels": 3}, "ModernBertForSequenceClassification"),
        (BertForQuestionAnswering, {}, "ModernBertForQuestionAnswering"),
    ],
)
def test_export_writes_a_directory_transformers_loads_with_the_same_outputs(
    tmp_path: Path, model_class, head, reference_class
) -> None:
    torch.manual_seed(0)
    ours = perturb(model_class(BertConfig.from_dict(MODERN), **head)).eval()
    labels = ["a", "b", "c"] if model_class is BertForSequenceClassification else None
    write_hf_directory(ours, tmp_path, label_names=labels)
    theirs = getattr(transformers, reference_class).from_pretrained(tmp_path).eval()
    batch = padded_batch()
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        mine = ours(batch["input_ids"], None, batch["attention_mask"])
        expected = theirs(**batch)
    if model_class is BertForPreTraining:
        torch.testing.assert_close(mine[0][real], expected.logits[real], atol=1e-5, rtol=0)
    elif model_class is BertForSequenceClassification:
        torch.testing.assert_close(mine, expected.logits, atol=1e-5, rtol=0)
        assert theirs.config.id2label == {0: "a", 1: "b", 2: "c"}
    else:
        torch.testing.assert_close(mine[0][real], expected.start_logits[real], atol=1e-5, rtol=0)
        torch.testing.assert_close(mine[1][real], expected.end_logits[real], atol=1e-5, rtol=0)
    # and back: bertlab reads its own export
    again = from_directory(tmp_path, model_class, **head)
    with torch.no_grad():
        torch.testing.assert_close(
            again(batch["input_ids"], None, batch["attention_mask"]), mine, atol=0, rtol=0
        )


def test_hf_representable_names_the_keys(tmp_path) -> None:
    assert hf_representable({}) is None  # BERT
    assert hf_representable(MODERN) is None
    reason = hf_representable({**MODERN, "position_embedding_type": "absolute"})
    assert "ModernBERT needs model.position_embedding_type=rotary (is absolute)" in reason
    assert "BERT needs model.layer_norm_position=post (is pre)" in reason
    with pytest.raises(CheckpointError, match="ModernBERT needs model.final_layer_norm=true"):
        write_hf_directory(
            BertForPreTraining(BertConfig.from_dict({**MODERN, "final_layer_norm": False})),
            tmp_path / "refused",
        )
    assert not (tmp_path / "refused").exists()  # refused before anything is written
