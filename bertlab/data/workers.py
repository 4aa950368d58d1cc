"""Preparation worker processes: started without the parent's imports, ended with the parent.

`bertlab-prepare` (and `bertlab-train` when it prepares) run in a process that has imported
torch and Lightning. A spawned worker imports its parent's `__main__` module first
(multiprocessing's rule, so that pickled functions defined there resolve): seconds of CPU
and about 0.5 GiB per worker, before any work. The workers here run functions of
bertlab.data.sentences and bertlab.data.instances, which import only numpy and tokenizers,
so the main module is hidden while they start (`_without_main_module`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def run_tasks(function: Callable[[dict], dict], tasks: Iterator[dict], workers: int):
    """`function` over tasks in `workers` processes, at most 2 per worker in flight (bounded
    memory); results in the tasks' order.
    """
    first_two = list(itertools.islice(tasks, 2))
    tasks = itertools.chain(first_two, tasks)
    if workers <= 1 or len(first_two) < 2:
        # one chunk: worker start-up would cost more than it saves
        yield from map(function, tasks)
        return
    # spawn, not fork: the parent may already hold tokenizer thread pools.
    with (
        _without_main_module(),
        ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=end_with_parent,
            initargs=(os.getpid(),),
        ) as pool,
    ):
        pending = []
        for task in tasks:
            pending.append(pool.submit(function, task))
            if len(pending) >= 2 * workers:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


@contextmanager
def _without_main_module():
    """Spawned processes skip importing `__main__` (it has neither a spec nor a file)."""
    main = sys.modules["__main__"]
    saved = {name: vars(main)[name] for name in ("__spec__", "__file__") if name in vars(main)}
    main.__spec__ = None
    vars(main).pop("__file__", None)
    try:
        yield
    finally:
        vars(main).update(saved)


def end_with_parent(parent_pid: int) -> None:
    """Pool initializer: this worker exits when the process that started it dies.

    A killed `bertlab-prepare` would otherwise leave its workers building shards into an
    abandoned directory for minutes. Linux kills the worker the moment its parent dies
    (PR_SET_PDEATHSIG); elsewhere a daemon thread checks the parent once a second.
    """
    if sys.platform.startswith("linux") and _set_parent_death_signal(signal.SIGKILL):
        if os.getppid() != parent_pid:  # the parent died before the signal was set
            os._exit(1)
        return
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True).start()


def _set_parent_death_signal(signal_number: int) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _exit_when_orphaned(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1)
    os._exit(1)
