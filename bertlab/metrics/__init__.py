"""Task metrics on torchmetrics: classification and regression by name, SQuAD's official scores."""

from bertlab.metrics.classification import (
    METRICS,
    REGRESSION_METRICS,
    MatthewsCorrCoef,
    build_metrics,
    check_metric_names,
    matthews_from_confusion,
)
from bertlab.metrics.squad import SquadMetric

__all__ = [
    "METRICS",
    "REGRESSION_METRICS",
    "MatthewsCorrCoef",
    "SquadMetric",
    "build_metrics",
    "check_metric_names",
    "matthews_from_confusion",
]
