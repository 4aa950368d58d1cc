"""`bertlab-predict`: batched inference of a fine-tuned checkpoint, JSON Lines in and out.

bertlab-predict outputs/DATE/TIME/checkpoints/best.ckpt dev.jsonl --out predictions.jsonl
echo 'this movie is so great' | bertlab-predict best.ckpt
bertlab-predict path/to/hf-classifier dev.jsonl     # a Hugging Face directory, or hf:NAME
bertlab-predict exported/ dev.jsonl --runtime onnx  # ONNX Runtime (bertlab-export format=onnx)
bertlab-predict best.ckpt dev.jsonl --runtime onnx --quantize int8
bertlab-predict best.ckpt dev.jsonl --precision bf16   # bf16 products (AMX CPUs, GPUs)

Input lines are JSON objects with `text` (+ `text_pair`) for classification and
regression, `question` + `context` for question answering, or plain text lines (one
`text` each) for single-sentence tasks. Each output line is the input object plus
`label` + `probs` (classification), `score` (regression) or `answer` + `score` (QA).

`--runtime onnx` runs an exported directory (model.onnx, config.json, tokenizer) or a
.ckpt (exported once into $BERTLAB_CACHE/onnx) with ONNX Runtime on the CPU, with the same
inputs and outputs; `--quantize int8` runs it with int8 weights (dynamic quantization).
`--precision bf16` runs PyTorch's matrix products in bf16, as bf16 autocast does: faster on
GPUs and on CPUs with bf16 instructions (AMX, AVX512-BF16: the amx_bf16 or avx512_bf16 flag
in /proc/cpuinfo), slower on the others, where they are emulated.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tokenizers import Tokenizer

from bertlab.checkpoints.restore import load_module
from bertlab.cli.errors import exit_on_user_errors
from bertlab.errors import ConfigError
from bertlab.inference.io import read_input_file, write_json_lines
from bertlab.inference.onnx_runtime import load_onnx_task_model
from bertlab.inference.precision import PRECISIONS, native_bf16_note
from bertlab.inference.predict import predict
from bertlab.inference.task_model import TaskModel, torch_task_model
from bertlab.runtime.allocator import keep_freed_memory


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bertlab-predict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "checkpoint",
        help="a bertlab .ckpt (classification, regression or QA), a Hugging Face directory "
        "(BertForSequenceClassification, BertForQuestionAnswering) or hf:NAME; with --runtime "
        "onnx a bertlab-export format=onnx directory or a .ckpt",
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
    parser.add_argument("--runtime", choices=("torch", "onnx"), default="torch")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="torch: bf16 matrix products (autocast's numbers), for CPUs with AMX and GPUs",
    )
    parser.add_argument(
        "--quantize", choices=("int8",), help="onnx: int8 weights, dynamic quantization"
    )
    parser.add_argument(
        "--threads", type=int, help="onnx: intra-op threads (default: the available cores)"
    )
    parser.add_argument(
        "--no-fusion",
        action="store_true",
        help="onnx: skip ONNX Runtime's transformer optimizer (its own graph optimizations stay)",
    )
    return parser.parse_args(argv)


def load_task_model(args: argparse.Namespace) -> tuple[TaskModel, Tokenizer]:
    if args.runtime == "onnx":
        if args.precision != "fp32":
            raise ConfigError(
                f"--precision {args.precision}: an option of --runtime torch (ONNX Runtime runs "
                "the exported float32 graph, or int8 with --quantize int8)"
            )
        return load_onnx_task_model(
            args.checkpoint, args.quantize, args.threads, fuse=not args.no_fusion
        )
    for option, value in (("--quantize", args.quantize), ("--threads", args.threads)):
        if value is not None:
            raise ConfigError(f"{option} {value}: an option of --runtime onnx")
    if args.no_fusion:
        raise ConfigError("--no-fusion: an option of --runtime onnx")
    module, tokenizer = load_module(args.checkpoint)
    if note := native_bf16_note(args.precision):
        print(note, file=sys.stderr)
    return torch_task_model(module, args.precision), tokenizer


@exit_on_user_errors
def main(argv: Sequence[str] | None = None) -> None:
    keep_freed_memory()
    args = parse_args(argv)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size={args.batch_size}: must be at least 1")
    records, source = read_input_file(args.input)  # all of it first: bad lines fail before work
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads={args.threads}: must be at least 1")
    model, tokenizer = load_task_model(args)
    rows = predict(model, tokenizer, records, source, args.batch_size, args.max_length, args.logits)
    write_json_lines(rows, args.out)


if __name__ == "__main__":
    main()
