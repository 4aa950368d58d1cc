"""From start/end logits of every window to one answer per question (reference decoding).

For each window: the `n_best_size` best starts x best ends among its real tokens; a span
is kept if both ends are context tokens, end >= start, it is at most
`max_answer_length` tokens, and its start token has maximum context in this window.
Candidates of all windows of a question compete on start + end logit; equal texts are
kept once. SQuAD 2.0 adds the null answer: its score is the smallest [CLS] start + end
over the windows, and "" is predicted when null score - best span score exceeds
`null_score_diff_threshold` (that difference is the question's entry in null_odds.json).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CLS_POSITION = 0


@dataclass(frozen=True)
class DecodingSettings:
    n_best_size: int = 20
    max_answer_length: int = 30
    null_score_diff_threshold: float = 0.0
    version_2_with_negative: bool = False


@dataclass(frozen=True)
class Candidate:
    text: str
    start_logit: float
    end_logit: float

    @property
    def score(self) -> float:
        return self.start_logit + self.end_logit


@dataclass
class QuestionAnswers:
    """Decoded answers of a split: the official output files' contents."""

    predictions: dict[str, str] = field(default_factory=dict)
    nbest: dict[str, list[dict]] = field(default_factory=dict)
    null_odds: dict[str, float] = field(default_factory=dict)  # v2 only


@dataclass(frozen=True)
class Window:
    """One window's logits and alignment: `offsets[t]` is token t's character span, -1 if not
    context.
    """

    start_logits: np.ndarray  # (T,)
    end_logits: np.ndarray  # (T,)
    offsets: np.ndarray  # (T, 2)
    token_is_max_context: np.ndarray  # (T,)
    length: int  # real tokens, [CLS] to the last [SEP]


def top_indexes(logits: np.ndarray, n_best_size: int) -> np.ndarray:
    """Positions of the `n_best_size` largest logits, best first (stable on ties)."""
    return np.argsort(-logits, kind="stable")[:n_best_size]


def window_spans(window: Window, settings: DecodingSettings) -> list[tuple[int, int]]:
    """The (start, end) token pairs of a window allowed by the reference rules."""
    start_logits, end_logits = (
        window.start_logits[: window.length],
        window.end_logits[: window.length],
    )
    starts = top_indexes(start_logits, settings.n_best_size)[:, None]  # (k, 1)
    ends = top_indexes(end_logits, settings.n_best_size)[None, :]  # (1, k)
    in_context = window.offsets[: window.length, 0] >= 0
    allowed = (
        in_context[starts]
        & in_context[ends]
        & window.token_is_max_context[: window.length][starts]
        & (ends >= starts)
        & (ends - starts + 1 <= settings.max_answer_length)
    )
    start_rows, end_cols = np.nonzero(allowed)
    return list(zip(starts[start_rows, 0].tolist(), ends[0, end_cols].tolist(), strict=True))


def decode_question(
    context: str, windows: Sequence[Window], settings: DecodingSettings
) -> tuple[str, list[dict], float | None]:
    """(prediction, n-best list in the official format, null odds or None for v1.1)."""
    candidates = []
    for window in windows:
        for start, end in window_spans(window, settings):
            text = context[window.offsets[start, 0] : window.offsets[end, 1]]
            candidates.append(
                Candidate(text, float(window.start_logits[start]), float(window.end_logits[end]))
            )
    null = _null_candidate(windows) if settings.version_2_with_negative else None
    nbest = _nbest(candidates, null, settings.n_best_size)
    best_span = next((candidate for candidate in nbest if candidate.text), None)
    if null is None:
        return (best_span.text if best_span else ""), _nbest_json(nbest), None
    if best_span is None:  # only the null answer survived: nothing to weigh it against
        return "", _nbest_json(nbest), null.score
    null_odds = null.score - best_span.score
    prediction = "" if null_odds > settings.null_score_diff_threshold else best_span.text
    return prediction, _nbest_json(nbest), null_odds


def _null_candidate(windows: Sequence[Window]) -> Candidate | None:
    """The window whose [CLS] start + end is smallest: the least confident "no answer"."""
    nulls = [
        Candidate(
            "", float(window.start_logits[CLS_POSITION]), float(window.end_logits[CLS_POSITION])
        )
        for window in windows
    ]
    return min(nulls, key=lambda candidate: candidate.score, default=None)


def _nbest(
    candidates: list[Candidate], null: Candidate | None, n_best_size: int
) -> list[Candidate]:
    ranked = sorted(
        candidates + ([null] if null else []), key=lambda candidate: candidate.score, reverse=True
    )
    nbest, seen_texts = [], set()
    for candidate in ranked:
        if len(nbest) >= n_best_size:
            break
        if candidate.text in seen_texts:
            continue
        seen_texts.add(candidate.text)
        nbest.append(candidate)
    if null is not None and "" not in seen_texts:
        nbest.append(null)  # the reference always lists the null answer in v2
    return nbest


def _nbest_json(nbest: list[Candidate]) -> list[dict]:
    if not nbest:
        return []
    scores = np.array([candidate.score for candidate in nbest])
    probabilities = np.exp(scores - scores.max())
    probabilities /= probabilities.sum()
    return [
        {
            "text": c.text,
            "probability": float(p),
            "start_logit": c.start_logit,
            "end_logit": c.end_logit,
        }
        for c, p in zip(nbest, probabilities, strict=True)
    ]


def decode_answers(
    qids: Sequence[str],
    contexts: Sequence[str],
    windows_per_question: Sequence[Sequence[Window]],
    settings: DecodingSettings,
) -> QuestionAnswers:
    """Decode every question; a question without windows (empty context) predicts ""."""
    answers = QuestionAnswers()
    for qid, context, windows in zip(qids, contexts, windows_per_question, strict=True):
        prediction, nbest, null_odds = decode_question(context, windows, settings)
        answers.predictions[qid] = prediction
        answers.nbest[qid] = nbest
        if settings.version_2_with_negative:
            # No window (empty context): "" is the only answer, so its odds carry no information.
            answers.null_odds[qid] = null_odds if null_odds is not None else 0.0
    return answers


def write_answer_files(
    answers: QuestionAnswers, directory: str | Path, version_2_with_negative: bool
) -> list[Path]:
    """predictions.json, nbest_predictions.json and (v2) null_odds.json, as the reference writes
    them.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {"predictions.json": answers.predictions, "nbest_predictions.json": answers.nbest}
    if version_2_with_negative:
        files["null_odds.json"] = answers.null_odds
    written = []
    for name, content in files.items():
        (directory / name).write_text(
            json.dumps(content, indent=4, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        written.append(directory / name)
    return written
