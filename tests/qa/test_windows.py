"""Doc-stride windows, their labels and offsets (bertlab/qa/windows.py)."""

from __future__ import annotations

import numpy as np
import pytest

from bertlab.qa.read import read_squad_file
from bertlab.qa.windows import (
    NOT_CONTEXT,
    WindowSettings,
    build_features,
    max_context_flags,
    window_starts,
)

from support.data import QUESTION, SQUAD_WORDS, one_paragraph, qa, write_squad
from support.models import squad_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return squad_tokenizer()


def test_window_starts_step_by_doc_stride_and_end_at_the_end():
    assert window_starts(10, 4, 3) == [(0, 4), (3, 4), (6, 4)]
    assert window_starts(3, 4, 3) == [(0, 3)]
    assert window_starts(0, 4, 3) == []


def test_each_token_has_max_context_in_exactly_one_window():
    spans = window_starts(25, 8, 3)
    counts = np.zeros(25, dtype=int)
    for span_index, (start, length) in enumerate(spans):
        counts[start : start + length] += max_context_flags(spans, span_index)
    assert (counts == 1).all()
    # token 4 sits in windows (0,8), (3,8): left/right context min(4,3)=3 vs min(1,6)=1.
    assert max_context_flags(spans, 0)[4] and not max_context_flags(spans, 1)[1]


def _features(tokenizer, content: dict, tmp_path, settings: WindowSettings, name="train-v1.1.json"):
    split = read_squad_file(write_squad(tmp_path, name, content), training=True)
    return split, build_features(split, tokenizer, settings, with_labels=True, with_offsets=True)


def _labelled_text(split, arrays, row: int) -> str:
    start, end = arrays["start_positions"][row], arrays["end_positions"][row]
    offsets = arrays["offsets"][row]
    context = split.contexts[split.examples[arrays["example_index"][row]].context_index]
    return context[offsets[start, 0] : offsets[end, 1]]


def test_long_context_windows_round_trip_the_answer(tokenizer, tmp_path):
    words = [SQUAD_WORDS[i % len(SQUAD_WORDS)] for i in range(60)]
    words[29:29] = ["code:", "naïve", "café"]  # crosses the boundary of some windows
    context = " ".join(words)
    split, arrays = _features(
        tokenizer,
        one_paragraph(context, [qa("a", QUESTION, context, "naïve café")]),
        tmp_path,
        WindowSettings(24, 6, 8),
    )
    max_context_tokens = 24 - len(tokenizer.encode(QUESTION, add_special_tokens=False).ids) - 3
    num_context_tokens = len(tokenizer.encode(context, add_special_tokens=False).ids)
    assert (
        len(arrays["lengths"]) == len(window_starts(num_context_tokens, max_context_tokens, 6)) > 5
    )
    labelled = arrays["start_positions"] > 0
    assert labelled.any() and (~labelled).any()  # windows with and without the whole answer
    for row in np.nonzero(labelled)[0]:
        assert _labelled_text(split, arrays, row) == "naïve café"
    # every window is [CLS] question [SEP] context [SEP] with segment ids to match
    row_length = arrays["lengths"][0]
    assert row_length == 24 and arrays["token_type_ids"][0, row_length - 1] == 1
    assert arrays["offsets"][0, 0, 0] == NOT_CONTEXT


def test_window_that_holds_part_of_the_answer_is_labelled_cls(tokenizer, tmp_path):
    context = "apple river stone cloud green table music paper light window garden silver"
    split, arrays = _features(
        tokenizer,
        one_paragraph(context, [qa("a", QUESTION, context, "cloud green table")]),
        tmp_path,
        WindowSettings(12, 2, 4),
    )
    # 12 - 4 question tokens - 3 = 5 context tokens a window, stride 2: 0-4, 2-6, 4-8, ...;
    # the answer is tokens 3-5.
    texts = [
        _labelled_text(split, arrays, row) if arrays["start_positions"][row] else ""
        for row in range(len(arrays["lengths"]))
    ]
    assert texts[:3] == ["", "cloud green table", ""]


def test_accents_and_punctuation_round_trip_through_offsets(tokenizer, tmp_path):
    context = "In the (1990s), a naïve café—U.S.A.—served résumé-style menus."
    answers = ["(1990s)", "naïve café", "U.S.A.", "résumé"]
    qas = [qa(f"q{i}", QUESTION, context, text) for i, text in enumerate(answers)]
    split, arrays = _features(
        tokenizer, one_paragraph(context, qas), tmp_path, WindowSettings(64, 16, 8)
    )
    assert [_labelled_text(split, arrays, row) for row in range(4)] == answers


def test_question_longer_than_max_query_length_is_cut(tokenizer, tmp_path):
    context = "apple river code: stone"
    question = " ".join(SQUAD_WORDS)  # 20 tokens
    _, arrays = _features(
        tokenizer,
        one_paragraph(context, [qa("a", question, context, "stone")]),
        tmp_path,
        WindowSettings(32, 8, 5),
    )
    assert list(arrays["token_type_ids"][0, :7]) == [0] * 7  # [CLS] + 5 question tokens + [SEP]
    assert arrays["token_type_ids"][0, 7] == 1
    assert (
        arrays["start_positions"][0] == arrays["end_positions"][0] == 7 + 4
    )  # apple river code : stone
