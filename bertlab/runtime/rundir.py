"""The run directory: where a run's files live, and the rule that it belongs to one run.

`RunDir` names every path bertlab reads or writes in it, once. `claimed(run_dir, resume)`
holds the directory for the length of a run (docs/reliability.md, "Runs and files"):

- a second run in the same directory while the first is still running is refused, naming
  the directory. The lock is an OS file lock on `.lock`, which the kernel releases when its
  process ends, so a killed run never leaves the directory stuck;
- a fresh run (`resume=false`) in a directory an earlier run wrote to starts clean: the
  earlier `checkpoints/` and `results.json` are removed first, so nothing of that run can
  pass for this one's (a stale `best.ckpt`, or a `results.json` left when this run fails).
  `resume=true` keeps them: it continues that run.

Under DDP only global rank 0 claims; the other ranks join its run.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout
from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_only

from bertlab.errors import ConfigError

log = logging.getLogger(__name__)

# Lightning's SLURM auto-requeue continues from these without resume=true (docs/reliability.md).
REQUEUE_CHECKPOINTS = "hpc_ckpt_*.ckpt"


@dataclass(frozen=True)
class RunDir:
    """The paths inside one run directory (`run_dir`, Hydra's output dir)."""

    root: Path

    @classmethod
    def of(cls, cfg: DictConfig) -> RunDir:
        return cls(Path(str(cfg.run_dir)))

    @property
    def checkpoints(self) -> Path:
        """`last.ckpt`, `best.ckpt` and the tokenizer files (`tokenizer.json`, `vocab.txt`)."""
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def results(self) -> Path:
        return self.root / "results.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def resume_checkpoint(self, resume: bool) -> str | None:
        """What `trainer.fit(ckpt_path=...)` continues from (validation checked that it exists)."""
        return str(self.last_checkpoint) if resume else None


@contextmanager
def claimed(run_dir: RunDir, resume: bool) -> Iterator[None]:
    """Hold `run_dir` for this run; a fresh run first clears what an earlier run left."""
    if rank_zero_only.rank != 0:
        yield
        return
    run_dir.root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_dir.lock, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ConfigError(
            f"hydra.run.dir={run_dir.root}: another run is using this directory (it holds "
            f"{run_dir.lock}); wait for it to end, or choose another hydra.run.dir"
        ) from None
    try:
        if not resume:
            clear_earlier_run(run_dir)
        yield
    finally:
        lock.release()


def clear_earlier_run(run_dir: RunDir) -> None:
    """Remove an earlier run's checkpoints and results, unless Lightning continues it itself."""
    if any(run_dir.root.glob(REQUEUE_CHECKPOINTS)):
        return
    earlier = [p for p in (run_dir.checkpoints, run_dir.results) if p.is_symlink() or p.exists()]
    for path in earlier:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()  # a symlink is removed, never followed
    if earlier:
        log.warning(
            "%s held an earlier run: removed its %s (resume=true continues a run instead)",
            run_dir.root,
            " and ".join(p.name for p in earlier),
        )
