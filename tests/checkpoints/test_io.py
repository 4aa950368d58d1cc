"""Safe loading refuses a pickle that would run code; checkpoints are written atomically."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest
import torch

from bertlab import pipeline
from bertlab.checkpoints import hf
from bertlab.checkpoints.io import AtomicCheckpointIO, load_checkpoint
from bertlab.errors import UnsafeCheckpointError
from bertlab.runtime.results import ValidationRecorder
from bertlab.runtime.rundir import RunDir

from support.models import write_malicious_checkpoint
from support.runs import FAST_PRETRAINING


def test_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    checkpoint = write_malicious_checkpoint(tmp_path / "evil.ckpt", target)
    with pytest.raises(UnsafeCheckpointError) as error:
        load_checkpoint(checkpoint)
    assert not target.exists()
    assert "evil.ckpt: refused to load" in str(error.value)
    assert "could run code (WeightsUnpickler error: Unsupported global: GLOBAL exec" in str(
        error.value
    )

    directory = tmp_path / "hf"  # a Hugging Face directory's .bin goes through the same door
    directory.mkdir()
    write_malicious_checkpoint(directory / "pytorch_model.bin", target)
    with pytest.raises(UnsafeCheckpointError):
        hf.load_hf_state_dict(directory)
    assert not target.exists()

    torch.load(checkpoint, weights_only=False)  # the payload is real: an unsafe load runs it
    assert target.exists()


# ---- atomic checkpoints ---------------------------------------------------------------------


def half_written_then(error: BaseException):
    """A torch.save that writes half the bytes and then fails (a full disk, a kill)."""
    real_save = torch.save

    def save(obj, handle, *args, **kwargs):
        import io

        buffer = io.BytesIO()
        real_save(obj, buffer)
        handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        handle.flush()
        raise error

    return save


def test_full_disk_mid_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1, "weights": torch.ones(1000)}, path)

    monkeypatch.setattr(torch, "save", half_written_then(OSError(errno.ENOSPC, "No space left")))
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"global_step": 2, "weights": torch.zeros(1000)}, path)

    previous = load_checkpoint(path)
    assert previous["global_step"] == 1 and torch.equal(previous["weights"], torch.ones(1000))
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no half file left


def test_kill_mid_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1}, path)

    child = os.fork()
    if child == 0:  # the child dies by SIGKILL halfway through writing step 2
        torch.save = half_written_then(SystemExit())
        try:
            io.save_checkpoint({"global_step": 2, "weights": torch.zeros(10_000)}, path)
        except SystemExit:
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(1)  # not reached
    _, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL

    assert load_checkpoint(path)["global_step"] == 1
    io.save_checkpoint({"global_step": 3}, path)  # the next save clears the dead one's temporary
    assert load_checkpoint(path)["global_step"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_runs_write_checkpoints_atomically(make_config, corpus_file):
    cfg = make_config(*FAST_PRETRAINING, f"task.corpus={corpus_file}")
    trainer = pipeline.build_trainer(cfg, RunDir.of(cfg), ValidationRecorder())
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
