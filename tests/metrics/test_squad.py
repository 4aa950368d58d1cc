"""SquadMetric (bertlab/metrics/squad.py): windows from any rank, each question scored once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bertlab.metrics import SquadMetric
from bertlab.qa.read import SquadExample, SquadSplit
from bertlab.qa.windows import SquadEvalSet, WindowSettings, build_features

from support.data import QUESTION
from support.models import squad_tokenizer
from support.runs import squad_datamodule


def oracle_logits(eval_set, rows, width):
    """Logits that point at each window's gold answer (or [CLS] when it has none)."""
    start = torch.full((len(rows), width), -5.0)
    end = torch.full((len(rows), width), -5.0)
    for position, row in enumerate(rows):
        example = eval_set.split.examples[eval_set.example_index[row]]
        offsets = eval_set.offsets[row]
        token_start, token_end = 0, 0
        if example.answer_texts:
            answer_start = example.answer_starts[0]
            answer_end = answer_start + len(example.answer_texts[0])
            inside = np.nonzero(
                (offsets[:, 0] >= answer_start)
                & (offsets[:, 1] <= answer_end)
                & (offsets[:, 0] >= 0)
            )[0]
            whole = (
                len(inside)
                and offsets[inside[0], 0] == answer_start
                and offsets[inside[-1], 1] == answer_end
            )
            if whole:
                token_start, token_end = inside[0], inside[-1]
        start[position, token_start] = 5.0
        end[position, token_end] = 5.0
    return start, end


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
