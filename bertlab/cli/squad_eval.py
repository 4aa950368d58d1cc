"""`bertlab-squad-eval DATA.json PREDICTIONS.json [--na-prob-file null_odds.json]`.

Prints what the official evaluate-v1.1.py / evaluate-v2.0.py print for the same files
(the version is read from the data file), so figures can be compared with published ones.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from bertlab.squad_eval import evaluate_file, gold_questions, is_version_2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bertlab-squad-eval", description="Official SQuAD v1.1 / v2.0 evaluation."
    )
    parser.add_argument("data_file", metavar="DATA.json", help="SQuAD data file (v1.1 or v2.0)")
    parser.add_argument("pred_file", metavar="PREDICTIONS.json", help="{question id: answer}")
    parser.add_argument(
        "--na-prob-file", "-n", metavar="null_odds.json", help="v2.0: {question id: null odds}"
    )
    parser.add_argument(
        "--na-prob-thresh",
        "-t",
        type=float,
        default=1.0,
        help='v2.0: count a prediction as "" when its null odds exceed this (default 1.0, as the official script)',
    )
    parser.add_argument(
        "--out-file", "-o", metavar="eval.json", help="write the JSON here instead of stdout"
    )
    return parser


def _load_json(path: str, what: str):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as error:
        raise ValueError(f"{path}: cannot read {what}: {error.strerror}") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}: not valid JSON: {error.msg}") from error


def _load_mapping(path: str, what: str, value_type: type | tuple[type, ...]) -> dict:
    mapping = _load_json(path, what)
    if not isinstance(mapping, dict):
        raise ValueError(f"{path}: expected a JSON object {{question id: {what}}}")
    for qid, value in mapping.items():
        if not isinstance(value, value_type) or isinstance(value, bool):
            raise ValueError(
                f"{path}: question {qid!r}: {what} is {value!r}, not a {_type_name(value_type)}"
            )
    return mapping


def _type_name(value_type: type | tuple[type, ...]) -> str:
    return "number" if isinstance(value_type, tuple) else "string"


def _evaluate(args: argparse.Namespace) -> tuple[dict, bool]:
    dataset_json = _load_json(args.data_file, "SQuAD data")
    if not isinstance(dataset_json, dict):
        raise ValueError(f"{args.data_file}: expected a SQuAD object with a 'data' list")
    predictions = _load_mapping(args.pred_file, "answer", str)
    null_odds = (
        _load_mapping(args.na_prob_file, "null odds", (int, float)) if args.na_prob_file else None
    )
    try:
        data_result = evaluate_file(dataset_json, predictions, null_odds, args.na_prob_thresh)
    except ValueError as error:
        # Missing predictions / odds are the predictions' fault, a bad structure the data's.
        culprit = _culprit(str(error), args)
        raise ValueError(f"{culprit}: {error}") from error
    version_2 = is_version_2(dataset_json)
    if not version_2:
        _warn_unanswered(dataset_json, predictions)
    return data_result, version_2


def _warn_unanswered(dataset_json: dict, predictions: dict) -> None:
    """evaluate-v1.1.py names each question without a prediction on stderr (it scores 0)."""
    for question in gold_questions(dataset_json):
        if question.qid not in predictions:
            print(f"Unanswered question {question.qid} will receive score 0.", file=sys.stderr)


def _culprit(message: str, args: argparse.Namespace) -> str:
    if message.startswith("no prediction"):
        return args.pred_file
    if message.startswith("no null odds"):
        return args.na_prob_file
    return args.data_file


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result, version_2 = _evaluate(args)
    except ValueError as error:
        print(f"bertlab-squad-eval: {error}", file=sys.stderr)
        return 2
    if args.out_file:
        Path(args.out_file).write_text(json.dumps(result), encoding="utf-8")
    else:
        # evaluate-v2.0.py indents its output, evaluate-v1.1.py does not.
        print(json.dumps(result, indent=2 if version_2 else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
