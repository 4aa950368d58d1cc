"""`model.init` resolved once: what it is, one read per run, Hub names offline, bad files named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file

from bertlab import pipeline
from bertlab.checkpoints.init import CHECKPOINT, HF_DIRECTORY, WEIGHTS, resolve
from bertlab.cli.errors import EXIT_USER_ERROR, exit_on_user_errors
from bertlab.cli.train import train
from bertlab.errors import CheckpointError, ConfigError, DataError
from bertlab.model import BertConfig, BertForPreTraining, count_parameters
from bertlab.tasks.pretrain import PretrainingModule
from bertlab.validation import LARGE, estimated_parameters, validate_config

from support.data import write_glue_task
from support.models import BERTLAB_MODEL, save_hf_model, save_module_checkpoint, tiny_tokenizer
from support.runs import FAST_FINE_TUNE

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """A tiny pretraining checkpoint, saved as training saves it (tokenizer inside)."""
    tokenizer = tiny_tokenizer()
    module = PretrainingModule(
        model=BERTLAB_MODEL, optimizer={}, vocab_size=tokenizer.get_vocab_size()
    )
    path = tmp_path_factory.mktemp("pretrained") / "last.ckpt"
    return save_module_checkpoint(module, tokenizer, path)


def fails_with_exit_2(function, *args) -> None:
    """Run a command's body as the command line does: a user error exits 2."""
    with pytest.raises(SystemExit) as exit_info:
        exit_on_user_errors(function)(*args)
    assert exit_info.value.code == EXIT_USER_ERROR


def one_line_error(capsys) -> str:
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1, error
    return error


# ---- what a spec resolves to ----------------------------------------------------------------


def test_each_kind_brings_what_it_has(pretrained, tmp_path: Path) -> None:
    checkpoint = resolve(pretrained)
    assert checkpoint.kind == CHECKPOINT and checkpoint.path == pretrained
    assert {k: checkpoint.architecture[k] for k in BERTLAB_MODEL} == BERTLAB_MODEL
    assert checkpoint.tokenizer.get_vocab_size() == tiny_tokenizer().get_vocab_size()
    assert "bert.embeddings.word_embeddings.weight" in checkpoint.state_dict

    save_hf_model(tmp_path / "hf", "BertForPreTraining", tiny_tokenizer())
    directory = resolve(tmp_path / "hf")
    assert directory.kind == HF_DIRECTORY and directory.architecture["hidden_size"] == 32
    assert directory.tokenizer is not None and directory.hyper_parameters == {}

    bare = tmp_path / "weights" / "model.safetensors"
    bare.parent.mkdir()
    state = {k: v.clone() for k, v in checkpoint.state_dict.items()}  # untied, as files are
    save_file(state, str(bare))
    weights = resolve(bare)
    assert (weights.kind, weights.architecture, weights.tokenizer) == (WEIGHTS, None, None)
    assert weights.state_dict.keys() == checkpoint.state_dict.keys()


def test_a_ckpt_is_read_once_per_run(pretrained, make_config, tmp_path: Path, monkeypatch) -> None:
    """Validation, tokenizer, architecture and weights all come from one read of model.init."""
    write_glue_task(tmp_path / "SST-2", "sst2", train=16, dev=8, test=4)
    overrides = [*FAST_FINE_TUNE, f"task.data_dir={tmp_path / 'SST-2'}", f"model.init={pretrained}"]
    reads = []
    load = torch.load

    def counting_load(file, *args, **kwargs):
        if Path(str(file)) == pretrained:
            reads.append(kwargs)
        return load(file, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    train(make_config(*overrides), overrides=overrides)
    assert len(reads) == 1
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["steps"] == 2


# ---- hf:NAME without a network --------------------------------------------------------------


def test_hub_name_offline_says_the_hub_cannot_be_reached(
    make_config, tmp_path, monkeypatch, capsys
):
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read once, when it was imported
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))  # empty

    with pytest.raises(CheckpointError) as error:
        validate_config(make_config("model.init=hf:bert-base-uncased"))
    message = str(error.value)
    assert message.startswith("model.init=hf:bert-base-uncased: the Hugging Face Hub cannot be")
    assert "no such file" not in message
    assert "set model.init=DIR, a local Hugging Face BERT directory" in message

    cfg = make_config("model.init=hf:bert-base-uncased")
    fails_with_exit_2(train, cfg)
    assert "the Hugging Face Hub cannot be reached" in one_line_error(capsys)
    assert not (tmp_path / "cache").exists()  # refused before any data was read


# ---- files that are not checkpoints ---------------------------------------------------------


def truncated(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


@pytest.mark.parametrize("case", ["truncated", "text named .ckpt", "notes.txt", "empty"])
def test_a_file_that_is_not_a_checkpoint_is_named(
    pretrained, make_config, tmp_path, capsys, case
) -> None:
    path, what = {
        "truncated": (tmp_path / "cut.ckpt", "not a readable checkpoint, truncated or damaged"),
        "text named .ckpt": (tmp_path / "text.ckpt", "not a checkpoint"),
        "notes.txt": (tmp_path / "notes.txt", "not a checkpoint"),
        "empty": (tmp_path / "empty.ckpt", "not a checkpoint"),
    }[case]
    if case == "truncated":
        truncated(pretrained, path)
    else:
        path.write_text("" if case == "empty" else "my notes on this run\nlr 2e-5\n")
    with pytest.raises(CheckpointError, match=f"^{path}: {what}"):
        resolve(path)
    fails_with_exit_2(train, make_config(f"model.init={path}"))
    assert f"error: {path}: {what}" in one_line_error(capsys)


def test_resume_with_a_truncated_last_checkpoint_is_named(
    pretrained, make_config, tmp_path, capsys
) -> None:
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    truncated(pretrained, last)
    fails_with_exit_2(train, make_config("resume=true"))
    error = one_line_error(capsys)
    assert f"resume=true: {last}: not a readable checkpoint, truncated or damaged" in error


# ---- sizes that cannot fit ------------------------------------------------------------------


def test_an_absurd_config_json_is_refused_with_the_estimate(make_config, tmp_path, capsys):
    save_hf_model(tmp_path / "hf", "BertForPreTraining", tiny_tokenizer())
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    config["hidden_size"] = 10**9
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError) as error:
        validate_config(make_config(f"model.init={tmp_path / 'hf'}"))
    message = str(error.value)
    assert message.startswith(f"model.init={tmp_path / 'hf'} has hidden_size=1000000000: ")
    assert "the model would hold about 1e+19 parameters (34.7 EiB in float32), more than" in message


def test_an_absurd_model_size_is_refused_before_building(make_config, capsys) -> None:
    cfg = make_config("model.hidden_size=1000000000")
    fails_with_exit_2(train, cfg)
    error = one_line_error(capsys)
    assert "error: model.hidden_size=1000000000: the model would hold about" in error
    assert "EiB in float32), more than this machine's" in error


def test_shipped_model_sizes_pass(make_config) -> None:
    for model in ("tiny", "base", "large"):
        validate_config(make_config(f"model={model}"))


# ---- tokenizer.path -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("tokenizer.json", b"<html>not found</html>", "not a tokenizers JSON file (expected value"),
        ("vocab.txt", bytes(range(128, 256)), "1: not UTF-8 text"),
    ],
)
def test_a_tokenizer_path_that_is_not_a_tokenizer_names_the_file(
    make_config, tmp_path, name, content, reason
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as error:
        pipeline.resolve_tokenizer(make_config(f"tokenizer.path={path}"), None, None)
    assert str(error.value).startswith(f"{path}"), error.value
    assert reason in str(error.value)


@pytest.mark.parametrize("model", ["tiny", "base"])
def test_the_estimate_counts_what_the_model_builds(make_config, model) -> None:
    section = OmegaConf.to_container(make_config(f"model={model}").model)
    architecture = {k: v for k, v in section.items() if k in LARGE}
    built = BertForPreTraining(BertConfig.from_dict(section, vocab_size=1000))
    assert estimated_parameters(architecture, 1000) == count_parameters(built)
