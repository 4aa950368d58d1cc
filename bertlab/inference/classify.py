"""Classification and regression: `label` + `probs`, or `score`, per input."""

from __future__ import annotations

import torch

from bertlab.inference.task_model import REGRESSION, Batch, TaskModel


def classify(model: TaskModel, batch: Batch, with_logits: bool = False) -> list[dict]:
    """`label` + `probs` per row (label names when the task has them), or `score` for regression."""
    outputs = model.forward(batch)
    if model.kind == REGRESSION:
        return [{"score": float(score)} for score in outputs]
    logits: torch.Tensor = outputs
    probabilities = logits.float().softmax(-1)
    label_names = model.settings.get("label_names")
    results = []
    for row_logits, row_probabilities in zip(logits, probabilities, strict=True):
        label_id = int(row_probabilities.argmax())
        result = {
            "label": label_names[label_id] if label_names else label_id,
            "probs": row_probabilities.tolist(),
        }
        if with_logits:
            result["logits"] = row_logits.tolist()
        results.append(result)
    return results
