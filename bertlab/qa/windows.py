"""SQuAD windows: question + context cut to `max_seq_length` tokens, as the reference
`run_squad.py`.

The question is cut to `max_query_length` tokens; the context is split into windows of
what is left of `max_seq_length`, each starting `doc_stride` tokens after the previous one.
A window that does not contain the whole answer is labelled with [CLS] (start = end = 0),
in v1.1 as in v2.0, as the reference does. Tokens are mapped back to characters through
the tokenizer's own offsets, so predicted answers are slices of the original context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tokenizers import Encoding, Tokenizer
from torch.utils.data import Dataset

from bertlab.errors import ConfigError, DataError
from bertlab.qa.read import SquadExample, SquadSplit
from bertlab.tokenizer import special_ids

NOT_CONTEXT = -1  # offsets of tokens that are not context ([CLS], question, [SEP], padding)


@dataclass(frozen=True)
class WindowSettings:
    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64

    def check(self) -> None:
        if self.max_seq_length - self.max_query_length - 3 < 1:
            raise ConfigError(
                f"task.max_seq_length={self.max_seq_length} leaves no room for context after "
                f"task.max_query_length={self.max_query_length} and 3 special tokens"
            )
        if self.doc_stride < 1:
            raise ConfigError(f"task.doc_stride={self.doc_stride}: must be at least 1")


def window_starts(
    num_context_tokens: int, max_context_tokens: int, doc_stride: int
) -> list[tuple[int, int]]:
    """(start, length) of each context window, as the reference: step `doc_stride`, last one ends at
    the end.
    """
    spans = []
    start = 0
    while start < num_context_tokens:
        length = min(num_context_tokens - start, max_context_tokens)
        spans.append((start, length))
        if start + length == num_context_tokens:
            break
        start += min(length, doc_stride)
    return spans


def max_context_flags(spans: Sequence[tuple[int, int]], span_index: int) -> np.ndarray:
    """For each token of window `span_index`: is this the window where it has most context?

    Score = min(left, right context) + 0.01 * window length; ties go to the earlier window.
    """
    start, length = spans[span_index]
    positions = np.arange(start, start + length)
    best_score = np.full(length, -np.inf)
    best_span = np.full(length, -1)
    for index, (other_start, other_length) in enumerate(spans):
        inside = (positions >= other_start) & (positions < other_start + other_length)
        left = positions - other_start
        right = other_start + other_length - 1 - positions
        score = np.minimum(left, right) + 0.01 * other_length
        better = inside & (score > best_score)
        best_score[better], best_span[better] = score[better], index
    return best_span == span_index


def answer_token_span(
    offsets: np.ndarray, answer_start: int, answer_end: int
) -> tuple[int, int] | None:
    """First and last context token overlapping characters [answer_start, answer_end)."""
    first = int(np.searchsorted(offsets[:, 1], answer_start, side="right"))
    last = int(np.searchsorted(offsets[:, 0], answer_end, side="left")) - 1
    if first >= len(offsets) or last < first:
        return None
    return first, last


class FeatureBuilder:
    """Turns a SquadSplit into fixed-width arrays of windows (one row per window)."""

    def __init__(
        self, tokenizer: Tokenizer, settings: WindowSettings, with_labels: bool, with_offsets: bool
    ):
        self.tokenizer, self.settings = tokenizer, settings
        self.with_labels, self.with_offsets = with_labels, with_offsets
        self.ids = special_ids(tokenizer)
        self.rows: dict[str, list] = {name: [] for name in self.array_names()}

    def array_names(self) -> list[str]:
        names = ["input_ids", "token_type_ids", "lengths", "example_index"]
        names += ["start_positions", "end_positions"] if self.with_labels else []
        names += ["offsets", "token_is_max_context"] if self.with_offsets else []
        return names

    def build(self, split: SquadSplit) -> dict[str, np.ndarray]:
        contexts = self._encode(split.contexts)
        questions = self._encode([example.question for example in split.examples])
        for example_index, (example, question) in enumerate(
            zip(split.examples, questions, strict=True)
        ):
            context_encoding = contexts[example.context_index]
            self._add_example(split, example_index, example, question, context_encoding)
        return self._stack()

    def _encode(self, texts: list[str]) -> list[Encoding]:
        return self.tokenizer.encode_batch(texts, add_special_tokens=False)

    def _add_example(
        self, split, example_index, example, question: Encoding, context: Encoding
    ) -> None:
        settings = self.settings
        query_ids = question.ids[: settings.max_query_length]
        context_offsets = np.asarray(context.offsets, dtype=np.int64).reshape(-1, 2)
        max_context_tokens = settings.max_seq_length - len(query_ids) - 3
        spans = window_starts(len(context.ids), max_context_tokens, settings.doc_stride)
        answer = self._answer_tokens(split, example, context_offsets) if self.with_labels else None
        for span_index in range(len(spans)):
            self._add_window(query_ids, context, context_offsets, spans, span_index, answer)
            self.rows["example_index"].append(example_index)

    def _answer_tokens(
        self, split: SquadSplit, example: SquadExample, offsets: np.ndarray
    ) -> tuple[int, int] | None:
        if example.is_impossible:
            return None
        # The reference trains on the first gold answer only.
        text, start = example.answer_texts[0], example.answer_starts[0]
        span = answer_token_span(offsets, start, start + len(text))
        if span is None:
            raise DataError(
                split.source,
                f"question {example.qid!r}: answer {text!r} covers no token of the context",
            )
        return span

    def _add_window(
        self, query_ids, context: Encoding, context_offsets, spans, span_index, answer
    ) -> None:
        start, length = spans[span_index]
        context_position = len(query_ids) + 2  # after [CLS] question [SEP]
        ids = [
            self.ids.cls,
            *query_ids,
            self.ids.sep,
            *context.ids[start : start + length],
            self.ids.sep,
        ]
        width = self.settings.max_seq_length
        self.rows["input_ids"].append(_padded(ids, width, self.ids.pad))
        self.rows["token_type_ids"].append(
            _padded([0] * context_position + [1] * (length + 1), width, 0)
        )
        self.rows["lengths"].append(len(ids))
        if self.with_labels:
            label = (0, 0)  # [CLS]: the answer is not (wholly) in this window
            if answer is not None and start <= answer[0] and answer[1] < start + length:
                label = (answer[0] - start + context_position, answer[1] - start + context_position)
            self.rows["start_positions"].append(label[0])
            self.rows["end_positions"].append(label[1])
        if self.with_offsets:
            offsets = np.full((width, 2), NOT_CONTEXT, dtype=np.int32)
            offsets[context_position : context_position + length] = context_offsets[
                start : start + length
            ]
            self.rows["offsets"].append(offsets)
            max_context = np.zeros(width, dtype=bool)
            max_context[context_position : context_position + length] = max_context_flags(
                spans, span_index
            )
            self.rows["token_is_max_context"].append(max_context)

    def _stack(self) -> dict[str, np.ndarray]:
        width = self.settings.max_seq_length
        row_shapes = {"input_ids": (width,), "token_type_ids": (width,), "offsets": (width, 2)}
        row_shapes["token_is_max_context"] = (width,)
        dtypes = {"input_ids": np.int32, "token_type_ids": np.int8, "offsets": np.int32}
        dtypes["token_is_max_context"] = np.bool_
        return {
            name: np.asarray(rows, dtype=dtypes.get(name, np.int64)).reshape(
                -1, *row_shapes.get(name, ())
            )
            for name, rows in self.rows.items()
        }


def _padded(values: list[int], width: int, pad: int) -> np.ndarray:
    row = np.full(width, pad, dtype=np.int32)
    row[: len(values)] = values
    return row


def build_features(
    split: SquadSplit,
    tokenizer: Tokenizer,
    settings: WindowSettings,
    with_labels: bool,
    with_offsets: bool,
) -> dict[str, np.ndarray]:
    """Windows of every question of `split` as arrays with one row per window."""
    settings.check()
    return FeatureBuilder(tokenizer, settings, with_labels, with_offsets).build(split)


# ---------------------------------------------------------------- batches


class SquadFeatures(Dataset):
    """Rows of the feature arrays; `feature_index` is the row number (eval), labels for training."""

    def __init__(self, arrays: dict[str, np.ndarray], train: bool):
        self.arrays, self.train = arrays, train

    def __len__(self) -> int:
        return len(self.arrays["lengths"])

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, np.ndarray | int]:
        index = key[1] if isinstance(key, tuple) else key  # EpochSampler yields (epoch, index)
        item = {
            "input_ids": self.arrays["input_ids"][index],
            "token_type_ids": self.arrays["token_type_ids"][index],
            "length": int(self.arrays["lengths"][index]),
        }
        if self.train:
            item["start_positions"] = int(self.arrays["start_positions"][index])
            item["end_positions"] = int(self.arrays["end_positions"][index])
        else:
            item["feature_index"] = index
        return item


def collate_features(items: list[dict]) -> dict[str, torch.Tensor]:
    """Stack windows, cut to the longest window of the batch; int64 tensors throughout."""
    width = max(item["length"] for item in items)
    lengths = torch.tensor([item["length"] for item in items])
    batch = {
        "input_ids": torch.from_numpy(
            np.stack([item["input_ids"][:width] for item in items]).astype(np.int64)
        ),
        "token_type_ids": torch.from_numpy(
            np.stack([item["token_type_ids"][:width] for item in items]).astype(np.int64)
        ),
        "attention_mask": (torch.arange(width)[None, :] < lengths[:, None]).long(),
    }
    for name in ("start_positions", "end_positions", "feature_index"):
        if name in items[0]:
            batch[name] = torch.tensor([item[name] for item in items], dtype=torch.int64)
    return batch


# ---------------------------------------------------------------- what decoding needs


@dataclass
class SquadEvalSet:
    """What decoding and scoring need besides the logits: questions, contexts, window offsets."""

    split: SquadSplit
    example_index: np.ndarray  # (F,) question of each window
    offsets: np.ndarray  # (F, T, 2) character span of each context token, NOT_CONTEXT elsewhere
    token_is_max_context: np.ndarray  # (F, T)
    lengths: np.ndarray  # (F,)
