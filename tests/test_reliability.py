"""Reliability (issue 8): exact resume after a crash, graceful stop, atomic checkpoints, NaN guard.

Runs are in-process (`train(cfg)`) so the default suite pays the torch import once; the
`slow` tests do the same through the command line with real signals from outside.
Test-only callbacks and modules below are reached through Hydra overrides
(`+callbacks.crash._target_=test_reliability.CrashAtStep`), which also works in a child
process with `PYTHONPATH=tests`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import FAST_PRETRAINING, compose_config, write_corpus
from test_readers import write_custom

from bertlab import pipeline
from bertlab.atomic import write_text_atomically
from bertlab.callbacks.resume import training_position
from bertlab.callbacks.stop import RunInterrupted
from bertlab.checkpoints.io import AtomicCheckpointIO, load_checkpoint
from bertlab.errors import NonFiniteError
from bertlab.cli.train import train
from bertlab.errors import ConfigError
from bertlab.runtime.results import ValidationRecorder
from bertlab.runtime.rundir import RunDir, claimed
from bertlab.tasks.pretrain import PretrainingModule

MAX_STEPS = 20
EVERY = 5  # step checkpoints at 5, 10, 15, 20; an epoch of the test corpus is 12 batches
TESTS_DIR = Path(__file__).resolve().parent


# ---- test-only pieces, instantiated by Hydra ------------------------------------------------


class CrashAtStep(pl.Callback):
    """Stands in for a crash: raises before the step with this global_step runs."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"simulated crash before step {self.step + 1}")


class SignalAtStep(pl.Callback):
    """Sends this process a real signal as the step with this global_step begins."""

    def __init__(self, step: int, signal_name: str):
        self.step, self.signal_name = step, signal_name

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), getattr(signal, self.signal_name))


NAN_AT_STEP = 7


class NanLossAtStep(PretrainingModule):
    """The pretraining module, with a NaN loss at one step (a stand-in for a diverging run)."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.global_step == NAN_AT_STEP else loss


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
        "+callbacks.crash._target_=test_reliability.CrashAtStep",
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
            "+callbacks.crash._target_=test_reliability.CrashAtStep",
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
        "+callbacks.signal._target_=test_reliability.SignalAtStep",
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
    with pytest.raises(RunInterrupted) as stopped:
        run(
            workspace,
            name,
            "+callbacks.signal._target_=test_reliability.SignalAtStep",
            "+callbacks.signal.step=3",
            "+callbacks.signal.signal_name=SIGINT",
        )
    assert stopped.value.code == 128 + signal.SIGINT
    assert last_checkpoint(workspace / name)["global_step"] == 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler given back


def test_sigterm_under_gradient_accumulation_waits_for_the_optimizer_step(workspace):
    name = "sigterm-accumulating"
    with pytest.raises(RunInterrupted):
        run(
            workspace,
            name,
            "trainer.accumulate_grad_batches=2",
            "+callbacks.signal._target_=test_reliability.SignalAtStep",
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
        run(workspace, name, "task.module=test_reliability.NanLossAtStep")
    checkpoint = last_checkpoint(workspace / name)
    assert checkpoint["global_step"] == EVERY  # the last step checkpoint before the fault
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())


def test_nan_loss_is_skipped_when_configured(workspace):
    name = "nan-skip"
    run(
        workspace,
        name,
        "task.module=test_reliability.NanLossAtStep",
        "callbacks.nonfinite.action=skip",
    )
    checkpoint = last_checkpoint(workspace / name)
    assert checkpoint["global_step"] == MAX_STEPS
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())
    guard = next(v for k, v in checkpoint["callbacks"].items() if k.startswith("NonFiniteGuard"))
    assert guard == {"skipped_steps": 1}


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
            "+callbacks.crash._target_=test_reliability.CrashAtStep",
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


def test_atomic_text_write_replaces_a_link_and_ignores_a_planted_temporary(tmp_path):
    target, link = tmp_path / "target.txt", tmp_path / "out" / "results.json"
    target.write_text("outside")
    link.parent.mkdir()
    link.symlink_to(target)
    # A link planted where the temporary will go: the stale-temporary sweep removes it,
    # and O_EXCL | O_NOFOLLOW would refuse to write through it anyway.
    (link.parent / f".results.json.tmp-{os.getpid()}").symlink_to(target)
    write_text_atomically(link, "inside")
    assert link.read_text() == "inside" and not link.is_symlink()
    assert target.read_text() == "outside"
    assert sorted(p.name for p in link.parent.iterdir()) == ["results.json"]


# ---- Lightning's settings, checked with the rest of the config (issue 15) --------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.precision=17"], "trainer.precision=17: allowed values are 32-true, bf16-mixed"),
        (["trainer.devices=abc"], "trainer.devices='abc': must be an integer >= 1, -1"),
        (["trainer.devices=0"], "trainer.devices=0: must be an integer >= 1, -1"),
        (["trainer.accelerator=gpu"], "trainer.accelerator='gpu': this machine has no GPU"),
        (["trainer=gpu"], "trainer.accelerator='gpu': this machine has no GPU"),
        (["trainer.accelerator=abacus"], "trainer.accelerator='abacus': allowed values are auto"),
        (["+trainer.strategy=ddq"], "trainer.strategy='ddq': allowed names are auto, ddp"),
        (
            ["trainer.precision=16-mixed"],
            "trainer.precision='16-mixed': fp16 mixed precision needs a GPU",
        ),
        (["trainer.devices=-1"], "trainer.devices=-1: on a CPU, the number of processes"),
    ],
)
def test_lightning_settings_are_refused_before_any_data_is_read(
    tmp_path, monkeypatch, overrides, message
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a CPU-only machine
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    missing = tmp_path / "no-such-corpus.txt"  # reading data first would fail on this instead
    cfg = compose_config([f"task.corpus={missing}", *overrides], tmp_path / "run", tmp_path)
    with pytest.raises(ConfigError) as refused:
        train(cfg)
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "run").exists()  # refused before the run dir was even claimed


def test_gpu_trainer_on_a_cpu_machine_is_one_line_and_exit_2(tmp_path):
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    refused = subprocess.run(
        [sys.executable, "-m", "bertlab.cli.train", "trainer=gpu", f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )
    if "mps" in refused.stderr:
        pytest.skip("an Apple GPU counts as a GPU")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "error: trainer.accelerator='gpu': this machine has no GPU that torch can use; "
        "choose trainer=cpu (or trainer.accelerator=cpu)"
    ]


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
        "+callbacks.signal._target_=test_reliability.SignalAtStep",
        "+callbacks.signal.step=7",
        "+callbacks.signal.signal_name=SIGTERM",
    )
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    assert f"resume=true hydra.run.dir={tmp_path / 'run'}" in stopped.stderr
    assert last_checkpoint(tmp_path / "run")["global_step"] == 8
