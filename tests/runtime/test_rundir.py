"""One run per run dir: a second run is refused, a killed run leaves no lock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bertlab.runtime.rundir import RunDir, claimed

# ---- runs and files: one run per run dir, no writes through symlinks (issue 15) ---------------


HOLD_RUN_DIR = """
import sys
from pathlib import Path
from bertlab.runtime.rundir import RunDir, claimed
with claimed(RunDir(Path(sys.argv[1])), resume=False):
    print("held", flush=True)
    sys.stdin.read()  # until killed
"""


def hold_run_dir(run_dir: Path) -> subprocess.Popen:
    """Another process that owns run_dir as a running bertlab-train would."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_RUN_DIR, str(run_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_run_in_a_busy_run_dir_is_refused_and_a_killed_run_leaves_no_lock(tmp_path):
    run_dir = tmp_path / "run"
    holder = hold_run_dir(run_dir)
    try:
        refused = subprocess.run(
            [sys.executable, "-m", "bertlab.cli.train", f"hydra.run.dir={run_dir}"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert refused.stderr.strip().splitlines()[-1] == (
            f"error: hydra.run.dir={run_dir}: another run is using this directory (it holds "
            f"{run_dir / '.lock'}); wait for it to end, or choose another hydra.run.dir"
        )
    finally:
        holder.kill()  # SIGKILL: no chance to clean up
        holder.wait()
    with claimed(RunDir(run_dir), resume=False):  # the kernel released the dead run's lock
        pass
