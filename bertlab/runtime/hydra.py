"""What bertlab asks Hydra about the running job: multirun or not, its overrides, its sweep.

Every question is answered here once (bertlab/runtime/ddp.py, which rewrites the job's
run dir for Lightning's launcher, is the only other module touching `HydraConfig`).
Outside a Hydra app (a test calling `train(cfg)`, a notebook) the answers are those of a
single run.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.types import RunMode

_PARSER = OverridesParser.create()


def in_multirun() -> bool:
    """True inside a job of `-m` (a sweep), whose failure must not end the other jobs."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def job_overrides() -> list[str]:
    """This job's command-line overrides (in a multirun: this job's values, not the sweep's)."""
    return list(HydraConfig.get().overrides.task)


def sweep_dir() -> str | None:
    """The multirun's directory (what groups its jobs), or None for a single run."""
    return str(HydraConfig.get().sweep.dir) if in_multirun() else None


def parse_override(argument: str) -> Override:
    """Hydra's reading of one `key=value` argument; raises HydraException when it cannot."""
    return _PARSER.parse_override(argument)


def override_key(override: str) -> str:
    """`+optimizer.lr=2e-5` -> `optimizer.lr`: the `+`, `++` or `~` prefix is not part of the
    key.
    """
    return override.split("=", 1)[0].lstrip("+~")


def swept_overrides(overrides: Sequence[str]) -> list[str]:
    """In a multirun, the overrides that vary between its jobs (what tells them apart).

    A single run, or a multirun sweeping nothing of this job's, gets all its overrides.
    """
    if not in_multirun():
        return list(overrides)
    arguments = [arg for arg in sys.argv[1:] if "=" in arg and not arg.startswith("-")]
    parsed = _PARSER.parse_overrides(arguments)
    swept = {override.get_key_element() for override in parsed if override.is_sweep_override()}
    swept |= set(HydraConfig.get().sweeper.get("params") or {})  # Optuna's search space
    return [o for o in overrides if override_key(o) in swept] or list(overrides)
