"""DDP inside a Hydra multirun: Lightning's launcher must start the other ranks of this job only.

The pitfalls are in docs/sweeps.md ("DDP inside a sweep").
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import torch.distributed
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict, read_write

from bertlab.runtime.hydra import in_multirun, job_overrides

# Set by Lightning's DDP launcher in the launching process; left over, they make the next job
# of the sweep believe its ranks were started externally, and it waits for them forever.
DDP_ENVIRONMENT = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextlib.contextmanager
def ddp_relaunch_of_this_job() -> Iterator[None]:
    """Within a Hydra multirun job, make Lightning's DDP launcher start the other ranks of this job
    only.

    Lightning starts ranks 1..N-1 by re-running the command line plus `hydra.run.dir=<run.dir>`.
    In a multirun that command line is the whole sweep (`-m`, comma lists, an Optuna search),
    so every rank would run its own sweep, pairing with rank 0 only while both happen to
    draw the same jobs in the same order. Inside this context the command line is this job's
    own overrides and run.dir is this job's directory. On exit the launcher's environment is
    restored so the next job starts its own ranks. Outside a multirun it does nothing.
    """
    if not in_multirun():
        yield
        return
    hydra_config = HydraConfig.get()
    saved_argv, saved_run_dir = sys.argv, hydra_config.run.dir
    saved_environment = {name: os.environ.get(name) for name in DDP_ENVIRONMENT}
    sys.argv = [sys.argv[0], *job_overrides()]
    _set_run_dir(hydra_config, hydra_config.runtime.output_dir)
    try:
        yield
    finally:
        sys.argv = saved_argv
        _set_run_dir(hydra_config, saved_run_dir)
        _restore_environment(saved_environment)
        _destroy_process_group()


def _restore_environment(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _destroy_process_group() -> None:
    # The next job's ranks form a new group; torch refuses to initialise the default one twice.
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _set_run_dir(hydra_config: DictConfig, run_dir: str) -> None:
    # HydraConfig is read-only by design; this is the one value Lightning reads from it.
    with read_write(hydra_config), open_dict(hydra_config):
        hydra_config.run.dir = run_dir
