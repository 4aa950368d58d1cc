"""Classification and regression: `label` + `probs`, or `score`, per input."""

from __future__ import annotations

import torch

from bertlab.tasks.classify import ClassificationModule


@torch.no_grad()
def classify(
    module: ClassificationModule, batch: dict[str, torch.Tensor], with_logits: bool = False
) -> list[dict]:
    """`label` + `probs` per row (label names when the task has them), or `score` for regression."""
    logits = module.model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    if module.hparams.regression:
        return [{"score": float(score)} for score in logits.squeeze(-1)]
    probabilities = logits.float().softmax(-1)
    label_names = module.hparams.get("label_names")
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
