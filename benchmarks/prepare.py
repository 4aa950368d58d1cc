"""Data preparation: `bertlab-prepare` throughput (MB/s of raw text) and peak memory.

Writes a generated corpus (default 200 MB, BERT's format) to /tmp, runs
`python -m bertlab.cli.prepare task.corpus=...` in a subprocess with a fresh cache, and
reports wall time, MB/s, and peak memory two ways: the sum of the resident set sizes of
the whole process tree (the command and its worker processes), sampled every 0.1 s
from /proc, and the largest single process's peak (getrusage RUSAGE_CHILDREN ru_maxrss).
The time covers the whole command: WordPiece training on the corpus, then the
pretraining instances (tokenize, pair, mask, write memory-mapped shards).

The limit it is compared with: the same machine encoding the corpus with the run's own
WordPiece tokenizer alone (`Tokenizer.encode_batch`, Rust, every core), the least work
any preparation must do; the command's MB/s is printed as a share of that rate.

    python benchmarks/prepare.py                 # 200 MB
    python benchmarks/prepare.py --megabytes 500 --keep
    python benchmarks/prepare.py --megabytes 1          # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import load, machine, write_generated_corpus

from bertlab.tokenizer import TOKENIZER_FILE, load_tokenizer

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def children_of() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
        tree.setdefault(parent, []).append(int(entry.name))
    return tree


def tree_rss_bytes(root: int) -> int:
    """Resident memory of `root` and all its descendants, now."""
    tree, total, pending = children_of(), 0, [root]
    while pending:
        pid = pending.pop()
        pending += tree.get(pid, [])
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_BYTES
    return total


def run_watched(command: list[str], cwd: Path | None = None) -> tuple[float, int, str]:
    """Run a bertlab-prepare `command`: (seconds, peak process-tree RSS bytes, output), sampling
    the tree's memory every 0.1 s; exits naming the failure if the command fails."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd
    )
    peak_tree = 0
    while process.poll() is None:
        peak_tree = max(peak_tree, tree_rss_bytes(process.pid))
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    output = process.stdout.read()
    if process.returncode != 0:
        raise SystemExit(f"bertlab-prepare failed ({process.returncode}):\n{output[-3000:]}")
    return seconds, peak_tree, output


def run_prepare(corpus: Path, work: Path) -> tuple[float, int, int, str]:
    """(seconds, peak tree RSS bytes, peak single-process RSS bytes, output)."""
    command = [
        sys.executable,
        "-m",
        "bertlab.cli.prepare",
        f"task.corpus={corpus}",
        f"cache_dir={work / 'cache'}",
        f"hydra.run.dir={work / 'run'}",
    ]
    seconds, peak_tree, output = run_watched(command, cwd=work)
    peak_single = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    return seconds, peak_tree, peak_single, output


def tokenizer_rate(cache: Path, corpus: Path, megabytes: float = 20) -> float:
    """MB/s of the run's WordPiece tokenizer encoding the corpus's first `megabytes`."""
    tokenizer = load_tokenizer(next(cache.rglob(TOKENIZER_FILE)))
    with open(corpus, encoding="utf-8") as text:
        lines = [line for line in text.read(int(megabytes * 1e6)).splitlines() if line.strip()]
    size = sum(len(line.encode()) + 1 for line in lines) / 1e6
    started = time.perf_counter()
    for first in range(0, len(lines), 20_000):  # in blocks: encodings of 20 MB are large
        tokenizer.encode_batch(lines[first : first + 20_000])
    return size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=200)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/bertlab-prepare-benchmark"))
    parser.add_argument("--keep", action="store_true", help="keep the corpus and cache")
    args = parser.parse_args()
    print(f"machine: {machine()}; {load()}")
    shutil.rmtree(args.work_dir, ignore_errors=True)
    args.work_dir.mkdir(parents=True)
    corpus = write_generated_corpus(args.work_dir / "corpus.txt", args.megabytes)
    megabytes = corpus.stat().st_size / 1e6
    try:
        seconds, peak_tree, peak_single, output = run_prepare(corpus, args.work_dir)
        limit = tokenizer_rate(args.work_dir / "cache", corpus)
    finally:
        if not args.keep:
            shutil.rmtree(args.work_dir, ignore_errors=True)
    print("\n".join(output.strip().splitlines()[-8:]))
    print(f"bertlab-prepare on {megabytes:.0f} MB of generated text")
    print(
        f"  wall time {seconds:.1f} s: {megabytes / seconds:.2f} MB/s = "
        f"{megabytes / seconds / limit:.1%} of the tokenizer alone ({limit:.2f} MB/s)"
    )
    print(f"  peak memory, process tree (sampled): {peak_tree / 2**30:.2f} GiB")
    print(f"  peak memory, largest single process: {peak_single / 2**30:.2f} GiB   ({load()})")


if __name__ == "__main__":
    main()
