"""Classification and regression metrics on torchmetrics, by the names task configs use (see shared
ANCHORS.md).

torchmetrics objects keep running state and synchronise it across DDP processes
when computed, so every evaluation example counts once whatever the device count.
Classification metrics take predicted class ids; regression metrics take scores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torchmetrics import (
    Accuracy,
    F1Score,
    Metric,
    MetricCollection,
    PearsonCorrCoef,
    SpearmanCorrCoef,
)
from torchmetrics.classification import MulticlassMatthewsCorrCoef

from bertlab.errors import ConfigError


class MatthewsCorrCoef(MulticlassMatthewsCorrCoef):
    """Matthews correlation as GLUE scores CoLA (scikit-learn's definition).

    torchmetrics returns a nonzero value in the degenerate binary case (one class
    never predicted); the official score is 0 there, so a model that answers
    "acceptable" to everything scores 0 rather than about 0.58.
    """

    def compute(self) -> torch.Tensor:
        return matthews_from_confusion(self.confmat)


def matthews_from_confusion(confusion: torch.Tensor) -> torch.Tensor:
    """Multiclass MCC from a (true, predicted) count matrix; 0 when undefined."""
    confusion = confusion.double()
    true_counts, predicted_counts = confusion.sum(1), confusion.sum(0)
    correct, total = confusion.trace(), confusion.sum()
    covariance = correct * total - true_counts @ predicted_counts
    spread_predicted = total**2 - predicted_counts @ predicted_counts
    spread_true = total**2 - true_counts @ true_counts
    denominator = (spread_predicted * spread_true).sqrt()
    if denominator == 0:
        return torch.tensor(0.0)
    return (covariance / denominator).float()


def _binary_f1(num_labels: int) -> Metric:
    if num_labels != 2:
        raise ConfigError(
            "task.metrics: metric 'f1' is binary F1 (positive class 1); this task has "
            f"{num_labels} labels, use 'macro_f1'"
        )
    return F1Score(task="binary")


METRICS: dict[str, Callable[[int], Metric]] = {
    "accuracy": lambda num_labels: Accuracy(task="multiclass", num_classes=num_labels),
    "f1": _binary_f1,  # GLUE MRPC and QQP
    "macro_f1": lambda num_labels: F1Score(
        task="multiclass", num_classes=num_labels, average="macro"
    ),
    "matthews_corrcoef": lambda num_labels: MatthewsCorrCoef(num_classes=num_labels),  # CoLA
    "pearson": lambda num_labels: PearsonCorrCoef(),
    "spearman": lambda num_labels: SpearmanCorrCoef(),
}
REGRESSION_METRICS = frozenset({"pearson", "spearman"})


def check_metric_names(names: Sequence[str], regression: bool) -> None:
    """Fail on an unknown name, or on a metric that does not fit the task's output."""
    for name in names:
        if name not in METRICS:
            raise ConfigError(f"task.metrics: unknown metric {name!r}; allowed: {sorted(METRICS)}")
        if (name in REGRESSION_METRICS) != regression:
            kind = "regression" if regression else "classification"
            fitting = sorted(n for n in METRICS if (n in REGRESSION_METRICS) == regression)
            raise ConfigError(
                f"task.metrics: {name!r} does not apply to a {kind} task; use one of {fitting}"
            )


def build_metrics(
    names: Sequence[str], num_labels: int, regression: bool = False
) -> MetricCollection:
    """A MetricCollection keyed by metric name (`accuracy`, `f1`, ...)."""
    check_metric_names(names, regression)
    return MetricCollection({name: METRICS[name](num_labels) for name in names})
