"""`bertlab-squad-eval DATA.json PREDICTIONS.json [--na-prob-file null_odds.json]`.

Prints what the official evaluate-v1.1.py / evaluate-v2.0.py print for the same files
(the version is read from the data file), so figures can be compared with published ones.
The rules live in `bertlab.qa.score`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from bertlab.errors import UserError
from bertlab.qa.score import FileEvaluation, evaluate_files


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
        help=(
            'v2.0: count a prediction as "" when its null odds exceed this (default 1.0, as the '
            "official script)"
        ),
    )
    parser.add_argument(
        "--out-file", "-o", metavar="eval.json", help="write the JSON here instead of stdout"
    )
    return parser


def _warn(evaluation: FileEvaluation, data_file: str) -> None:
    """What the official scripts pass over: named on stderr, the figures stay theirs."""
    for qid in evaluation.unanswered:  # evaluate-v1.1.py's own message
        print(f"Unanswered question {qid} will receive score 0.", file=sys.stderr)
    if evaluation.repeated_ids:
        rule = (
            "the last question of each id counts (evaluate-v2.0.py)"
            if evaluation.version_2
            else "each question is scored against its id's one prediction (evaluate-v1.1.py)"
        )
        print(
            f"warning: {data_file}: {len(evaluation.repeated_ids)} question ids are used more "
            f"than once (first {evaluation.repeated_ids[0]!r}); {rule}",
            file=sys.stderr,
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        evaluation = evaluate_files(
            args.data_file, args.pred_file, args.na_prob_file, args.na_prob_thresh
        )
    except UserError as error:
        print(f"bertlab-squad-eval: {error}", file=sys.stderr)
        return 2
    _warn(evaluation, args.data_file)
    if args.out_file:
        Path(args.out_file).write_text(json.dumps(evaluation.scores), encoding="utf-8")
    else:
        # evaluate-v2.0.py indents its output, evaluate-v1.1.py does not.
        print(json.dumps(evaluation.scores, indent=2 if evaluation.version_2 else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
