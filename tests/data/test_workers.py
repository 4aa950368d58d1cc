"""Preparation workers: they start without the parent's main module and end with the parent."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKER_PARENT = """
import sys, time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing, os
from bertlab.data.workers import end_with_parent
spawn = multiprocessing.get_context("spawn")
parent = (os.getpid(),)
with ProcessPoolExecutor(2, mp_context=spawn, initializer=end_with_parent, initargs=parent) as pool:
    workers = {pool.submit(os.getpid).result() for _ in range(4)}
    pool.submit(time.sleep, 600)
    print(*workers, flush=True)
    time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_preparation_workers_end_with_their_parent(tmp_path):
    parent = subprocess.Popen(
        [sys.executable, "-c", WORKER_PARENT], stdout=subprocess.PIPE, text=True
    )
    try:
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert workers and all(_running(pid) for pid in workers)
        parent.kill()  # as `kill -9` of bertlab-prepare
        parent.wait()
        deadline = time.monotonic() + 10
        while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_running(pid) for pid in workers)
    finally:
        parent.kill()


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for its new parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


MAIN_MODULE = """
import os, sys
from bertlab.data.workers import run_tasks
print("main module imported", flush=True)  # once: by the parent, never by a worker
if __name__ == "__main__":
    tasks = ({"n": n} for n in range(6))
    print(sorted(run_tasks(dict, tasks, workers=2), key=str) and "done", flush=True)
    print(sys.modules["__main__"].__file__ == __file__, flush=True)
"""


def test_workers_start_without_importing_the_parents_main_module(tmp_path):
    """A worker that imported bertlab-prepare's main module would load torch and Lightning."""
    script = tmp_path / "main.py"
    script.write_text(MAIN_MODULE)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.split("\n")[:3] == ["main module imported", "done", "True"]
