"""DDP inside a Hydra multirun (bertlab/runtime/ddp.py): a job's ranks rerun that job only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.runs import CONF_DIR

# ---------------------------------------------------------------- DDP inside a multirun


RANK_COMMAND_STUB = """
import json, os, sys
import hydra
from hydra.core.hydra_config import HydraConfig
from lightning_fabric.strategies.launchers.subprocess_script import _hydra_subprocess_cmd
from bertlab.runtime.ddp import ddp_relaunch_of_this_job

@hydra.main(config_path={conf!r}, config_name="train", version_base="1.3")
def train(cfg) -> float:
    output_dir = HydraConfig.get().runtime.output_dir
    with ddp_relaunch_of_this_job():
        os.environ["LOCAL_RANK"] = "0"  # as Lightning's launcher leaves it
        command, _ = _hydra_subprocess_cmd(local_rank=1)
    record = {{
        "command": command[2:],
        "argv_after": sys.argv[1:],
        "local_rank_after": os.environ.get("LOCAL_RANK"),
    }}
    (open(os.path.join(output_dir, "rank1_command.json"), "w")).write(json.dumps(record))
    return 0.0

if __name__ == "__main__":
    train()
"""


DDP_STUB = """
import json, os
import hydra
import pytorch_lightning as pl
from pytorch_lightning.demos.boring_classes import BoringModel
from hydra.core.hydra_config import HydraConfig
from bertlab.runtime.ddp import ddp_relaunch_of_this_job

@hydra.main(config_path={conf!r}, config_name="train", version_base="1.3")
def train(cfg) -> float:
    output_dir = HydraConfig.get().runtime.output_dir
    with ddp_relaunch_of_this_job():
        trainer = pl.Trainer(
            accelerator="cpu", devices=2, strategy="ddp", max_steps=2, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, default_root_dir=output_dir,
        )
        trainer.fit(BoringModel())
    record = {{"world_size": trainer.world_size, "lr": cfg.optimizer.lr}}
    path = os.path.join(output_dir, f"rank{{trainer.global_rank}}.json")
    open(path, "w").write(json.dumps(record))
    return 0.0

if __name__ == "__main__":
    train()
"""


def run_script_sweep(tmp_path: Path, source: str, *overrides: str) -> Path:
    script = tmp_path / "stub.py"
    script.write_text(source.format(conf=str(CONF_DIR)))
    sweep_dir = tmp_path / "multirun"
    environment = {**os.environ, "PYTHONPATH": str(CONF_DIR.parent)}
    command = [sys.executable, str(script), "-m", f"hydra.sweep.dir={sweep_dir}", *overrides]
    finished = subprocess.run(
        command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    return sweep_dir


def test_ddp_ranks_of_a_multirun_job_rerun_only_that_job(tmp_path: Path) -> None:
    sweep_dir = run_script_sweep(tmp_path, RANK_COMMAND_STUB, "optimizer.lr=1e-5,2e-5")

    for job, lr in (("0", "1e-05"), ("1", "2e-05")):
        record = json.loads((sweep_dir / job / "rank1_command.json").read_text())
        assert record["command"][:2] == [f"optimizer.lr={lr}", f'hydra.run.dir="{sweep_dir / job}"']
        assert "-m" not in record["command"]
        assert record["argv_after"][0] == "-m"  # the sweep's own command line is back
        assert record["local_rank_after"] is None  # so the next job starts its own ranks


@pytest.mark.slow
def test_cpu_ddp_inside_a_multirun_trains_each_job_once(tmp_path: Path) -> None:
    sweep_dir = run_script_sweep(tmp_path, DDP_STUB, "optimizer.lr=1e-5,2e-5")

    for job, lr in (("0", 1e-5), ("1", 2e-5)):
        for rank in (0, 1):
            record = json.loads((sweep_dir / job / f"rank{rank}.json").read_text())
            assert record == {"world_size": 2, "lr": lr}
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["0", "1"]
