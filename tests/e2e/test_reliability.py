"""Reliability: exact resume after a crash, graceful stop, NaN guard, a reused run dir, planted
links.

Runs are in-process (`train(cfg)`) so the default suite pays the torch import once; the
`slow` tests do the same through the command line with real signals from outside. The
test-only callbacks and modules live in tests/support/callbacks.py and are reached through
Hydra overrides (`+callbacks.crash._target_=support.callbacks.CrashAtStep`), which also work in
a child process with `PYTHONPATH=tests`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bertlab.callbacks.resume import training_position
from bertlab.callbacks.stop import RunInterrupted
from bertlab.checkpoints.io import load_checkpoint
from bertlab.cli.train import train
from bertlab.errors import NonFiniteError

from support.callbacks import NAN_AT_STEP
from support.data import write_corpus, write_custom
from support.runs import FAST_PRETRAINING, TESTS_DIR, compose_config

MAX_STEPS = 20


EVERY = 5  # step checkpoints at 5, 10, 15, 20; an epoch of the test corpus is 12 batches


# ---- helpers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """One corpus and one cache (tokenizer, shards) for every run of this module."""
    root = tmp_path_factory.mktemp("reliability")
    write_corpus(root / "corpus.txt", documents=105)  # 192 training instances: 12 full batches
    return root


def common_overrides(root: Path) -> list[str]:
    return [
        *FAST_PRETRAINING,
        f"task.corpus={root / 'corpus.txt'}",
        f"trainer.max_steps={MAX_STEPS}",
        "trainer.deterministic=true",
        f"callbacks.step_checkpoint.every_n_train_steps={EVERY}",
    ]


def run(root: Path, name: str, *extra: str) -> Path:
    """train() one config into root/name; returns the run dir."""
    cfg = compose_config([*common_overrides(root), *extra], root / name, root / "cache")
    train(cfg)
    return root / name


def last_checkpoint(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "checkpoints" / "last.ckpt")


def assert_same_final_state(run_dir: Path, reference: Path) -> None:
    ours, theirs = last_checkpoint(run_dir), last_checkpoint(reference)
    assert ours["global_step"] == theirs["global_step"] == MAX_STEPS
    different = [
        name
        for name, tensor in theirs["state_dict"].items()
        if not torch.equal(tensor, ours["state_dict"][name])
    ]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    results = [json.loads((d / "results.json").read_text()) for d in (run_dir, reference)]
    assert results[0]["metrics"] == results[1]["metrics"]
    assert results[0]["steps"] == results[1]["steps"] == MAX_STEPS


@pytest.fixture(scope="module")
def reference_run(workspace) -> Path:
    return run(workspace, "reference")


# ---- exact resume ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("crash_before", "every", "saved_at", "position"),
    [(19, EVERY, 15, (1, 3)), (14, 12, 12, (0, 12))],
    ids=["mid-epoch", "epoch-end"],
)
def test_crash_then_resume_matches_uninterrupted_run(
    workspace, reference_run, crash_before, every, saved_at, position
):
    """Epoch-end: the resumed run also ends at step 20, neither an epoch end nor a multiple
    of 12, so its last.ckpt holding step 20 shows StepCheckpoint saving when training ends."""
    name = f"crash-{crash_before}"
    crash = [
        "+callbacks.crash._target_=support.callbacks.CrashAtStep",
        f"+callbacks.crash.step={crash_before}",
        f"callbacks.step_checkpoint.every_n_train_steps={every}",
    ]
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(workspace, name, *crash)
    checkpoint = last_checkpoint(workspace / name)
    assert checkpoint["global_step"] == saved_at
    assert training_position(checkpoint) == position  # (epoch, batches of it); 12 per epoch

    run(workspace, name, "resume=true", f"callbacks.step_checkpoint.every_n_train_steps={every}")
    assert_same_final_state(workspace / name, reference_run)


def test_fine_tuning_resumes_identically_too(tmp_path):
    """The classification data module's bucket sampler resumes its epoch the same way."""
    rows = [
        (f"review {i} was {'good' if i % 2 else 'bad'} indeed", "pos" if i % 2 else "neg")
        for i in range(40)
    ]
    write_custom(tmp_path / "data", "csv", "train.csv", rows)
    write_custom(tmp_path / "data", "csv", "dev.csv", rows[:8])
    common = [
        "task=custom",
        f"task.data_dir={tmp_path / 'data'}",
        "task.text_columns=[review]",
        "task.label_column=stars",
        "task.batch_size=4",  # 10 batches an epoch
        "trainer.max_steps=16",
        "trainer.deterministic=true",
        "callbacks.step_checkpoint.every_n_train_steps=3",
        "tokenizer.vocab_size=100",
        "tokenizer.min_frequency=1",
        "trainer.enable_model_summary=false",
        "~callbacks.progress_bar",
    ]

    def fine_tune(name: str, *extra: str) -> None:
        train(compose_config([*common, *extra], tmp_path / name, tmp_path / "cache"))

    fine_tune("reference")
    with pytest.raises(RuntimeError, match="simulated crash"):
        fine_tune(
            "run",
            "+callbacks.crash._target_=support.callbacks.CrashAtStep",
            "+callbacks.crash.step=14",
        )
    saved = last_checkpoint(tmp_path / "run")
    epoch, batches = training_position(saved)
    assert saved["global_step"] == 12 and epoch == 1 and batches > 0  # mid-epoch
    fine_tune("run", "resume=true")
    ours, theirs = (last_checkpoint(tmp_path / d)["state_dict"] for d in ("run", "reference"))
    assert all(torch.equal(ours[name], theirs[name]) for name in theirs)


def test_sigterm_saves_at_that_step_and_resumes_identically(workspace, reference_run, capsys):
    name = "sigterm"
    signal_at = [
        "+callbacks.signal._target_=support.callbacks.SignalAtStep",
        "+callbacks.signal.step=7",
        "+callbacks.signal.signal_name=SIGTERM",
    ]
    with pytest.raises(RunInterrupted) as stopped:
        run(workspace, name, *signal_at)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert last_checkpoint(workspace / name)["global_step"] == 8  # the step it was in finished
    message = capsys.readouterr().err
    assert "SIGTERM: stopped after step 8" in message
    assert f"resume=true hydra.run.dir={workspace / name}" in message
    assert not (workspace / name / "results.json").exists()

    run(workspace, name, "resume=true")
    assert_same_final_state(workspace / name, reference_run)


def test_ctrl_c_stops_at_the_step_boundary(workspace):
    name = "sigint"
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a background job
    with pytest.raises(RunInterrupted) as stopped:
        run(
            workspace,
            name,
            "+callbacks.signal._target_=support.callbacks.SignalAtStep",
            "+callbacks.signal.step=3",
            "+callbacks.signal.signal_name=SIGINT",
        )
    assert stopped.value.code == 128 + signal.SIGINT
    assert last_checkpoint(workspace / name)["global_step"] == 4
    assert signal.getsignal(signal.SIGINT) is before  # the handler given back


def test_sigterm_under_gradient_accumulation_waits_for_the_optimizer_step(workspace):
    name = "sigterm-accumulating"
    with pytest.raises(RunInterrupted):
        run(
            workspace,
            name,
            "trainer.accumulate_grad_batches=2",
            "+callbacks.signal._target_=support.callbacks.SignalAtStep",
            "+callbacks.signal.step=3",  # arrives during the first of step 4's two batches
            "+callbacks.signal.signal_name=SIGTERM",
        )
    checkpoint = last_checkpoint(workspace / name)
    assert checkpoint["global_step"] == 4
    assert training_position(checkpoint) == (0, 8)  # both halves of step 4 were trained


# ---- numerical faults -----------------------------------------------------------------------


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(workspace):
    name = "nan-stop"
    with pytest.raises(NonFiniteError, match=rf"non-finite loss at step {NAN_AT_STEP + 1} "):
        run(workspace, name, "task.module=support.callbacks.NanLossAtStep")
    checkpoint = last_checkpoint(workspace / name)
    assert checkpoint["global_step"] == EVERY  # the last step checkpoint before the fault
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())


def test_nan_loss_is_skipped_when_configured(workspace):
    name = "nan-skip"
    run(
        workspace,
        name,
        "task.module=support.callbacks.NanLossAtStep",
        "callbacks.nonfinite.action=skip",
    )
    checkpoint = last_checkpoint(workspace / name)
    assert checkpoint["global_step"] == MAX_STEPS
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())
    guard = next(v for k, v in checkpoint["callbacks"].items() if k.startswith("NonFiniteGuard"))
    assert guard == {"skipped_steps": 1}


def test_a_fresh_run_in_a_finished_run_dir_starts_clean(workspace, reference_run):
    """Nothing of the earlier run may pass for the new one's, even when the new one fails."""
    name = "reused"
    shutil.copytree(reference_run, workspace / name)
    outside = workspace / "outside.json"
    outside.write_text("keep me")
    (workspace / name / "checkpoints" / "best.ckpt").unlink(missing_ok=True)
    (workspace / name / "checkpoints" / "best.ckpt").symlink_to(outside)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(
            workspace,
            name,
            "+callbacks.crash._target_=support.callbacks.CrashAtStep",
            "+callbacks.crash.step=0",
        )
    left = sorted(p.name for p in (workspace / name / "checkpoints").iterdir())
    assert left == ["tokenizer.json", "vocab.txt"]  # this run's, written before it crashed
    assert not (workspace / name / "results.json").exists()
    assert outside.read_text() == "keep me"  # a link is removed, never followed


def plant_links(run_dir: Path, outside: Path) -> dict[Path, Path]:
    """results.json, tokenizer.json and vocab.txt as symlinks to files outside the run dir."""
    links = {}
    for relative in ("results.json", "checkpoints/tokenizer.json", "checkpoints/vocab.txt"):
        target = outside / relative.replace("/", "-")
        target.write_text("not yours")
        link = run_dir / relative
        link.unlink(missing_ok=True)
        link.symlink_to(target)
        links[link] = target
    return links


def test_writes_replace_planted_symlinks_instead_of_following_them(workspace, reference_run):
    name = "planted"
    shutil.copytree(reference_run, workspace / name)
    outside = workspace / "outside"
    outside.mkdir()
    links = plant_links(workspace / name, outside)

    run(workspace, name, "resume=true")  # a finished run: validates, writes its files again

    for link, target in links.items():
        assert target.read_text() == "not yours", target
        assert link.is_file() and not link.is_symlink(), link
    results = json.loads((workspace / name / "results.json").read_text())
    assert results["steps"] == MAX_STEPS
    assert "[CLS]" in (workspace / name / "checkpoints" / "vocab.txt").read_text()


# ---- the command line, with signals from outside (slow) -------------------------------------


def cli(root: Path, name: str, *extra: str, timeout: int = 600) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "bertlab.cli.train",
        *common_overrides(root),
        f"cache_dir={root / 'cache'}",
        f"hydra.run.dir={root / name}",
        *extra,
    ]
    environment = {**os.environ, "PYTHONPATH": str(TESTS_DIR)}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment)


def start_cli(root: Path, name: str, *extra: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "bertlab.cli.train",
        *common_overrides(root),
        f"cache_dir={root / 'cache'}",
        f"hydra.run.dir={root / name}",
        *extra,
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_step_checkpoint(
    run_dir: Path, process: subprocess.Popen, timeout: float = 400
) -> None:
    """Until last.ckpt holds a mid-run step (so the kill lands after a step checkpoint)."""
    deadline = time.time() + timeout
    last = run_dir / "checkpoints" / "last.ckpt"
    while time.time() < deadline and process.poll() is None:
        if last.exists():
            try:
                if load_checkpoint(last)["global_step"] >= EVERY:
                    return
            except Exception:  # noqa: BLE001 - a file being replaced this instant; look again
                pass
        time.sleep(0.2)
    raise AssertionError(f"no step checkpoint in {run_dir} (exit code {process.poll()})")


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_cli_killed_from_outside_then_resumed_is_identical(tmp_path, signal_name):
    write_corpus(tmp_path / "corpus.txt")
    reference = cli(tmp_path, "reference")
    assert reference.returncode == 0, reference.stderr[-2000:]

    process = start_cli(tmp_path, "killed")
    wait_for_step_checkpoint(tmp_path / "killed", process)
    process.send_signal(getattr(signal, signal_name))
    _, stderr = process.communicate(timeout=300)
    if process.returncode == 0:
        pytest.skip("the run finished before the signal arrived (machine too fast for this test)")
    expected = -signal.SIGKILL if signal_name == "SIGKILL" else 128 + signal.SIGTERM
    assert process.returncode == expected, stderr[-2000:]
    if signal_name == "SIGTERM":
        assert "resume=true hydra.run.dir=" in stderr

    resumed = cli(tmp_path, "killed", "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_final_state(tmp_path / "killed", tmp_path / "reference")


@pytest.mark.slow
def test_cli_sigterm_at_a_known_step_leaves_that_checkpoint(tmp_path):
    write_corpus(tmp_path / "corpus.txt")
    stopped = cli(
        tmp_path,
        "run",
        "+callbacks.signal._target_=support.callbacks.SignalAtStep",
        "+callbacks.signal.step=7",
        "+callbacks.signal.signal_name=SIGTERM",
    )
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    assert f"resume=true hydra.run.dir={tmp_path / 'run'}" in stopped.stderr
    assert last_checkpoint(tmp_path / "run")["global_step"] == 8
