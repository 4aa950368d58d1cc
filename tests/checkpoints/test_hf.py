"""Hugging Face interop: parity with transformers on random weights, config, names, the Hub, and
`model.init` pointing at a transformers directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bertlab.checkpoints import hf
from bertlab.checkpoints.init import init_model_config, load_pretrained, resolve
from bertlab.checkpoints.restore import load_module
from bertlab.cli.train import train
from bertlab.errors import CheckpointError
from bertlab.model import (
    BertConfig,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertModel,
)
from bertlab.tokenizer import load_tokenizer

from support.data import write_glue_task
from support.models import BERTLAB_MODEL, PAIRS, encode_pairs, save_hf_model, tiny_tokenizer
from support.runs import FAST_FINE_TUNE

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def bertlab_from_hf(directory: Path, model_class, **head):
    config = BertConfig.from_dict(hf.hf_model_config(directory))
    model = model_class(config, **head).eval()
    load_pretrained(model, resolve(directory))
    return model


# ---- parity on random weights -----------------------------------------------------------


def test_pretraining_model_matches_transformers(tmp_path: Path, tokenizer) -> None:
    reference = save_hf_model(tmp_path, "BertForPreTraining", tokenizer)
    ours = bertlab_from_hf(tmp_path, BertForPreTraining)
    batch = encode_pairs(tokenizer)
    assert batch["attention_mask"].min() == 0 and batch["token_type_ids"].max() == 1
    with torch.no_grad():
        expected = reference(**batch, output_hidden_states=True)
        expected_pooled = reference.bert(**batch).pooler_output
        hidden, pooled = ours.bert(**batch)
        mlm_logits, nsp_logits = ours(**batch)
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(hidden[real], expected.hidden_states[-1][real], atol=1e-5, rtol=0)
    torch.testing.assert_close(pooled, expected_pooled, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        mlm_logits[real], expected.prediction_logits[real], atol=1e-5, rtol=0
    )
    torch.testing.assert_close(nsp_logits, expected.seq_relationship_logits, atol=1e-5, rtol=0)


def test_classification_model_matches_transformers(tmp_path: Path, tokenizer) -> None:
    reference = save_hf_model(tmp_path, "BertForSequenceClassification", tokenizer, num_labels=3)
    ours = bertlab_from_hf(tmp_path, BertForSequenceClassification, num_labels=3)
    batch = encode_pairs(tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch), reference(**batch).logits, atol=1e-5, rtol=0)


def test_question_answering_model_matches_transformers(tmp_path: Path, tokenizer) -> None:
    reference = save_hf_model(tmp_path, "BertForQuestionAnswering", tokenizer)
    ours = bertlab_from_hf(tmp_path, BertForQuestionAnswering)
    batch = encode_pairs(tokenizer)
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        expected = reference(**batch)
        start_logits, end_logits = ours(**batch)
    torch.testing.assert_close(start_logits[real], expected.start_logits[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(end_logits[real], expected.end_logits[real], atol=1e-5, rtol=0)


# ---- names, formats, config ---------------------------------------------------------------


def test_bert_model_bin_with_legacy_names_loads_by_the_name_table(
    tmp_path: Path, tokenizer
) -> None:
    """An old BertModel `pytorch_model.bin`: no `bert.` prefix, LayerNorm gamma/beta."""
    reference = save_hf_model(tmp_path / "new", "BertModel", tokenizer)
    legacy = {
        key.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
            "LayerNorm.bias", "LayerNorm.beta"
        ): value
        for key, value in reference.state_dict().items()
    }
    assert "embeddings.LayerNorm.gamma" in legacy
    old = tmp_path / "old"
    old.mkdir()
    torch.save(legacy, old / "pytorch_model.bin")
    (old / "config.json").write_text((tmp_path / "new" / "config.json").read_text())

    state = hf.load_hf_state_dict(old)
    assert "bert.embeddings.LayerNorm.weight" in state
    assert "bert.encoder.layer.1.output.LayerNorm.bias" in state
    ours = BertModel(BertConfig.from_dict(hf.hf_model_config(old))).eval()
    ours.load_state_dict({k.removeprefix("bert."): v for k, v in state.items()})
    batch = encode_pairs(tokenizer)
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        expected = reference(**batch).last_hidden_state
        torch.testing.assert_close(ours(**batch)[0][real], expected[real], atol=1e-5, rtol=0)


def test_sharded_safetensors_directory_loads_every_shard(tmp_path: Path, tokenizer) -> None:
    reference = save_hf_model(tmp_path / "whole", "BertForPreTraining", tokenizer)
    reference.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    assert not (tmp_path / "sharded" / "model.safetensors").exists()
    state = hf.load_hf_state_dict(tmp_path / "sharded")
    expected = reference.state_dict()
    assert set(state) == set(expected) - {
        "cls.predictions.decoder.weight",
        "cls.predictions.decoder.bias",
    }
    assert all(torch.equal(state[key], expected[key]) for key in state)


def test_config_json_becomes_the_bertlab_model_section(tmp_path: Path, tokenizer) -> None:
    save_hf_model(tmp_path, "BertForPreTraining", tokenizer, hidden_act="gelu_pytorch_tanh")
    assert hf.hf_model_config(tmp_path) == {
        **BERTLAB_MODEL,
        "vocab_size": tokenizer.get_vocab_size(),
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "hidden_act": "gelu_new",
        "hidden_dropout": 0.1,
        "attention_dropout": 0.1,
        "initializer_range": 0.02,
    }
    assert resolve(tmp_path).architecture == hf.hf_model_config(tmp_path)


def test_unsupported_configs_are_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    with pytest.raises(ValueError, match="model_type='roberta'"):
        hf.hf_model_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"hidden_act": "swish"}))
    with pytest.raises(ValueError, match="hidden_act='swish' is not supported"):
        hf.hf_model_config(tmp_path)
    with pytest.raises(CheckpointError, match="no model.safetensors or pytorch_model.bin"):
        hf.load_hf_state_dict(tmp_path)


def test_model_init_takes_the_architecture_unless_the_command_line_chose_it(
    tmp_path: Path, tokenizer
) -> None:
    save_hf_model(tmp_path, "BertForPreTraining", tokenizer)
    tiny = {"name": "tiny", "num_layers": 2, "hidden_size": 128, "num_heads": 2}
    tiny |= {"intermediate_size": 512, "max_position_embeddings": 512, "init": str(tmp_path)}
    init = resolve(tmp_path)
    inherited = init_model_config(
        tiny, init, overrides=["task=glue/sst2", f"model.init={tmp_path}"]
    )
    assert {k: inherited[k] for k in BERTLAB_MODEL} == BERTLAB_MODEL
    assert inherited["name"] == tmp_path.name

    with pytest.raises(ValueError) as error:
        init_model_config(tiny, init, overrides=["model=tiny"])
    assert "model.hidden_size=128" in str(error.value) and "hidden_size=32" in str(error.value)
    with pytest.raises(ValueError, match="model.num_heads=2 but .* has num_heads=4"):
        init_model_config({**tiny, "hidden_size": 32}, init, overrides=["model.num_heads=2"])
    chosen_dropout = {**tiny, "hidden_dropout": 0.3, "attention_dropout": 0.0}
    dropout = init_model_config(chosen_dropout, init, overrides=["model.hidden_dropout=0.3"])
    assert (dropout["hidden_size"], dropout["hidden_dropout"], dropout["attention_dropout"]) == (
        32,
        0.3,
        0.1,
    )


def test_tokenizer_of_a_transformers_directory_encodes_as_transformers(
    tmp_path: Path, tokenizer
) -> None:
    save_hf_model(tmp_path, "BertForPreTraining", tokenizer)
    ours = resolve(tmp_path).tokenizer
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    for a, b in PAIRS:
        encoding = ours.encode(a.title(), b)
        expected = theirs(a.title(), b)
        assert encoding.ids == expected["input_ids"]
        assert encoding.type_ids == expected["token_type_ids"]


def test_vocab_only_directory_follows_do_lower_case(tmp_path: Path) -> None:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "river", "River"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    assert hf.load_hf_tokenizer(tmp_path).encode("River").tokens == ["[CLS]", "River", "[SEP]"]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    assert hf.load_hf_tokenizer(tmp_path).encode("River").tokens == ["[CLS]", "river", "[SEP]"]
    assert load_tokenizer(tmp_path, lowercase=True).encode("River").ids == [2, 5, 3]


# ---- Hub names ------------------------------------------------------------------------------


def test_hub_name_downloads_through_huggingface_hub(tmp_path: Path, tokenizer, monkeypatch) -> None:
    huggingface_hub = pytest.importorskip("huggingface_hub")
    save_hf_model(tmp_path, "BertForPreTraining", tokenizer)
    requests = []

    def snapshot_download(repo_id, allow_patterns):
        requests.append((repo_id, list(allow_patterns)))
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    init = resolve("hf:someone/tiny-bert")
    assert init.path == tmp_path
    assert init.architecture == hf.hf_model_config(tmp_path)
    model = BertForPreTraining(BertConfig.from_dict(hf.hf_model_config(tmp_path)))
    assert load_pretrained(model, init)["unused"] == []
    assert init.tokenizer is not None
    assert len(requests) == 1  # one download serves config, tokenizer and weights
    assert "model.safetensors" in requests[0][1] and "pytorch_model.bin" not in requests[0][1]


def test_hub_name_offline_is_a_clear_error(monkeypatch) -> None:
    huggingface_hub = pytest.importorskip("huggingface_hub")
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(repo_id, allow_patterns):
        raise LocalEntryNotFoundError("Cannot find the requested files in the local cache")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ValueError) as error:
        resolve("hf:someone/missing")
    message = str(error.value)
    assert "model.init=hf:someone/missing" in message and "set model.init=DIR" in message


def test_model_init_hf_directory_brings_its_architecture(make_config, tmp_path: Path) -> None:
    save_hf_model(tmp_path / "hf", "BertForPreTraining", tiny_tokenizer())
    write_glue_task(tmp_path / "SST-2", "sst2", train=16, dev=8, test=4)
    overrides = [
        *FAST_FINE_TUNE,
        f"task.data_dir={tmp_path / 'SST-2'}",
        f"model.init={tmp_path / 'hf'}",
    ]
    train(make_config(*overrides), overrides=overrides)  # model=tiny by default: not chosen
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    module, _ = load_module(results["last_checkpoint"])
    assert {k: module.hparams.model[k] for k in BERTLAB_MODEL} == BERTLAB_MODEL

    chosen = [*overrides, "model=tiny"]
    with pytest.raises(
        ValueError, match=r"model.hidden_size=128 but model.init=.* has hidden_size=32"
    ):
        train(make_config(*chosen, run_dir=tmp_path / "chosen"), overrides=chosen)
