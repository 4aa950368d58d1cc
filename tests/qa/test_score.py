"""The official SQuAD scores (bertlab/qa/score.py) and `bertlab-squad-eval`, on cases that
break naive re-implementations (hand-computed)."""

from __future__ import annotations

import json

import pytest

from bertlab.cli.squad_eval import main
from bertlab.qa.score import (
    GoldQuestion,
    evaluate_file,
    evaluate_v1,
    evaluate_v2,
    exact_v2,
    f1_v1,
    f1_v2,
    normalize_answer,
)


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The  Quick, brown fox!", "quick brown fox"),
        ("an apple a day", "apple day"),
        ("banana", "banana"),  # articles only as whole words
        ("the-cat", "thecat"),  # punctuation goes first, so "the" is no longer a word
        ("U.S.A.", "usa"),
        ("Café «Paris»", "café «paris»"),  # string.punctuation is ASCII only
        ("  \tA\n", ""),
    ],
)
def test_normalize_answer_follows_the_official_order(text, normalized):
    assert normalize_answer(text) == normalized


def test_f1_is_a_bag_of_tokens_overlap():
    # pred {cat, sat, on, mat} vs gold {cat, on, mat}: P = 3/4, R = 1.
    assert f1_v1("the cat sat on the mat", "a cat on a mat") == pytest.approx(2 * 0.75 / 1.75)
    # repeated tokens count once per occurrence: pred {a.., x, x} gold {x}: P = 1/2, R = 1.
    assert f1_v1("x x", "x") == pytest.approx(2 / 3)
    assert f1_v1("", "") == 0.0  # v1.1: no overlap means 0, even when both are empty
    assert f1_v2("", "") == 1.0  # v2.0: both empty means agreement


def _q(qid: str, *answers: str) -> GoldQuestion:
    return GoldQuestion(qid, answers)


def test_v1_takes_the_max_over_golds_and_scores_missing_as_zero():
    questions = [_q("a", "Denver Broncos", "the Broncos"), _q("b", "Paris"), _q("c", "1990")]
    predictions = {"a": "Broncos", "b": "paris."}  # "c" missing: 0, still in the total
    result = evaluate_v1(questions, predictions)
    # a: EM 1 via "the Broncos"; b: EM 1; c: 0  -> EM 2/3
    assert result == {"exact_match": pytest.approx(200 / 3), "f1": pytest.approx(200 / 3)}


def test_v1_empty_prediction_and_unicode():
    questions = [_q("a", "Zürich"), _q("b", "naïve approach")]
    result = evaluate_v1(questions, {"a": "zürich!", "b": ""})
    assert result == {"exact_match": 50.0, "f1": 50.0}


def test_v2_drops_golds_that_normalize_to_nothing():
    # "the" normalizes to "" and is dropped; "a" alone makes the gold [""].
    assert exact_v2("", "the") == 1 and f1_v2("", "the") == 1.0
    result = evaluate_v2([_q("x", "a")], {"x": ""})
    assert result["exact"] == 100.0 and result["HasAns_total"] == 1  # answers non-empty: HasAns


def _v2_case():
    questions = [
        _q("q1", "Paris"),
        _q("q2", "Rome Italy"),
        _q("q3"),  # unanswerable
        _q("q4"),  # unanswerable
    ]
    predictions = {"q1": "Paris", "q2": "Rome", "q3": "Oslo", "q4": ""}
    null_odds = {"q1": -1.0, "q2": 0.5, "q3": 2.0, "q4": 3.0}
    return questions, predictions, null_odds


def test_v2_without_null_odds():
    questions, predictions, _ = _v2_case()
    result = evaluate_v2(questions, predictions)
    # EM: 1, 0, 0, 1; F1: 1, 2/3 (P 1, R 1/2), 0, 1
    assert result == {
        "exact": 50.0,
        "f1": pytest.approx(100 * (1 + 2 / 3 + 0 + 1) / 4),
        "total": 4,
        "HasAns_exact": 50.0,
        "HasAns_f1": pytest.approx(100 * (1 + 2 / 3) / 2),
        "HasAns_total": 2,
        "NoAns_exact": 50.0,
        "NoAns_f1": 50.0,
        "NoAns_total": 2,
    }


def test_v2_null_odds_override_and_best_thresholds():
    questions, predictions, null_odds = _v2_case()
    result = evaluate_v2(questions, predictions, null_odds)
    # Odds > 1.0 count as "no answer": q3 (2.0) becomes right, q4 stays right.
    assert result["exact"] == 75.0
    assert result["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 1) / 4)
    assert result["NoAns_exact"] == 100.0
    # Start from "all null" (2 right), add questions by increasing odds:
    # q1 +1 -> 3 (thresh -1.0); q2 +0 (EM) / +2/3 (F1); q3 -1; q4 0.
    assert result["best_exact"] == 75.0 and result["best_exact_thresh"] == -1.0
    assert result["best_f1"] == pytest.approx(100 * (3 + 2 / 3) / 4)
    assert result["best_f1_thresh"] == 0.5
    assert list(result)[-4:] == ["best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"]


def test_v2_missing_prediction_names_the_question():
    questions, predictions, _ = _v2_case()
    del predictions["q3"]
    with pytest.raises(ValueError, match="q3"):
        evaluate_v2(questions, predictions)


# ---------------------------------------------------------------- files and the command


def _squad_json(version: str, qas: list[dict]) -> dict:
    context = "Paris is the capital of France. Rome is in Italy."
    return {
        "version": version,
        "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}],
    }


def _qa(qid: str, *texts: str, impossible: bool | None = None) -> dict:
    context = "Paris is the capital of France. Rome is in Italy."
    qa = {
        "id": qid,
        "question": "?",
        "answers": [{"text": text, "answer_start": context.index(text)} for text in texts],
    }
    if impossible is not None:
        qa["is_impossible"] = impossible
    return qa


def _write(tmp_path, name: str, content) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(content))
    return str(path)


def test_cli_v1_prints_the_official_json(tmp_path, capsys):
    data = _write(
        tmp_path, "dev.json", _squad_json("1.1", [_qa("a", "Paris"), _qa("b", "Rome", "Rome is")])
    )
    predictions = _write(tmp_path, "pred.json", {"a": "Paris", "b": "Rome is in"})
    assert main([data, predictions]) == 0
    out = capsys.readouterr().out
    # b: best gold "Rome is": P 2/3, R 1 -> F1 0.8
    assert json.loads(out) == {"exact_match": 50.0, "f1": pytest.approx(90.0)}
    assert out.startswith('{"exact_match": 50.0, "f1": ')  # one line, as evaluate-v1.1.py
    missing_b = _write(tmp_path, "pred.json", {"a": "Paris"})
    assert main([data, missing_b]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"exact_match": 50.0, "f1": 50.0}
    assert captured.err == "Unanswered question b will receive score 0.\n"


def test_cli_v2_detects_the_version_and_writes_out_file(tmp_path, capsys):
    qas = [_qa("a", "Paris", impossible=False), _qa("b", impossible=True)]
    data = _write(tmp_path, "dev.json", _squad_json("v2.0", qas))
    predictions = _write(tmp_path, "pred.json", {"a": "Paris", "b": "France"})
    odds = _write(tmp_path, "null_odds.json", {"a": -3.0, "b": -0.5})
    out_file = tmp_path / "eval.json"
    assert main([data, predictions, "--na-prob-file", odds, "--out-file", str(out_file)]) == 0
    result = json.loads(out_file.read_text())
    assert (
        result["exact"] == 50.0 and result["NoAns_exact"] == 0.0 and result["HasAns_exact"] == 100.0
    )
    # Null odds order a (-3), b (-0.5): answering only "a" gives 2 of 2 at threshold -3.0.
    assert result["best_exact"] == 100.0 and result["best_exact_thresh"] == -3.0
    assert (
        evaluate_file(json.loads((tmp_path / "dev.json").read_text()), {"a": "Paris", "b": ""})[
            "exact"
        ]
        == 100.0
    )


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"pred.json": {"a": 3}}, "pred.json: question 'a': answer is 3, not a string"),
        ({"pred.json": "{not json"}, "pred.json:1: not valid JSON"),
        (
            {"dev.json": {"version": "1.1", "data": [{"paragraphs": [{"qas": [{"id": "z"}]}]}]}},
            "question 'z'",
        ),
        (
            {"dev.json": _squad_json("v2.0", [_qa("a", "Paris"), _qa("zz")])},
            "pred.json: no prediction for question 'zz'",
        ),
    ],
)
def test_cli_bad_files_exit_2_with_one_line(tmp_path, capsys, files, message):
    contents = {
        "dev.json": _squad_json("1.1", [_qa("a", "Paris")]),
        "pred.json": {"a": "Paris"},
        **files,
    }
    for name, content in contents.items():
        (tmp_path / name).write_text(content if isinstance(content, str) else json.dumps(content))
    assert main([str(tmp_path / "dev.json"), str(tmp_path / "pred.json")]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


@pytest.mark.parametrize(("version", "expected"), [("1.1", 50.0), ("v2.0", 100.0)])
def test_cli_repeated_question_ids_score_as_the_official_script_and_warn(
    tmp_path, capsys, version, expected
):
    """v1.1 scores both questions against the id's one prediction; v2.0 keeps the last one."""
    impossible = None if version == "1.1" else False
    qas = [_qa("a", "Paris", impossible=impossible), _qa("a", "Rome", impossible=impossible)]
    data = _write(tmp_path, "dev.json", _squad_json(version, qas))
    predictions = _write(tmp_path, "pred.json", {"a": "Rome"})
    assert main([data, predictions]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["exact_match" if version == "1.1" else "exact"] == expected
    assert f"warning: {data}: 1 question ids are used more than once (first 'a')" in captured.err
