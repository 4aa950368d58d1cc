"""Rebuilding task modules and encoders from a checkpoint, for predict, embed and export.

A bertlab `.ckpt` rebuilds its task module from `hyper_parameters` and its tokenizer from
`checkpoint["tokenizer"]`; a transformers `BertForSequenceClassification` or
`BertForQuestionAnswering` directory becomes the bertlab module with the same weights.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

from bertlab.checkpoints.hf import read_hf_config
from bertlab.checkpoints.init import CHECKPOINT, HF_DIRECTORY, ResolvedInit, resolve
from bertlab.errors import CheckpointError
from bertlab.model import BertConfig, BertModel, join_projections
from bertlab.tasks.base import BertTaskModule
from bertlab.tasks.classify import ClassificationModule
from bertlab.tasks.pretrain import PretrainingModule
from bertlab.tasks.qa import QuestionAnsweringModule

# Only these classes are ever built from a checkpoint: a name stored in a file must not
# choose arbitrary code to import.
TASK_MODULES: dict[str, type[BertTaskModule]] = {
    cls.__name__: cls for cls in (PretrainingModule, ClassificationModule, QuestionAnsweringModule)
}
QA_DEFAULT_MAX_LENGTH = 384  # the reference's SQuAD window, for models that do not say


def module_class(checkpoint: dict) -> type[BertTaskModule]:
    """The task module a checkpoint was saved from.

    Lightning records no class, so a stored `module_class` name is used when present and
    otherwise the hyperparameters decide: only classification has `num_labels`, only
    question answering `version_2_with_negative`.
    """
    stored = str(checkpoint.get("module_class", "")).rsplit(".", 1)[-1]
    if stored in TASK_MODULES:
        return TASK_MODULES[stored]
    hyper_parameters = checkpoint["hyper_parameters"]
    if "num_labels" in hyper_parameters:
        return ClassificationModule
    if "version_2_with_negative" in hyper_parameters:
        return QuestionAnsweringModule
    return PretrainingModule


def load_module(path: str | Path) -> tuple[BertTaskModule, Tokenizer]:
    """The task module of a bertlab checkpoint, a Hugging Face directory or `hf:NAME`, in eval
    mode, and its tokenizer."""
    source = resolve(path, key=None)  # hf:NAME downloads once, here
    if source.kind == HF_DIRECTORY:
        return load_hf_module(source)
    return _load_bertlab_module(source)


def _load_bertlab_module(source: ResolvedInit) -> tuple[BertTaskModule, Tokenizer]:
    checkpoint = source.contents if source.kind == CHECKPOINT else {}
    if "hyper_parameters" not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"{source.spec}: not a bertlab checkpoint (no hyper_parameters or state_dict)"
        )
    module = module_class(checkpoint)(**checkpoint["hyper_parameters"])
    missing, _ = module.load_state_dict(checkpoint["state_dict"], strict=False)
    missing_weights = [key for key in missing if key.startswith("model.")]
    if missing_weights:
        raise CheckpointError(
            f"{source.spec}: the checkpoint lacks weights, e.g. {missing_weights[0]}"
        )
    module.on_load_checkpoint(checkpoint)
    tokenizer = source.tokenizer
    if tokenizer is None:
        raise CheckpointError(f"{source.spec}: no tokenizer in the checkpoint or beside it")
    return module.eval(), tokenizer


def load_hf_module(source: ResolvedInit) -> tuple[BertTaskModule, Tokenizer]:
    """A transformers `BertForSequenceClassification` / `BertForQuestionAnswering` directory
    as the bertlab task module with the same weights (the parameter names are the same)."""
    directory = source.path
    config = read_hf_config(directory)
    architectures = config.get("architectures") or []
    model, vocab_size = source.architecture, config["vocab_size"]
    # transformers' BERT and ModernBERT heads both map onto bertlab's (checkpoints/modernbert.py)
    architectures = [name.removeprefix("Modern") for name in architectures]
    if "BertForSequenceClassification" in architectures:
        module: BertTaskModule = _classification_module(config, model, vocab_size)
    elif "BertForQuestionAnswering" in architectures:
        positions = model.get("max_position_embeddings", QA_DEFAULT_MAX_LENGTH)
        module = QuestionAnsweringModule(
            model, {}, vocab_size, max_seq_length=min(QA_DEFAULT_MAX_LENGTH, positions)
        )
    else:
        raise CheckpointError(
            f"{directory / 'config.json'}: architectures={architectures}; bertlab-predict takes "
            "(Modern)BertForSequenceClassification or (Modern)BertForQuestionAnswering "
            "(bertlab-embed takes any BERT or ModernBERT)"
        )
    missing, _ = module.model.load_state_dict(source.state_dict, strict=False)
    missing = [key for key in missing if not key.startswith("bert.pooler.")]  # QA has no pooler
    if missing:
        raise CheckpointError(f"{directory}: the weights lack parameters, e.g. {missing[0]}")
    return module.eval(), _hf_tokenizer(source)


def _classification_module(config: dict, model: dict, vocab_size: int) -> ClassificationModule:
    id2label = config.get("id2label") or {}
    num_labels = len(id2label) or int(config.get("num_labels", 2))
    regression = config.get("problem_type") == "regression" or num_labels == 1
    names = [id2label.get(str(i)) for i in range(num_labels)]  # JSON keys are strings
    return ClassificationModule(
        model,
        {},
        vocab_size,
        num_labels=num_labels,
        metrics=["pearson"] if regression else ["accuracy"],
        regression=regression,
        label_names=None if regression or None in names else names,
    )


def _hf_tokenizer(source: ResolvedInit) -> Tokenizer:
    if source.tokenizer is None:
        raise CheckpointError(f"{source.path}: no tokenizer.json or vocab.txt in this directory")
    return source.tokenizer


def load_encoder(path: str | Path) -> tuple[BertModel, Tokenizer]:
    """The BERT encoder of a bertlab checkpoint, a Hugging Face directory or `hf:NAME`, ready
    for inference (eval mode, projections joined)."""
    source = resolve(path, key=None)
    if source.kind != HF_DIRECTORY:
        module, tokenizer = _load_bertlab_module(source)
        return join_projections(module.model.bert), tokenizer
    encoder = BertModel(BertConfig.from_dict(source.architecture))
    weights = {
        key.removeprefix("bert."): value
        for key, value in source.state_dict.items()
        if key.startswith("bert.")
    }
    missing, _ = encoder.load_state_dict(weights, strict=False)
    # A BertForQuestionAnswering checkpoint has no pooler; embeddings never use it.
    missing = [key for key in missing if not key.startswith("pooler.")]
    if missing:
        raise CheckpointError(f"{path}: the weights lack encoder parameters, e.g. {missing[0]}")
    return join_projections(encoder), _hf_tokenizer(source)
