"""Classification and regression metrics against hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bertlab.metrics import build_metrics

# ---- metrics against hand computation ---------------------------------------------------------


def hand_pearson(x: list[float], y: list[float]) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))


def average_ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def test_classification_metrics_match_their_definitions() -> None:
    predicted = [1, 0, 1, 1, 0, 1, 0, 0, 1, 1]
    gold = [1, 0, 0, 1, 0, 1, 1, 0, 0, 1]
    metrics = build_metrics(["accuracy", "f1", "matthews_corrcoef"], num_labels=2)
    metrics.update(
        torch.tensor(predicted[:4]), torch.tensor(gold[:4])
    )  # two batches, as in validation
    metrics.update(torch.tensor(predicted[4:]), torch.tensor(gold[4:]))
    values = {k: float(v) for k, v in metrics.compute().items()}
    tp = sum(p == g == 1 for p, g in zip(predicted, gold, strict=True))
    tn = sum(p == g == 0 for p, g in zip(predicted, gold, strict=True))
    fp = sum(p == 1 and g == 0 for p, g in zip(predicted, gold, strict=True))
    fn = sum(p == 0 and g == 1 for p, g in zip(predicted, gold, strict=True))
    assert values["accuracy"] == pytest.approx((tp + tn) / 10)
    assert values["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert values["matthews_corrcoef"] == pytest.approx(mcc, abs=1e-6)


def test_matthews_is_zero_when_one_class_is_never_predicted() -> None:
    metric = build_metrics(["matthews_corrcoef"], num_labels=2)
    metric.update(torch.tensor([1, 1, 1, 1]), torch.tensor([1, 0, 1, 1]))
    assert float(metric.compute()["matthews_corrcoef"]) == 0.0  # scikit-learn's (GLUE's) value


def test_multiclass_matthews_and_accuracy() -> None:
    predicted, gold = [0, 1, 2, 2, 1, 0, 2], [0, 1, 2, 1, 1, 2, 2]
    metrics = build_metrics(["accuracy", "matthews_corrcoef"], num_labels=3)
    metrics.update(torch.tensor(predicted), torch.tensor(gold))
    values = metrics.compute()
    confusion = np.zeros((3, 3))
    for p, g in zip(predicted, gold, strict=True):
        confusion[g, p] += 1
    t, p = confusion.sum(1), confusion.sum(0)
    c, s = np.trace(confusion), confusion.sum()
    expected = (c * s - t @ p) / math.sqrt((s**2 - p @ p) * (s**2 - t @ t))
    assert float(values["accuracy"]) == pytest.approx(5 / 7)
    assert float(values["matthews_corrcoef"]) == pytest.approx(expected, abs=1e-6)


def test_pearson_and_spearman_match_their_definitions() -> None:
    predicted = [0.1, 2.0, 2.0, 3.5, 4.9, 1.0]
    gold = [0.0, 1.8, 2.6, 3.0, 5.0, 1.8]
    metrics = build_metrics(["pearson", "spearman"], num_labels=1, regression=True)
    metrics.update(torch.tensor(predicted), torch.tensor(gold))
    values = metrics.compute()
    assert float(values["pearson"]) == pytest.approx(hand_pearson(predicted, gold), abs=1e-5)
    spearman = hand_pearson(average_ranks(predicted), average_ranks(gold))
    assert float(values["spearman"]) == pytest.approx(spearman, abs=1e-5)


def test_unknown_metric_lists_the_allowed_names() -> None:
    with pytest.raises(
        ValueError, match=r"allowed: \['accuracy', 'f1', 'macro_f1', 'matthews_corrcoef'"
    ):
        build_metrics(["bleu"], num_labels=2)
    with pytest.raises(ValueError, match="use 'macro_f1'"):
        build_metrics(["f1"], num_labels=3)
