"""SquadMetric (bertlab/metrics/squad.py): windows from any rank, each question scored once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qa.squad_files import QUESTION, oracle_logits, squad_datamodule, squad_tokenizer

from bertlab.metrics import SquadMetric
from bertlab.qa.read import SquadExample, SquadSplit
from bertlab.qa.windows import SquadEvalSet, WindowSettings, build_features


@pytest.fixture(scope="module")
def tokenizer():
    return squad_tokenizer()


@pytest.mark.parametrize("version_2", [False, True])
def test_metric_scores_each_question_once_whatever_the_order(tmp_path, tokenizer, version_2):
    datamodule = squad_datamodule(tmp_path, tokenizer, version_2=version_2)
    eval_set = datamodule.eval_set()
    rows = np.arange(len(eval_set.lengths))
    metric = SquadMetric(32, version_2_with_negative=version_2)
    metric.eval_set = eval_set
    # As two ranks would send them: interleaved, out of order, one window twice.
    for shard in (rows[1::2], rows[::2], rows[:1]):
        start, end = oracle_logits(eval_set, shard, 32)
        width = int(eval_set.lengths[shard].max())  # batches are cut to their longest window
        metric.update(torch.as_tensor(shard), start[:, :width], end[:, :width])
    figures = metric.compute()
    assert figures["exact_match"] == 100.0 and figures["f1"] == 100.0
    assert len(metric.answers.predictions) == len(eval_set.split.examples)
    if version_2:
        assert figures["HasAns_exact"] == 100.0 and figures["NoAns_exact"] == 100.0
        assert set(metric.answers.null_odds) == set(metric.answers.predictions)


def test_question_without_windows_gets_an_empty_answer(tokenizer):
    split = SquadSplit(
        contexts=["apple code: river", ""],
        examples=[
            SquadExample("has", QUESTION, 0, ("river",), (12,), False),
            SquadExample("empty", QUESTION, 1, (), (), True),
        ],
        source="memory",
    )
    arrays = build_features(
        split, tokenizer, WindowSettings(32, 8, 8), with_labels=False, with_offsets=True
    )
    assert list(arrays["example_index"]) == [0]  # no window for the empty context
    eval_set = SquadEvalSet(
        split,
        arrays["example_index"],
        arrays["offsets"],
        arrays["token_is_max_context"],
        arrays["lengths"],
    )
    metric = SquadMetric(32, version_2_with_negative=True)
    metric.eval_set = eval_set
    start, end = oracle_logits(eval_set, [0], 32)
    metric.update(torch.tensor([0]), start, end)
    figures = metric.compute()
    assert metric.answers.predictions == {"has": "river", "empty": ""}
    assert figures["exact_match"] == 100.0 and figures["NoAns_exact"] == 100.0
