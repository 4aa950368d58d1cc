"""CPU inference: bertlab-predict's path (PyTorch eager, ONNX Runtime fp32, ONNX Runtime int8)
and bertlab-embed's encoder against transformers on the same batches; int8's accuracy change.
On a CPU with bf16 instructions (AMX, AVX512-BF16) also `--precision bf16` against
transformers' model in bf16 (`torch_dtype=torch.bfloat16`, its documented bf16 inference),
with their shares of the bf16 matmul rate, and bf16's accuracy change.

python benchmarks/inference.py                         # model=base, batch 1 and 32, sequence 128
python benchmarks/inference.py --repetitions 1 --batch-sizes 1    # a smoke run
python benchmarks/inference.py --checkpoint best.ckpt --dev dev.jsonl   # int8 on a real task
python benchmarks/inference.py --breakdown --skip-accuracy   # + the ceiling of ONNX Runtime fp32

`--breakdown` profiles, per batch size, eager PyTorch's forward (its matrix products against
the rest, torch.profiler) and ONNX Runtime fp32's (its own profiler: the MatMul/Gemm nodes
against all nodes), and prints the most ONNX Runtime could gain over eager if everything but
its matrix products were free: eager's time over ONNX Runtime's product time.

Throughput: every side gets the very same int64 batches (random token ids, all 128 real
tokens, random init is fine for speed) and computes what bertlab-predict computes per batch:
`classify` on a `TaskModel` (forward, softmax, label per row) for bertlab's runtimes, and
`BertForSequenceClassification` (SDPA attention, `torch.inference_mode`) + softmax + argmax
for transformers. The embed rows run the encoder + [CLS] pooling (bertlab's `BertModel`, the
model bertlab-embed loads; transformers' `BertModel` with SDPA). All sides use the same
intra-op thread count (torch's, by default every core).

Accuracy: a classifier (by default a tiny one fine-tuned here by bertlab-train on a
generated SST-2 task) predicts a labelled JSON Lines file through bertlab-predict's torch,
ONNX fp32 and ONNX int8 paths; printed: each accuracy and int8's label agreement with fp32.
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from common import (
    MatmulLimit,
    bertlab_allocator,
    breakdown_lines,
    classification_flops,
    generated_vocabulary,
    hf_config,
    interleaved_rates,
    load,
    machine,
    model_settings,
    report,
    share_line,
    step_breakdown,
)

from bertlab.checkpoints.export import export_module
from bertlab.inference.classify import classify
from bertlab.inference.io import InputRecord
from bertlab.inference.onnx_runtime import (
    load_onnx_task_model,
    new_session,
    optimizer_graph,
    session_forward,
)
from bertlab.inference.precision import has_native_bf16
from bertlab.inference.predict import predict
from bertlab.inference.task_model import torch_task_model
from bertlab.model import BertConfig, BertModel
from bertlab.tasks.classify import ClassificationModule
from bertlab.tokenizer import train_wordpiece

VOCAB_SIZE = 30_522  # bert-base-uncased's
ARCHITECTURE_KEYS = {key for key in BertConfig.__dataclass_fields__}
BF16_SIDE = "bertlab torch bf16"
HF_BF16_SIDE = "transformers bf16"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="base", help="conf/model/<name>.yaml")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--sequence", type=int, default=128)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument(
        "--samples", type=int, default=32, help="samples per repetition (whole batches)"
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--checkpoint", help="a fine-tuned classification .ckpt for accuracy")
    parser.add_argument("--dev", help="JSON Lines with text (+ text_pair) and label, for accuracy")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="profile eager and ONNX Runtime fp32: matrix products against the rest",
    )
    return parser.parse_args()


# ---- throughput -----------------------------------------------------------------------------


def build_classifier(model: str) -> ClassificationModule:
    settings = {k: v for k, v in model_settings(model).items() if k in ARCHITECTURE_KEYS}
    torch.manual_seed(0)
    return ClassificationModule(
        model=settings, optimizer={}, vocab_size=VOCAB_SIZE, num_labels=2
    ).eval()


def transformers_classifier(module: ClassificationModule, settings: dict):
    """transformers' BertForSequenceClassification with the same weights, SDPA attention;
    checked to give the same logits."""
    from transformers import BertForSequenceClassification

    config = hf_config(settings, VOCAB_SIZE, num_labels=2, attn_implementation="sdpa")
    model = BertForSequenceClassification(config).eval()
    missing, _ = model.load_state_dict(module.model.state_dict(), strict=False)
    assert not [key for key in missing if "position_ids" not in key], missing
    (batch,) = batches(2, 16, 1)
    with torch.inference_mode():
        torch.testing.assert_close(model(**batch).logits, module.model(**batch), atol=1e-4, rtol=0)
    return model


def batches(batch_size: int, sequence: int, count: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(batch_size)
    result = []
    for _ in range(count):
        ids = torch.randint(1000, VOCAB_SIZE, (batch_size, sequence), generator=generator)
        ids[:, 0], ids[:, -1] = 2, 3  # [CLS] ... [SEP]
        result.append(
            {
                "input_ids": ids,
                "token_type_ids": torch.zeros_like(ids),
                "attention_mask": torch.ones_like(ids),
            }
        )
    return result


def prediction_sides(module, hf_model, onnx_models, inputs, bf16: bool) -> dict:
    samples = sum(len(batch["input_ids"]) for batch in inputs)
    bertlab_torch = torch_task_model(module)

    def run_bertlab(task_model):
        def run() -> int:
            for batch in inputs:
                classify(task_model, batch)
            return samples

        return run

    def run_transformers(model):
        def run() -> int:
            with torch.inference_mode():
                for batch in inputs:
                    probabilities = model(**batch).logits.float().softmax(-1)
                    [int(i) for i in probabilities.argmax(-1)]
            return samples

        return run

    sides = {
        "transformers (SDPA)": run_transformers(hf_model),
        "bertlab torch": run_bertlab(bertlab_torch),
    }
    sides |= {name: run_bertlab(model) for name, model in onnx_models.items()}
    if bf16:  # a copy: --precision bf16 casts the linear layers' weights
        sides[BF16_SIDE] = run_bertlab(torch_task_model(copy.deepcopy(module), "bf16"))
        # transformers' documented bf16 inference: the model in bf16 (torch_dtype=bfloat16)
        sides[HF_BF16_SIDE] = run_transformers(copy.deepcopy(hf_model).to(torch.bfloat16))
    return sides


def embedding_sides(module, hf_model, inputs) -> dict:
    samples = sum(len(batch["input_ids"]) for batch in inputs)
    encoder: BertModel = module.model.bert
    hf_encoder = hf_model.bert

    def run_bertlab() -> int:
        with torch.inference_mode():
            for batch in inputs:
                sequence_output, _ = encoder(
                    batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
                )
                sequence_output[:, 0].tolist()
        return samples

    def run_transformers() -> int:
        with torch.inference_mode():
            for batch in inputs:
                hf_encoder(**batch).last_hidden_state[:, 0].tolist()
        return samples

    return {"transformers BertModel": run_transformers, "bertlab encoder": run_bertlab}


def onnx_models(module, tokenizer, directory: Path, threads: int) -> dict:
    """ONNX Runtime task models of `module`: fp32 and int8 as `--runtime onnx` runs them, and
    fp32 on the transformer optimizer's graph whether or not it fused attention."""
    export_module(module, tokenizer, "benchmark", "onnx", directory)
    fp32, _ = load_onnx_task_model(directory, threads=threads)
    int8, _ = load_onnx_task_model(directory, quantize="int8", threads=threads)
    config = dataclasses.asdict(module.model.config)
    fused_file, fusion = optimizer_graph(directory / "model.onnx", config)
    print(f"transformer optimizer: {fusion}")
    session = new_session(fused_file, threads)
    optimized = dataclasses.replace(fp32, forward=session_forward(session, fp32.kind))
    return {"onnx fp32": fp32, "onnx fp32 (optimizer graph)": optimized, "onnx int8": int8}


def throughput(args: argparse.Namespace, limit: MatmulLimit, work: Path) -> None:
    bf16_limit = MatmulLimit(precision="bf16") if has_native_bf16() else None
    if bf16_limit is None:
        print("no bf16 instructions on this CPU (amx_bf16, avx512_bf16): no --precision bf16 row")
    settings = model_settings(args.model)
    module = build_classifier(args.model)
    hf_model = transformers_classifier(module, settings)
    tokenizer = train_wordpiece(["a b c"], vocab_size=50, min_frequency=1)  # files only
    print(f"exporting and optimizing the ONNX graphs ({load()})", flush=True)
    runtimes = onnx_models(module, tokenizer, work / "exported", args.threads)
    flops = float(classification_flops(settings, args.sequence, 2)) / 3  # forward only
    for batch_size in args.batch_sizes:
        inputs = batches(batch_size, args.sequence, max(1, args.samples // batch_size))
        title = (
            f"bertlab-predict path, model={args.model}, batch {batch_size}, "
            f"sequence {args.sequence}"
        )
        print(f"\nmeasuring: {title}", flush=True)
        sides = prediction_sides(module, hf_model, runtimes, inputs, bf16_limit is not None)
        rates = interleaved_rates(sides, args.repetitions, limit=limit)
        print(limit)
        bf16_rate = rates.pop(BF16_SIDE, None)
        hf_bf16_rate = rates.pop(HF_BF16_SIDE, None)
        report(title, rates, "bertlab torch", "onnx fp32", flops, limit.rate)
        for name in ("onnx fp32 (optimizer graph)", "onnx int8", "transformers (SDPA)"):
            print(f"  ratio {name} / bertlab torch: {rates[name] / rates['bertlab torch']:.2f}x")
        if bf16_rate is not None:
            bf16_limit.measure()
            print(f"  {bf16_limit}")
            print(
                f"  {BF16_SIDE:<28} {bf16_rate:10.1f} samples/s  "
                f"{share_line(bf16_rate, flops, bf16_limit.rate)} (bf16)"
            )
            print(
                f"  {HF_BF16_SIDE:<28} {hf_bf16_rate:10.1f} samples/s  "
                f"{share_line(hf_bf16_rate, flops, bf16_limit.rate)} (bf16)"
            )
            print(f"  ratio {BF16_SIDE} / bertlab torch: {bf16_rate / rates['bertlab torch']:.2f}x")
            print(f"  ratio {BF16_SIDE} / {HF_BF16_SIDE}: {bf16_rate / hf_bf16_rate:.2f}x")
        title = (
            f"bertlab-embed encoder, model={args.model}, batch {batch_size}, "
            f"sequence {args.sequence}"
        )
        print(f"\nmeasuring: {title}", flush=True)
        sides = embedding_sides(module, hf_model, inputs)
        rates = interleaved_rates(sides, args.repetitions, limit=limit)
        print(limit)
        report(title, rates, "transformers BertModel", "bertlab encoder", flops, limit.rate)
        if args.breakdown:
            ceiling(module, work / "exported" / "model.onnx", inputs[0], args.threads, limit.rate)


# ---- the ceiling: matrix products against the rest ----------------------------------------

# ONNX Runtime's CPU matrix-product kernels (the rest is element-wise work, copies, softmax).
ONNX_PRODUCTS = {"MatMul", "Gemm", "FusedMatMul", "MatMulInteger", "DynamicQuantizeMatMul"}


def onnx_node_seconds(model_file: Path, batch: dict, threads: int, runs: int = 5) -> dict:
    """Seconds per run of ONNX Runtime's matrix-product nodes and of all nodes (its profiler)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(
        str(model_file), options, providers=["CPUExecutionProvider"]
    )
    feed = {i.name: batch[i.name].numpy() for i in session.get_inputs()}
    session.run(None, feed)  # warm-up, before profiling starts
    options.enable_profiling = True
    options.profile_file_prefix = str(model_file.parent / "profile")
    profiled = onnxruntime.InferenceSession(
        str(model_file), options, providers=["CPUExecutionProvider"]
    )
    profiled.run(None, feed)  # its own warm-up: dropped below with the first run's events
    for _ in range(runs):
        profiled.run(None, feed)
    events = json.loads(Path(profiled.end_profiling()).read_text())
    nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    per_run = len(nodes) // (runs + 1)
    timed = nodes[per_run:]  # the runs after the warm-up
    products = sum(e["dur"] for e in timed if e["args"].get("op_name") in ONNX_PRODUCTS)
    return {
        "product_seconds": products / 1e6 / runs,
        "node_seconds": sum(e["dur"] for e in timed) / 1e6 / runs,
    }


def ceiling(module, model_file: Path, batch: dict, threads: int, limit: float) -> None:
    """Print eager's and ONNX Runtime fp32's breakdowns and the most ONNX Runtime could gain."""
    task_model = torch_task_model(module)
    eager = step_breakdown(lambda: classify(task_model, batch))
    print(breakdown_lines("bertlab torch (forward)", eager, limit))
    onnx = onnx_node_seconds(model_file, batch, threads)
    products, nodes = onnx["product_seconds"], onnx["node_seconds"]
    rest = nodes - products
    print(
        f"  {'onnx fp32 (profiler)':<28} nodes {nodes * 1e3:.1f} ms: matrix products "
        f"{products * 1e3:.1f} ms ({products / nodes:.0%}), the rest {rest * 1e3:.1f} ms"
    )
    print(
        f"  ceiling of onnx fp32 / bertlab torch, with all but its products free: "
        f"{eager['step_seconds'] / products:.2f}x"
    )


# ---- int8 accuracy ------------------------------------------------------------------------

POSITIVE = ["summer", "music", "garden", "meadow", "silver", "candle"]
NEGATIVE = ["winter", "thunder", "engine", "rocket", "marble", "copper"]


def generated_sentences(count: int, seed: int) -> list[tuple[str, str]]:
    """SST-2-like rows: 3 to 12 neutral words with 1 to 4 POSITIVE and NEGATIVE words mixed
    in, labelled 1 when the POSITIVE ones are more (never a tie): learnable, not trivially."""
    rng = random.Random(seed)
    words = generated_vocabulary(200, seed=7)
    rows = []
    for _ in range(count):
        sentence = rng.sample(words, rng.randint(3, 12))
        positives = rng.randint(0, 4)
        negatives = rng.choice([n for n in range(5) if n != positives and n + positives > 0])
        for word in rng.choices(POSITIVE, k=positives) + rng.choices(NEGATIVE, k=negatives):
            sentence.insert(rng.randrange(len(sentence) + 1), word)
        rows.append((" ".join(sentence), str(int(positives > negatives))))
    return rows


def fine_tuned_checkpoint(work: Path) -> tuple[Path, Path]:
    """A tiny SST-2 classifier trained by bertlab-train on generated GLUE files; its dev set."""
    data = work / "SST-2"
    data.mkdir(parents=True)
    for name, count, seed in (("train", 512, 0), ("dev", 400, 1)):
        with open(data / f"{name}.tsv", "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out, delimiter="\t", lineterminator="\n")
            writer.writerows([("sentence", "label"), *generated_sentences(count, seed)])
    with open(data / "test.tsv", "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, delimiter="\t", lineterminator="\n")
        writer.writerows([("index", "sentence"), (0, "summer meadow")])
    run = work / "run"
    command = [sys.executable, "-m", "bertlab.cli.train", "task=glue/sst2"]
    command += [f"task.data_dir={data}", "model=tiny", "task.max_seq_length=32"]
    command += ["optimizer.lr=1e-3", "trainer.max_steps=300", "trainer.max_epochs=20"]
    command += [f"hydra.run.dir={run}", "~callbacks.progress_bar"]
    print("fine-tuning a tiny classifier on a generated SST-2 task ...", flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ))
    checkpoint = Path(json.loads((run / "results.json").read_text())["last_checkpoint"])
    dev = work / "dev.jsonl"
    rows = generated_sentences(400, 1)
    dev.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    return checkpoint, dev


def accuracy(args: argparse.Namespace, work: Path) -> None:
    from bertlab.checkpoints.restore import load_module

    checkpoint, dev = (
        (Path(args.checkpoint), Path(args.dev)) if args.checkpoint else fine_tuned_checkpoint(work)
    )
    rows = [json.loads(line) for line in dev.read_text(encoding="utf-8").splitlines() if line]
    records = [
        InputRecord(i + 1, {k: v for k, v in row.items() if k != "label"})
        for i, row in enumerate(rows)
    ]
    gold = [str(row["label"]) for row in rows]
    module, tokenizer = load_module(checkpoint)
    models = {"torch": torch_task_model(copy.deepcopy(module))}
    if has_native_bf16():
        models["torch bf16"] = torch_task_model(module, "bf16")
    models["onnx fp32"], _ = load_onnx_task_model(checkpoint, threads=args.threads)
    models["onnx int8"], _ = load_onnx_task_model(checkpoint, "int8", threads=args.threads)
    labels = {
        name: [str(r["label"]) for r in predict(model, tokenizer, records, str(dev))]
        for name, model in models.items()
    }
    print(f"\nint8 (and bf16) accuracy change: {checkpoint} on {dev} ({len(gold)} examples)")
    for name, predicted in labels.items():
        correct = sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold)
        print(f"  {name:<10} accuracy {correct:.4f}")
    agreement = sum(
        a == b for a, b in zip(labels["onnx fp32"], labels["onnx int8"], strict=True)
    ) / len(gold)
    print(f"  int8 labels equal to fp32's on {agreement:.2%} of the examples")
    if "torch bf16" in labels:
        agreement = sum(
            a == b for a, b in zip(labels["torch"], labels["torch bf16"], strict=True)
        ) / len(gold)
        print(f"  torch bf16 labels equal to torch fp32's on {agreement:.2%} of the examples")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    print(f"{machine()}; {bertlab_allocator()}")
    print(f"{load()}; every side runs {args.threads} intra-op threads")
    limit = MatmulLimit()
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        os.environ["BERTLAB_CACHE"] = str(work / "cache")  # exports stay out of the user's cache
        throughput(args, limit, work)
        if not args.skip_accuracy:
            accuracy(args, work)


if __name__ == "__main__":
    main()
