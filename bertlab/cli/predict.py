"""`bertlab-predict`: batched inference of a fine-tuned checkpoint, JSON Lines in and out.

bertlab-predict outputs/DATE/TIME/checkpoints/best.ckpt dev.jsonl --out predictions.jsonl
echo 'this movie is so great' | bertlab-predict best.ckpt
bertlab-predict path/to/hf-classifier dev.jsonl     # a Hugging Face directory, or hf:NAME

Input lines are JSON objects with `text` (+ `text_pair`) for classification and
regression, `question` + `context` for question answering, or plain text lines (one
`text` each) for single-sentence tasks. Each output line is the input object plus
`label` + `probs` (classification), `score` (regression) or `answer` + `score` (QA).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from bertlab.checkpoints.restore import load_module
from bertlab.cli.errors import exit_on_user_errors
from bertlab.errors import ConfigError
from bertlab.inference.io import read_input_file, write_json_lines
from bertlab.inference.predict import predict


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bertlab-predict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "checkpoint",
        help="a bertlab .ckpt (classification, regression or QA), a Hugging Face directory "
        "(BertForSequenceClassification, BertForQuestionAnswering) or hf:NAME",
    )
    parser.add_argument("input", nargs="?", default="-", help="JSON Lines or text file; - = stdin")
    parser.add_argument("--out", help="output JSON Lines file (default: stdout)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--max-length",
        type=int,
        help="truncate inputs to this many tokens; QA: the window length (default: the model's)",
    )
    parser.add_argument("--logits", action="store_true", help="also write the raw logits")
    return parser.parse_args(argv)


@exit_on_user_errors
def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size={args.batch_size}: must be at least 1")
    records, source = read_input_file(args.input)  # all of it first: bad lines fail before work
    module, tokenizer = load_module(args.checkpoint)
    rows = predict(
        module, tokenizer, records, source, args.batch_size, args.max_length, args.logits
    )
    write_json_lines(rows, args.out)


if __name__ == "__main__":
    main()
