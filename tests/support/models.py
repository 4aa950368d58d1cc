"""Tiny tokenizers, models and checkpoints: transformers' own directories and bertlab checkpoints
saved as training saves them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from tokenizers import Tokenizer

from bertlab.tasks.base import BertTaskModule
from bertlab.tasks.classify import ClassificationModule
from bertlab.tasks.pretrain import PretrainingModule
from bertlab.tasks.qa import QuestionAnsweringModule
from bertlab.tokenizer import train_wordpiece

from support.data import SQUAD_WORDS, WORDS

# A tiny architecture with every dimension distinct, so a transposed weight cannot pass.
HF_CONFIG = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 37,
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
}


BERTLAB_MODEL = {
    "num_layers": 2,
    "hidden_size": 32,
    "num_heads": 4,
    "intermediate_size": 37,
    "max_position_embeddings": 64,
}


PAIRS = [
    ("river stone cloud garden window", "music paper"),
    ("candle forest", "bridge silver quiet morning yellow engine planet"),
    ("winter", "summer market"),
]


def tiny_tokenizer():
    texts = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))]
    return train_wordpiece(texts + ["a the of"], vocab_size=120, min_frequency=1)


def squad_tokenizer() -> Tokenizer:
    """A WordPiece vocabulary of the generated words, accents and punctuation."""
    texts = [" ".join(SQUAD_WORDS)] * 3 + [
        "naïve café résumé, (1990s) U.S.A. code: what is the"
    ] * 3
    return train_wordpiece(texts, vocab_size=200, min_frequency=1)


def encode_pairs(tokenizer, pairs=PAIRS) -> dict[str, torch.Tensor]:
    """A padded batch of sentence pairs (two segments), int64 as bertlab and transformers take."""
    encodings = [tokenizer.encode(a, b) for a, b in pairs]
    width = max(len(e.ids) for e in encodings)

    def padded(values, pad=0):
        return [list(v) + [pad] * (width - len(v)) for v in values]

    batch = {
        "input_ids": padded([e.ids for e in encodings]),
        "token_type_ids": padded([e.type_ids for e in encodings]),
        "attention_mask": padded([e.attention_mask for e in encodings]),
    }
    return {k: torch.tensor(v, dtype=torch.int64) for k, v in batch.items()}


def perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random non-zero biases and non-unit LayerNorms: initial values would hide mix-ups."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return model


def save_hf_model(directory: Path, class_name: str, tokenizer, **config):
    """A transformers model with random weights and its tokenizer, saved by transformers itself."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf_config = transformers.BertConfig(
        vocab_size=tokenizer.get_vocab_size(), **HF_CONFIG, **config
    )
    model = perturb(getattr(transformers, class_name)(hf_config)).eval()
    model.save_pretrained(directory)
    transformers.BertTokenizer(vocab=tokenizer.get_vocab()).save_pretrained(directory)
    return model


def save_module_checkpoint(module: BertTaskModule, tokenizer, path: Path) -> Path:
    """A Lightning checkpoint of `module`, as training writes it (tokenizer included)."""
    module.tokenizer_json = tokenizer.to_str()
    trainer = pl.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path, weights_only=True)
    return path


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


# ---- safe loading -------------------------------------------------------------------------


class _CreatesAFile:
    """Unpickling this runs code: it creates the file named by `target`."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (exec, (f"open({str(self.target)!r}, 'w').close()",))


def write_malicious_checkpoint(path: Path, target: Path) -> Path:
    torch.save({"state_dict": {}, "hyper_parameters": _CreatesAFile(target)}, path)
    return path


# ModernBERT parity (tests/checkpoints, tests/e2e): ids below VOCAB, [CLS]=2 first, padding 0.
VOCAB = 97


def padded_batch(lengths=(21, 14, 6), width: int = 21, seed: int = 0) -> dict[str, torch.Tensor]:
    """Rows of these lengths, padded to `width`, random ids from a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, VOCAB, (len(lengths), width), generator=generator)
    attention_mask = torch.zeros_like(input_ids)
    for row, length in enumerate(lengths):
        attention_mask[row, :length] = 1
        input_ids[row, length:] = 0
    input_ids[:, 0] = 2
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def save_task_checkpoints(directory: Path) -> dict[str, Path]:
    """Tiny random checkpoints of every task family (perturbed, seeded), saved as training saves
    them.
    """
    tokenizer = tiny_tokenizer()
    paths = {}
    for seed, kind in enumerate(("classification", "regression", "qa", "pretraining")):
        torch.manual_seed(seed)
        module = perturb(build_module(kind, tokenizer.get_vocab_size()), seed)
        paths[kind] = save_module_checkpoint(module, tokenizer, directory / f"{kind}.ckpt")
    return paths


def run_onnx(path: Path):
    """(batch) -> the outputs of the ONNX model at `path`, run by onnxruntime on the CPU."""
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(batch: dict) -> list:
        return session.run(None, {name: tensor.numpy() for name, tensor in batch.items()})

    return run
