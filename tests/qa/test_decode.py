"""From window logits to answers, and the official answer files (bertlab/qa/decode.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bertlab.qa.decode import (
    DecodingSettings,
    Window,
    decode_answers,
    decode_question,
    write_answer_files,
)


def _window(start_logits, end_logits, offsets, max_context=None) -> Window:
    length = len(start_logits)
    return Window(
        start_logits=np.asarray(start_logits, dtype=float),
        end_logits=np.asarray(end_logits, dtype=float),
        offsets=np.asarray(offsets),
        token_is_max_context=np.ones(length, bool)
        if max_context is None
        else np.asarray(max_context),
        length=length,
    )


# [CLS] q [SEP] red fox jumps [SEP]; context "red fox jumps"
CONTEXT = "red fox jumps"
OFFSETS = [[-1, -1], [-1, -1], [-1, -1], [0, 3], [4, 7], [8, 13], [-1, -1]]


def test_decoding_skips_question_tokens_reversed_and_too_long_spans():
    # The best raw pair is start 1 (question) ...; then end < start; then too long.
    start = [0, 9, 0, 1, 5, 8, 0]
    end = [0, 0, 9, 6, 1, 2, 0]
    settings = DecodingSettings(n_best_size=20, max_answer_length=2)
    prediction, nbest, null_odds = decode_question(
        CONTEXT, [_window(start, end, OFFSETS)], settings
    )
    # start 5 (jumps) + end 5 (jumps) = 10; start 4 + end 4 = 6; start 3 + end 4 = 7 ...
    assert prediction == "jumps" and null_odds is None
    assert nbest[0] == {
        "text": "jumps",
        "probability": pytest.approx(nbest[0]["probability"]),
        "start_logit": 8.0,
        "end_logit": 2.0,
    }
    assert "red fox jumps" not in [entry["text"] for entry in nbest]  # 3 tokens > max_answer_length
    assert sum(entry["probability"] for entry in nbest) == pytest.approx(1.0)


def test_decoding_keeps_only_max_context_starts():
    start = [0, 0, 0, 1, 9, 2, 0]
    end = [
        0,
        0,
        0,
        1,
        0,
        2,
        0,
    ]  # "fox" (9 + 0) and "fox jumps" (11) start where fox lacks max context
    not_max_at_fox = [True, True, True, True, False, True, True]
    prediction, _, _ = decode_question(
        CONTEXT, [_window(start, end, OFFSETS, not_max_at_fox)], DecodingSettings()
    )
    assert prediction == "jumps"


def test_v2_null_score_is_the_min_over_windows_against_the_threshold():
    windows = [
        _window([4, 0, 0, 3, 0, 0, 0], [4, 0, 0, 3, 0, 0, 0], OFFSETS),  # null 8, "red" 6
        _window([1, 0, 0, 0, 0, 2, 0], [2, 0, 0, 0, 0, 2, 0], OFFSETS),  # null 3, "jumps" 4
    ]
    answer = decode_question(CONTEXT, windows, DecodingSettings(version_2_with_negative=True))
    prediction, nbest, null_odds = answer
    assert null_odds == pytest.approx(3 - 6)  # min null (3) - best span (6)
    assert prediction == "red"
    assert "" in [entry["text"] for entry in nbest]
    strict = DecodingSettings(version_2_with_negative=True, null_score_diff_threshold=-4.0)
    assert decode_question(CONTEXT, windows, strict)[0] == ""


def test_answer_files_in_the_official_formats(tmp_path):
    windows = [_window([1, 0, 0, 0, 0, 2, 0], [2, 0, 0, 0, 0, 2, 0], OFFSETS)]
    answers = decode_answers(
        ["q"], [CONTEXT], [windows], DecodingSettings(version_2_with_negative=True)
    )
    write_answer_files(answers, tmp_path, version_2_with_negative=True)
    assert json.loads((tmp_path / "predictions.json").read_text()) == {"q": "jumps"}
    assert json.loads((tmp_path / "null_odds.json").read_text()) == {"q": pytest.approx(-1.0)}
    nbest = json.loads((tmp_path / "nbest_predictions.json").read_text())["q"]
    assert set(nbest[0]) == {"text", "probability", "start_logit", "end_logit"}
