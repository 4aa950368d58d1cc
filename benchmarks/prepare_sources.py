"""Preparing a JSON Lines corpus: throughput per core and peak memory of `bertlab-prepare`.

Generates a JSON Lines corpus (default 1 GB; one record a document of prose paragraphs,
Zipf-distributed pseudo-words), trains a WordPiece vocabulary on its first 5 MB, then runs
`python -m bertlab.cli.prepare task.corpus=FILE tokenizer.path=...` with a fresh cache on
the corpus' first N MB for each `--megabytes N` (`--splitter`, default regex), then on its
first `--spacy-megabytes` (default 100) with spaCy's sentencizer, so the time is the
instances' alone: read records, split sentences, tokenize, pair, write shards. Prints MB/s,
MB/s per worker process, and peak memory: the process tree's resident total (sampled every
0.1 s) per run, and getrusage's ru_maxrss of this benchmark's children (the largest single
process of all runs: a command or one of its workers).

    python benchmarks/prepare_sources.py                      # 1 GB regex, 100 MB spaCy
    python benchmarks/prepare_sources.py --megabytes 50 200 1000   # memory at three sizes
    python benchmarks/prepare_sources.py --megabytes 5 --spacy-megabytes 5   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from common import generated_vocabulary, load, machine
from prepare import run_watched

from bertlab.tokenizer import save_tokenizer, train_wordpiece


def write_jsonl_corpus(path: Path, megabytes: float, seed: int = 0) -> Path:
    """Records {"id", "text"}; a text is 1 to 4 paragraphs of about 4 sentences each."""
    rng = np.random.default_rng(seed)
    vocabulary = np.array(generated_vocabulary(30_000, seed), dtype=object)
    probabilities = 1 / np.arange(1, len(vocabulary) + 1) ** 0.9
    probabilities /= probabilities.sum()
    target, written, number = int(megabytes * 1_000_000), 0, 0
    with open(path, "w", encoding="utf-8") as out:
        while written < target:
            words = vocabulary[rng.choice(len(vocabulary), 200_000, p=probabilities)].tolist()
            lengths = rng.integers(6, 26, size=20_000)
            records, start, sentences = [], 0, []
            for length in lengths.tolist():
                if start + length > len(words):
                    break
                sentences.append(" ".join(words[start : start + length]).capitalize() + ".")
                start += length
                if len(sentences) >= 4 * int(rng.integers(1, 5)):
                    paragraphs = [
                        " ".join(sentences[i : i + 4]) for i in range(0, len(sentences), 4)
                    ]
                    records.append(json.dumps({"id": number, "text": "\n".join(paragraphs)}))
                    number, sentences = number + 1, []
            block = "\n".join(records) + "\n"
            out.write(block)
            written += len(block)
    return path


def first_texts(path: Path, megabytes: float):
    budget = megabytes * 1_000_000
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            budget -= len(line)
            if budget < 0:
                return
            yield json.loads(line)["text"]


def prefix_corpus(corpus: Path, megabytes: float, path: Path) -> Path:
    """The corpus' first records, up to `megabytes` (whole lines); the corpus if that is all."""
    left = int(megabytes * 1_000_000)
    if left >= corpus.stat().st_size:
        return corpus
    with open(corpus, "rb") as source, open(path, "wb") as out:
        while left > 0:  # in blocks: the benchmark's own memory stays small
            block = source.read(min(left, 1 << 24))
            out.write(block)
            left -= len(block)
        out.write(source.readline())
    return path


def run_prepare(corpus: Path, work: Path, workers: int, splitter: str) -> dict:
    """Time `bertlab-prepare` on `corpus`; returns seconds, peaks and the command's output."""
    cache = work / f"cache-{corpus.stem}-{splitter}"
    command = [
        sys.executable,
        "-m",
        "bertlab.cli.prepare",
        f"task.corpus={corpus}",
        f"task.prepare_workers={workers}",
        f"task.sentence_splitter={splitter}",
        f"tokenizer.path={work / 'tokenizer'}",
        f"cache_dir={cache}",
        f"hydra.run.dir={work / 'run'}",
    ]
    try:
        seconds, peak_tree, output = run_watched(command)
    finally:
        shutil.rmtree(cache, ignore_errors=True)  # the next run's disk
    return {"seconds": seconds, "peak_tree": peak_tree, "output": output}


def report(megabytes: float, workers: int, splitter: str, run: dict) -> None:
    seconds = run["seconds"]
    print(f"bertlab-prepare on {megabytes:.1f} MB of JSON Lines, {workers} workers, {splitter}")
    print(
        f"  wall time {seconds:.1f} s: {megabytes / seconds:.2f} MB/s, "
        f"{megabytes / seconds / max(1, workers):.2f} MB/s per worker"
    )
    print(f"  peak memory, process tree (sampled): {run['peak_tree'] / 2**30:.2f} GiB   ({load()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--megabytes", type=float, nargs="+", default=[1000], help="corpus sizes, each a run"
    )
    parser.add_argument("--workers", type=int, default=2, help="task.prepare_workers")
    parser.add_argument("--splitter", default="regex", help="task.sentence_splitter")
    parser.add_argument(
        "--spacy-megabytes", type=float, default=100, help="then spacy on this much (0: not)"
    )
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/bertlab-prepare-sources"))
    parser.add_argument("--keep", action="store_true", help="keep the corpus and cache")
    args = parser.parse_args()
    print(f"machine: {machine()}; {load()}")
    shutil.rmtree(args.work_dir, ignore_errors=True)
    args.work_dir.mkdir(parents=True)
    started = time.perf_counter()
    largest = max([*args.megabytes, args.spacy_megabytes])
    corpus = write_jsonl_corpus(args.work_dir / "corpus.jsonl", largest)
    print(
        f"generated {corpus.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - started:.0f} s"
    )
    save_tokenizer(train_wordpiece(first_texts(corpus, 5)), args.work_dir / "tokenizer")
    runs = [(size, args.splitter) for size in args.megabytes]
    runs += [(args.spacy_megabytes, "spacy")] if args.spacy_megabytes else []
    try:
        for size, splitter in runs:
            part = prefix_corpus(corpus, size, args.work_dir / f"corpus-{size:g}.jsonl")
            run = run_prepare(part, args.work_dir, args.workers, splitter)
            print("\n".join(run["output"].strip().splitlines()[-10:]))
            report(part.stat().st_size / 1e6, args.workers, splitter, run)
            if part != corpus:
                part.unlink()
    finally:
        if not args.keep:
            shutil.rmtree(args.work_dir, ignore_errors=True)
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"peak memory, largest child process of all runs (getrusage): {child / 2**30:.2f} GiB")
    print(f"peak memory, this benchmark (generation, vocabulary): {own / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
