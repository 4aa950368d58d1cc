"""SQuAD EM / F1 as a torchmetrics `Metric` that works under DDP.

A question's windows may land on different ranks, so a rank cannot decode a question
alone. The metric therefore keeps each window's start and end logits (padded to
`max_seq_length`) and its row number; `compute()` gathers them from every rank, keeps
each window once (the distributed sampler repeats some to even out the ranks), decodes
every question once, and scores with the official rules (`bertlab.qa.score`). After
`compute()`, `answers` holds what the official output files contain.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from bertlab.qa.decode import DecodingSettings, QuestionAnswers, Window, decode_answers
from bertlab.qa.score import GoldQuestion, evaluate_v1, evaluate_v2
from bertlab.qa.windows import SquadEvalSet

# The official v2.0 dict's "exact" is logged as exact_match, like v1.1's, so one objective
# name (val/f1) and one EM name serve both; counts ("total") are not metrics.
_RENAMED = {"exact": "exact_match"}


class SquadMetric(Metric):
    """Gathers window logits across ranks; `compute()` returns the official figures in percent."""

    full_state_update = False
    higher_is_better = True

    def __init__(
        self,
        max_seq_length: int,
        n_best_size: int = 20,
        max_answer_length: int = 30,
        null_score_diff_threshold: float = 0.0,
        version_2_with_negative: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.max_seq_length = max_seq_length
        self.settings = DecodingSettings(
            n_best_size, max_answer_length, null_score_diff_threshold, version_2_with_negative
        )
        self.add_state("feature_index", default=[], dist_reduce_fx="cat")
        self.add_state("start_logits", default=[], dist_reduce_fx="cat")
        self.add_state("end_logits", default=[], dist_reduce_fx="cat")
        self.eval_set: SquadEvalSet | None = None  # set before validation (the module does it)
        self.answers: QuestionAnswers | None = None
        self.official: dict = {}

    def update(
        self, feature_index: torch.Tensor, start_logits: torch.Tensor, end_logits: torch.Tensor
    ) -> None:
        """feature_index (B,): window rows; logits (B, T) with T <= max_seq_length."""
        pad = self.max_seq_length - start_logits.shape[1]
        self.feature_index.append(feature_index.detach().long())
        self.start_logits.append(F.pad(start_logits.detach().float(), (0, pad)))
        self.end_logits.append(F.pad(end_logits.detach().float(), (0, pad)))

    def compute(self) -> dict[str, torch.Tensor]:
        if self.eval_set is None:
            raise RuntimeError(
                "SquadMetric.eval_set is not set: it needs the questions and window offsets"
            )
        feature_index = dim_zero_cat(self.feature_index).cpu().numpy()
        rows, first = np.unique(feature_index, return_index=True)  # each window once, in row order
        start_logits = dim_zero_cat(self.start_logits)[torch.as_tensor(first)].cpu().numpy()
        end_logits = dim_zero_cat(self.end_logits)[torch.as_tensor(first)].cpu().numpy()
        questions, self.answers = self._decode(rows, start_logits, end_logits)
        self.official = self._score(questions, self.answers)
        return {
            _RENAMED.get(name, name): torch.tensor(float(value))
            for name, value in self.official.items()
            if not name.endswith("total")
        }

    def _decode(self, rows: np.ndarray, start_logits: np.ndarray, end_logits: np.ndarray):
        """Decode every question of a full pass; of a partial one (sanity check), those seen."""
        eval_set = self.eval_set
        windows = defaultdict(list)
        for position, row in enumerate(rows):
            windows[int(eval_set.example_index[row])].append(
                Window(
                    start_logits=start_logits[position],
                    end_logits=end_logits[position],
                    offsets=np.asarray(eval_set.offsets[row]),
                    token_is_max_context=np.asarray(eval_set.token_is_max_context[row]),
                    length=int(eval_set.lengths[row]),
                )
            )
        # A full pass also answers ("") the questions that have no window (an empty context).
        seen_every_window = len(rows) == len(eval_set.lengths)
        indexes = range(len(eval_set.split.examples)) if seen_every_window else sorted(windows)
        examples = [eval_set.split.examples[index] for index in indexes]
        answers = decode_answers(
            [example.qid for example in examples],
            [eval_set.split.contexts[example.context_index] for example in examples],
            [windows.get(index, []) for index in indexes],
            self.settings,
        )
        questions = [GoldQuestion(example.qid, example.answer_texts) for example in examples]
        return questions, answers

    def _score(self, questions: list[GoldQuestion], answers: QuestionAnswers) -> dict:
        if not questions:
            return {}
        if self.settings.version_2_with_negative:
            # As `evaluate-v2.0.py dev.json predictions.json --na-prob-file null_odds.json`.
            return evaluate_v2(questions, answers.predictions, answers.null_odds)
        return evaluate_v1(questions, answers.predictions)
