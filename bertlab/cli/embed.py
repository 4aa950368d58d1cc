"""`bertlab-embed`: token vectors and a sentence vector per input, from any BERT encoder.

bertlab-embed outputs/DATE/TIME/checkpoints/last.ckpt sentences.txt --out vectors.jsonl
bertlab-embed hf-bert-dir sentences.jsonl --pooling mean --format npy --out vectors.npy
bertlab-embed last.ckpt sentences.txt --precision bf16 --out vectors.jsonl   # AMX CPUs, GPUs

The model is a bertlab checkpoint, a Hugging Face BERT directory or `hf:NAME`. Input lines
are JSON objects with `text` (+ `text_pair`) or plain text. JSON Lines output adds
`tokens` (WordPiece, with [CLS] and [SEP]), `token_vectors` (one per token) and
`sentence_vector` to each input object; `--format npy` writes the sentence vectors only,
as one float32 array (inputs x hidden size). `--precision bf16` runs the matrix products in
bf16 (as bf16 autocast does; bertlab-predict --help says where that is faster).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from bertlab.checkpoints.restore import load_encoder
from bertlab.cli.errors import exit_on_user_errors
from bertlab.errors import ConfigError
from bertlab.inference.batches import SentenceEncoder, batched
from bertlab.inference.embed import embed
from bertlab.inference.io import read_input_file, require_text_fields, write_json_lines
from bertlab.inference.precision import PRECISIONS, for_precision, native_bf16_note
from bertlab.runtime.allocator import keep_freed_memory


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bertlab-embed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="a bertlab .ckpt, a Hugging Face BERT directory or hf:NAME")
    parser.add_argument("input", nargs="?", default="-", help="JSON Lines or text file; - = stdin")
    parser.add_argument("--pooling", choices=("cls", "mean"), default="cls")
    parser.add_argument("--format", choices=("jsonl", "npy"), default="jsonl")
    parser.add_argument("--out", help="output file (default: stdout; required for npy)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, help="truncate to this many tokens")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="bf16 matrix products (autocast's numbers), for CPUs with AMX and GPUs",
    )
    return parser.parse_args(argv)


@exit_on_user_errors
def main(argv: Sequence[str] | None = None) -> None:
    keep_freed_memory()
    args = parse_args(argv)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size={args.batch_size}: must be at least 1")
    if args.format == "npy" and not args.out:
        raise ConfigError("--format npy writes a binary array: set --out FILE.npy")
    records, source = read_input_file(args.input)
    require_text_fields(records, ("text",), ("text_pair",), source)
    encoder, tokenizer = load_encoder(args.model)
    if note := native_bf16_note(args.precision):
        print(note, file=sys.stderr)
    encoder = for_precision(encoder, args.precision)
    encode = SentenceEncoder(tokenizer, args.max_length or encoder.config.max_position_embeddings)
    results = []
    for chunk in batched(records, args.batch_size):
        batch, encodings = encode([record.fields for record in chunk])
        results += embed(encoder, batch, encodings, args.pooling, args.precision)
    if args.format == "npy":
        vectors = np.asarray([result["sentence_vector"] for result in results], dtype=np.float32)
        np.save(args.out, vectors)
    else:
        rows = [
            {**record.fields, **result} for record, result in zip(records, results, strict=True)
        ]
        write_json_lines(rows, args.out)


if __name__ == "__main__":
    main()
