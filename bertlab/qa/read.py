"""Reading SQuAD v1.1 / v2.0: the official JSON files, or the same data from the Hub.

Training and evaluation files are read by different rules, as the reference tools do:

- training (BERT's `run_squad.py`): every answer needs a `text` and the `answer_start` where
  that text sits in the context; a question whose answer is not found there is skipped with a
  warning (the count is kept in `SquadSplit.skipped` and reported).
- evaluation (`evaluate-v1.1.py` / `evaluate-v2.0.py`): only the answer texts count, so
  `answer_start` is neither required nor checked; question ids must be unique, because
  predictions are keyed by id (the official scripts silently keep one of two equal ids).

A file without questions is an error naming it: a run on it would train or score nothing.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bertlab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

UNKNOWN_START = -1  # an evaluation answer without a usable answer_start (never read there)
NAMED_SKIPS = 5  # how many skipped question ids the warning lists


@dataclass(frozen=True)
class SquadExample:
    """One question. `answer_starts` are character offsets into `contexts[context_index]`."""

    qid: str
    question: str
    context_index: int
    answer_texts: tuple[str, ...]
    answer_starts: tuple[int, ...]
    is_impossible: bool


@dataclass
class SquadSplit:
    """The questions of one file; paragraphs are stored once, shared by their questions.

    `skipped`: ids of the training questions left out because their answer is not at its
    `answer_start` (as `run_squad.py` skips them).
    """

    contexts: list[str]
    examples: list[SquadExample]
    source: str
    skipped: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- official JSON files


def read_squad_file(path: str | Path, training: bool) -> SquadSplit:
    """Parse an official SQuAD JSON file (v1.1 or v2.0) as training or as evaluation data.

    Raises DataError naming the file (and line or question) for anything it cannot use.
    """
    path = Path(path)
    split = SquadSplit(contexts=[], examples=[], source=str(path))
    for article_number, article in enumerate(_load_articles(path)):
        for paragraph_number, paragraph in enumerate(
            _required(article, "paragraphs", path, f"data[{article_number}]")
        ):
            where = f"data[{article_number}].paragraphs[{paragraph_number}]"
            _add_paragraph(split, paragraph, path, where, training)
    return checked_split(split, training)


def _load_articles(path: Path) -> list:
    try:
        with open(path, encoding="utf-8") as handle:
            articles = json.load(handle)["data"]
    except json.JSONDecodeError as error:
        raise DataError(path, f"not valid JSON: {error.msg}", line=error.lineno) from error
    except UnicodeDecodeError as error:
        raise DataError(
            path, f"not valid UTF-8 ({error.reason})", line=_first_undecodable_line(path)
        ) from None
    except (KeyError, TypeError) as error:
        raise DataError(path, "not a SQuAD file: no top-level 'data' list") from error
    if not isinstance(articles, list):
        raise DataError(path, "not a SQuAD file: no top-level 'data' list")
    return articles


def _first_undecodable_line(path: Path) -> int | None:
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def _required(record, key: str, path: Path, where: str):
    if not isinstance(record, dict) or key not in record:
        raise DataError(path, f"{where}: missing {key!r}")
    return record[key]


def _add_paragraph(
    split: SquadSplit, paragraph: dict, path: Path, where: str, training: bool
) -> None:
    context = _required(paragraph, "context", path, where)
    split.contexts.append(context)
    for qa_number, qa in enumerate(_required(paragraph, "qas", path, where)):
        qid = str(_required(qa, "id", path, f"{where}.qas[{qa_number}]"))
        question = _required(qa, "question", path, f"question {qid!r}")
        answers = _required(qa, "answers", path, f"question {qid!r}")
        texts, starts = _answers(answers, path, qid, training)
        example = SquadExample(
            qid=qid,
            question=question,
            context_index=len(split.contexts) - 1,
            answer_texts=texts,
            answer_starts=starts,
            is_impossible=bool(qa.get("is_impossible", False)) or not texts,
        )
        add_example(split, example, context, training, v2="is_impossible" in qa)


def _answers(
    answers, path: Path, qid: str, training: bool
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    try:
        texts = tuple(answer["text"] for answer in answers)
        starts = tuple(
            int(answer["answer_start"]) if training else _start_if_given(answer)
            for answer in answers
        )
    except (KeyError, TypeError, ValueError) as error:
        needed = "'text' and an integer 'answer_start'" if training else "a 'text'"
        raise DataError(path, f"question {qid!r}: every answer needs {needed}") from error
    return texts, starts


def _start_if_given(answer: dict) -> int:
    """An evaluation answer's offset, kept when usable; evaluation never reads it."""
    try:
        return int(answer.get("answer_start", UNKNOWN_START))
    except (TypeError, ValueError):
        return UNKNOWN_START


# ---------------------------------------------------------------- the rules of each kind of file


def add_example(
    split: SquadSplit, example: SquadExample, context: str, training: bool, v2: bool
) -> None:
    """Keep `example` in `split`, or (training) skip it when its answer is not where it says."""
    if training:
        if not v2 and not example.answer_texts:
            raise DataError(
                split.source,
                f"question {example.qid!r}: no answer (a v1.1 training question needs one)",
            )
        if not answers_found_at_their_starts(example, context):
            split.skipped.append(example.qid)
            return
    split.examples.append(example)


def answers_found_at_their_starts(example: SquadExample, context: str) -> bool:
    """Is every answer the slice of the context its `answer_start` points at?"""
    return all(
        start >= 0 and context[start : start + len(text)] == text
        for text, start in zip(example.answer_texts, example.answer_starts, strict=True)
    )


def checked_split(split: SquadSplit, training: bool) -> SquadSplit:
    """Report the skipped questions; refuse a split with no questions or (evaluation) equal ids."""
    if split.skipped:
        named = ", ".join(repr(qid) for qid in split.skipped[:NAMED_SKIPS])
        more = (
            f" and {len(split.skipped) - NAMED_SKIPS} more"
            if len(split.skipped) > NAMED_SKIPS
            else ""
        )
        log.warning(
            "%s: skipped %d training questions whose answer text is not at its answer_start "
            "(as BERT's run_squad.py): %s%s",
            split.source,
            len(split.skipped),
            named,
            more,
        )
    if not split.examples:
        left = f" left after skipping {len(split.skipped)}" if split.skipped else ""
        raise DataError(split.source, f"no questions{left}: nothing to train or evaluate on")
    if not training:
        _check_unique_ids(split)
    return split


def _check_unique_ids(split: SquadSplit) -> None:
    repeated = [
        (qid, count) for qid, count in Counter(e.qid for e in split.examples).items() if count > 1
    ]
    if repeated:
        qid, count = repeated[0]
        others = f" ({len(repeated) - 1} more ids repeat)" if len(repeated) > 1 else ""
        raise DataError(
            split.source,
            f"question id {qid!r} is used by {count} questions{others}; answers are keyed by "
            "id (predictions.json, the official evaluation), so every question needs its own",
        )


# ---------------------------------------------------------------- the Hub


def read_squad_hub(
    dataset_name: str, split_name: str, training: bool, data_dir_key: str
) -> SquadSplit:
    """Read `rajpurkar/squad` / `rajpurkar/squad_v2` through `datasets` (needs the network once)."""
    try:
        import datasets  # lazily: an optional dependency, and slow to import
    except ImportError as error:
        raise ConfigError(
            "no local SQuAD files and the `datasets` package is not installed; set "
            f"{data_dir_key}=DIR "
            "(the official train/dev JSON files) or pip install 'bertlab[hub]'"
        ) from error
    try:
        rows = datasets.load_dataset(dataset_name, split=split_name)
    except Exception as error:  # offline, unknown name, ... all mean: use local files
        raise ConfigError(
            f"cannot load {dataset_name} ({split_name}) from the Hub ({error}); set "
            f"{data_dir_key}=DIR "
            "to a directory with the official SQuAD JSON files"
        ) from error
    return squad_split_from_rows(rows, f"{dataset_name}:{split_name}", training)


def squad_split_from_rows(rows, source: str, training: bool) -> SquadSplit:
    """Hub rows (`id`, `question`, `context`, `answers: {text, answer_start}`) as a SquadSplit."""
    split = SquadSplit(contexts=[], examples=[], source=source)
    context_index: dict[str, int] = {}
    for row in rows:
        context = row["context"]
        if context not in context_index:
            context_index[context] = len(split.contexts)
            split.contexts.append(context)
        texts = tuple(row["answers"]["text"])
        example = SquadExample(
            qid=str(row["id"]),
            question=row["question"],
            context_index=context_index[context],
            answer_texts=texts,
            answer_starts=tuple(int(start) for start in row["answers"]["answer_start"]),
            is_impossible=not texts,
        )
        add_example(split, example, context, training, v2=True)
    return checked_split(split, training)
