"""The official SQuAD evaluation (evaluate-v1.1.py and evaluate-v2.0.py), as pure functions.

Every rule here reproduces the official scripts, quirks included, because published
SQuAD figures are only comparable when scored by exactly these rules:

- v1.1: a missing prediction scores 0 and still counts in the total; EM and F1 take the
  max over the gold answers; F1 is 0 when nothing overlaps, even if both sides are empty.
- v2.0: gold answers that normalize to "" are dropped and an unanswerable question's
  gold is [""]; when either side has no tokens, EM = F1 = 1 if both are empty else 0.
  The null odds (`--na-prob-file`) override a prediction with "no answer" when above
  `na_prob_thresh` (default 1.0), and give `best_exact`/`best_f1` and their thresholds.
  The official v2.0 script crashes on a missing prediction; here that is a `ValueError`
  naming the question, raised before scoring.
- Question ids that repeat are accepted, as both scripts accept them: v1.1 scores every
  question against its id's one prediction, v2.0 keeps the last question of each id.
  `evaluate_files` reports them, so the command can warn.

The pure functions take parsed data and raise ValueError; `evaluate_files` reads the files
and raises DataError naming the file at fault.

Questions are visited in file order so sums match the official scripts to the last bit.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bertlab.errors import DataError

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


@dataclass(frozen=True)
class GoldQuestion:
    """One question of a SQuAD file: its id and the texts of its gold answers."""

    qid: str
    answers: tuple[str, ...]


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation, drop articles, collapse whitespace (official order)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


# ---------------------------------------------------------------- v1.1


def exact_match_v1(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_v1(prediction: str, gold: str) -> float:
    prediction_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    return _token_f1(prediction_tokens, gold_tokens)


def _token_f1(prediction_tokens: list[str], gold_tokens: list[str]) -> float:
    common = Counter(prediction_tokens) & Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall)


def evaluate_v1(questions: Iterable[GoldQuestion], predictions: Mapping[str, str]) -> dict:
    """`{"exact_match", "f1"}` of evaluate-v1.1.py, in percent."""
    exact_match = f1 = 0.0
    total = 0
    for question in questions:
        total += 1
        if question.qid not in predictions:  # scores 0, still counted
            continue
        prediction = predictions[question.qid]
        exact_match += max(exact_match_v1(prediction, gold) for gold in question.answers)
        f1 += max(f1_v1(prediction, gold) for gold in question.answers)
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


# ---------------------------------------------------------------- v2.0


def _tokens_v2(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def exact_v2(gold: str, prediction: str) -> int:
    return int(normalize_answer(gold) == normalize_answer(prediction))


def f1_v2(gold: str, prediction: str) -> float:
    gold_tokens, prediction_tokens = _tokens_v2(gold), _tokens_v2(prediction)
    if not gold_tokens or not prediction_tokens:
        # An empty side means "no answer": right only if both say so.
        return float(gold_tokens == prediction_tokens)
    return _token_f1(prediction_tokens, gold_tokens)


def gold_answers_v2(question: GoldQuestion) -> list[str]:
    """The gold texts that survive normalization, or [""] for an unanswerable question."""
    return [text for text in question.answers if normalize_answer(text)] or [""]


def raw_scores_v2(
    questions: Iterable[GoldQuestion], predictions: Mapping[str, str]
) -> tuple[dict[str, float], dict[str, float]]:
    """Per-question EM and F1 (max over the gold answers), before any null-odds override."""
    exact_scores: dict[str, float] = {}
    f1_scores: dict[str, float] = {}
    for question in questions:
        golds = gold_answers_v2(question)
        prediction = predictions[question.qid]
        exact_scores[question.qid] = max(exact_v2(gold, prediction) for gold in golds)
        f1_scores[question.qid] = max(f1_v2(gold, prediction) for gold in golds)
    return exact_scores, f1_scores


def apply_no_answer_threshold(
    scores: Mapping[str, float],
    null_odds: Mapping[str, float],
    has_answer: Mapping[str, bool],
    na_prob_thresh: float,
) -> dict[str, float]:
    """Where the null odds exceed the threshold the prediction counts as "no answer"."""
    return {
        qid: float(not has_answer[qid]) if null_odds[qid] > na_prob_thresh else score
        for qid, score in scores.items()
    }


def _eval_dict(exact: Mapping[str, float], f1: Mapping[str, float], qids: list[str]) -> dict:
    total = len(qids)
    return {
        "exact": 100.0 * sum(exact[qid] for qid in qids) / total,
        "f1": 100.0 * sum(f1[qid] for qid in qids) / total,
        "total": total,
    }


def find_best_threshold(
    predictions: Mapping[str, str],
    scores: Mapping[str, float],
    null_odds: Mapping[str, float],
    has_answer: Mapping[str, bool],
) -> tuple[float, float]:
    """The best score (percent) over null-odds thresholds, and that threshold.

    Starts from "answer nothing" (every unanswerable question right) and, in
    increasing null odds, lets one question at a time keep its span prediction.
    """
    current = best = sum(1 for qid in has_answer if not has_answer[qid])
    best_threshold = 0.0
    for qid in sorted(null_odds, key=lambda qid: null_odds[qid]):
        if qid not in scores:
            continue
        if has_answer[qid]:
            current += scores[qid]
        elif predictions[qid]:
            current -= 1
        if current > best:
            best, best_threshold = current, null_odds[qid]
    return 100.0 * best / len(scores), best_threshold


def evaluate_v2(
    questions: Iterable[GoldQuestion],
    predictions: Mapping[str, str],
    null_odds: Mapping[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict:
    """The dict evaluate-v2.0.py prints, keys in its order.

    Raises ValueError naming the first question without a prediction (or without null
    odds), where the official script would crash.
    """
    questions = list(questions)
    _check_complete(questions, predictions, "prediction")
    with_null_odds = null_odds is not None
    if null_odds is None:
        null_odds = {qid: 0.0 for qid in predictions}
    else:
        _check_complete(questions, null_odds, "null odds")
    has_answer = {question.qid: bool(question.answers) for question in questions}
    exact_raw, f1_raw = raw_scores_v2(questions, predictions)
    exact = apply_no_answer_threshold(exact_raw, null_odds, has_answer, na_prob_thresh)
    f1 = apply_no_answer_threshold(f1_raw, null_odds, has_answer, na_prob_thresh)
    result = _eval_dict(exact, f1, list(exact))
    for prefix, wanted in (("HasAns", True), ("NoAns", False)):
        qids = [qid for qid, answered in has_answer.items() if answered == wanted]
        if qids:
            result.update(
                {f"{prefix}_{key}": value for key, value in _eval_dict(exact, f1, qids).items()}
            )
    if with_null_odds:
        best_exact, exact_threshold = find_best_threshold(
            predictions, exact_raw, null_odds, has_answer
        )
        best_f1, f1_threshold = find_best_threshold(predictions, f1_raw, null_odds, has_answer)
        result.update(
            best_exact=best_exact,
            best_exact_thresh=exact_threshold,
            best_f1=best_f1,
            best_f1_thresh=f1_threshold,
        )
    return result


def _check_complete(questions: list[GoldQuestion], values: Mapping[str, object], what: str) -> None:
    for question in questions:
        if question.qid not in values:
            raise ValueError(f"no {what} for question {question.qid!r}")


# ---------------------------------------------------------------- SQuAD files


def is_version_2(dataset_json: Mapping) -> bool:
    """SQuAD 2.0 files say `"version": "v2.0"`; any `is_impossible` flag also means 2.0."""
    if str(dataset_json.get("version", "")).lstrip("v").startswith("2"):
        return True
    return any("is_impossible" in qa for qa in _iter_qas(dataset_json.get("data", [])))


def _iter_qas(articles: Iterable[Mapping]) -> Iterable[Mapping]:
    for article in articles:
        for paragraph in article["paragraphs"]:
            yield from paragraph["qas"]


def gold_questions(dataset_json: Mapping) -> list[GoldQuestion]:
    """The questions of a parsed SQuAD file, in file order.

    Raises ValueError naming the record when the structure is not SQuAD's.
    """
    questions = []
    for article_number, article in enumerate(_field(dataset_json, "data", "the file")):
        where = f"data[{article_number}]"
        for paragraph_number, paragraph in enumerate(_field(article, "paragraphs", where)):
            paragraph_where = f"{where}.paragraphs[{paragraph_number}]"
            for qa_number, qa in enumerate(_field(paragraph, "qas", paragraph_where)):
                questions.append(_gold_question(qa, f"{paragraph_where}.qas[{qa_number}]"))
    return questions


def _gold_question(qa: Mapping, where: str) -> GoldQuestion:
    qid = _field(qa, "id", where)
    answers = _field(qa, "answers", f"question {qid!r}")
    try:
        texts = tuple(str(answer["text"]) for answer in answers)
    except (KeyError, TypeError) as error:
        raise ValueError(f"question {qid!r}: an answer has no 'text' field") from error
    return GoldQuestion(qid=str(qid), answers=texts)


def _field(record: object, key: str, where: str):
    if not isinstance(record, Mapping) or key not in record:
        raise ValueError(f"{where}: missing {key!r}")
    return record[key]


def evaluate_questions(
    questions: list[GoldQuestion],
    version_2: bool,
    predictions: Mapping[str, str],
    null_odds: Mapping[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict:
    """What the official script of that version prints for these questions."""
    if version_2:
        return evaluate_v2(questions, predictions, null_odds, na_prob_thresh)
    for question in questions:
        if not question.answers:  # evaluate-v1.1.py would crash on max([])
            raise ValueError(f"question {question.qid!r}: no gold answer in a v1.1 file")
    return evaluate_v1(questions, predictions)


def evaluate_file(
    dataset_json: Mapping,
    predictions: Mapping[str, str],
    null_odds: Mapping[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict:
    """What the official script for this file's version prints."""
    questions = gold_questions(dataset_json)
    return evaluate_questions(
        questions, is_version_2(dataset_json), predictions, null_odds, na_prob_thresh
    )


def no_answer_baseline(questions: Iterable[GoldQuestion]) -> dict[str, float]:
    """v2.0 scores of answering "" to every question: the share of unanswerable questions."""
    questions = list(questions)
    scores = evaluate_v2(questions, {question.qid: "" for question in questions})
    return {"no_answer_exact_match": scores["exact"], "no_answer_f1": scores["f1"]}


def repeated_ids(questions: Iterable[GoldQuestion]) -> list[str]:
    """Ids that more than one question uses, in file order."""
    counts = Counter(question.qid for question in questions)
    return [qid for qid, count in counts.items() if count > 1]


# ---------------------------------------------------------------- the files the command reads


@dataclass
class FileEvaluation:
    """The official figures for a data file and a predictions file, and what to warn about."""

    scores: dict
    version_2: bool
    unanswered: list[str]  # v1.1: questions without a prediction (each scores 0)
    repeated_ids: list[str]  # ids of several questions: the official scripts accept them


def evaluate_files(
    data_file: str,
    pred_file: str,
    na_prob_file: str | None = None,
    na_prob_thresh: float = 1.0,
) -> FileEvaluation:
    """Score `pred_file` on `data_file` as the official script of the data's version does.

    Raises DataError naming the file at fault: the data, the predictions or the null odds.
    """
    dataset_json = load_json(data_file, "SQuAD data")
    if not isinstance(dataset_json, dict):
        raise DataError(data_file, "expected a SQuAD object with a 'data' list")
    predictions = load_mapping(pred_file, "answer", str)
    null_odds = load_mapping(na_prob_file, "null odds", (int, float)) if na_prob_file else None
    try:
        questions = gold_questions(dataset_json)
        version_2 = is_version_2(dataset_json)
    except ValueError as error:
        raise DataError(data_file, str(error)) from error
    if version_2:  # evaluate-v2.0.py would crash on a missing one
        _require_every_question(questions, predictions, pred_file, "prediction")
        if null_odds is not None:
            _require_every_question(questions, null_odds, na_prob_file, "null odds")
    try:
        scores = evaluate_questions(questions, version_2, predictions, null_odds, na_prob_thresh)
    except ValueError as error:
        raise DataError(data_file, str(error)) from error
    unanswered = [] if version_2 else [q.qid for q in questions if q.qid not in predictions]
    return FileEvaluation(scores, version_2, unanswered, repeated_ids(questions))


def _require_every_question(
    questions: list[GoldQuestion], values: Mapping[str, object], path: str, what: str
) -> None:
    for question in questions:
        if question.qid not in values:
            raise DataError(path, f"no {what} for question {question.qid!r}")


def load_json(path: str, what: str):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as error:
        raise DataError(path, f"cannot read {what}: {error.strerror}") from error
    except json.JSONDecodeError as error:
        raise DataError(path, f"not valid JSON: {error.msg}", line=error.lineno) from error


def load_mapping(path: str, what: str, value_type: type | tuple[type, ...]) -> dict:
    """A JSON object {question id: value}, every value of `value_type`."""
    mapping = load_json(path, what)
    if not isinstance(mapping, dict):
        raise DataError(path, f"expected a JSON object {{question id: {what}}}")
    type_name = "number" if isinstance(value_type, tuple) else "string"
    for qid, value in mapping.items():
        if not isinstance(value, value_type) or isinstance(value, bool):
            raise DataError(path, f"question {qid!r}: {what} is {value!r}, not a {type_name}")
    return mapping
