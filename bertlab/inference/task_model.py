"""A fine-tuned model as inference sees it, whichever runtime computes it.

`classify`, `answer_questions` and `predict` take a `TaskModel`: the task's kind, the
settings its outputs are decoded with (label names; QA window length and n-best
decoding), and a `forward` from a padded int64 batch to the task's outputs. PyTorch
(`torch_task_model`) and ONNX Runtime (`bertlab.inference.onnx_runtime`) both build one,
so batching and decoding are the same code for both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from bertlab.errors import CheckpointError
from bertlab.inference.precision import autocast, for_precision
from bertlab.model import join_projections
from bertlab.tasks.base import BertTaskModule
from bertlab.tasks.classify import ClassificationModule
from bertlab.tasks.qa import QuestionAnsweringModule

CLASSIFICATION = "classification"
REGRESSION = "regression"
QUESTION_ANSWERING = "qa"

Batch = dict[str, torch.Tensor]
# classification: logits (B, labels); regression: scores (B,); QA: (start, end) (B, T) each
Outputs = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class TaskModel:
    kind: str  # CLASSIFICATION, REGRESSION or QUESTION_ANSWERING
    settings: Mapping[str, Any]  # label_names; QA: max_seq_length and the decoding keys
    max_positions: int  # the longest sequence the model takes
    forward: Callable[[Batch], Outputs]


def task_kind(module: BertTaskModule) -> str:
    if isinstance(module, QuestionAnsweringModule):
        return QUESTION_ANSWERING
    if isinstance(module, ClassificationModule):
        return REGRESSION if module.hparams.get("regression") else CLASSIFICATION
    raise CheckpointError(
        f"{type(module).__name__} checkpoint: bertlab-predict runs classification, regression "
        "and question answering checkpoints (bertlab-embed gives a pretrained model's vectors)"
    )


def torch_task_model(module: BertTaskModule, precision: str = "fp32") -> TaskModel:
    """`module`'s network run by PyTorch, in inference mode (eval, projections joined);
    `precision="bf16"`: its products in bf16 (bertlab.inference.precision; float32 outputs)."""
    kind = task_kind(module)
    network = join_projections(for_precision(module.model, precision))

    @torch.inference_mode()
    def forward(batch: Batch) -> Outputs:
        with autocast(precision):
            outputs = network(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        if kind == QUESTION_ANSWERING:
            return tuple(output.float() for output in outputs)
        return outputs.float().squeeze(-1) if kind == REGRESSION else outputs.float()

    return TaskModel(kind, dict(module.hparams), network.config.max_position_embeddings, forward)
