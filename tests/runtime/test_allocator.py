"""bertlab's entry points keep the memory a step frees (glibc), unless the user chose otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from bertlab.runtime.allocator import user_chose_allocator, without_allocator_choice


def glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (ValueError, OSError, AttributeError):
        return False


glibc_only = pytest.mark.skipif(not glibc(), reason="glibc's malloc only")

# Three 20 MB tensors made and freed, as a step does: the resident memory (MB) they added,
# and what of it is still resident after they are freed. glibc hands it back to the kernel
# by default, so the next step faults those pages in again; kept, it stays. (Resident
# memory, not page-fault counts: transparent huge pages make the counts vary.)
STEPS = textwrap.dedent(
    """
    import json, sys, torch
    from bertlab.runtime.allocator import keep_freed_memory
    kept = keep_freed_memory() if sys.argv[1] == "keep" else None
    def resident():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
    before = resident()
    blocks = [torch.ones(5_000_000) for _ in range(3)]
    added = resident() - before
    del blocks
    print(json.dumps({"kept": kept, "added": added, "still": resident() - before}))
    """
)


def run_steps(mode: str, **environ: str) -> dict:
    env = without_allocator_choice() | environ
    done = subprocess.run(
        [sys.executable, "-c", STEPS, mode], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@glibc_only
def test_freed_memory_stays_with_the_process():
    default, kept = run_steps("default"), run_steps("keep")
    assert kept["kept"] is True
    assert default["added"] > 50 and kept["added"] > 50
    assert default["still"] < 10  # the premise: glibc hands these blocks back by default
    assert kept["still"] > 50


@glibc_only
def test_a_users_malloc_setting_is_left_in_charge():
    chosen = run_steps("keep", MALLOC_TRIM_THRESHOLD_="131072")
    assert chosen["kept"] is False
    assert chosen["still"] < 10


@pytest.mark.parametrize(
    ("environ", "chose"),
    [
        ({}, False),
        ({"PATH": "/usr/bin", "GLIBC_TUNABLES": "glibc.rtld.nns=2"}, False),
        ({"MALLOC_ARENA_MAX": "2"}, True),
        ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"}, True),
        ({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}, True),
        ({"LD_PRELOAD": " "}, False),
    ],
)
def test_user_chose_allocator(environ, chose):
    assert user_chose_allocator(environ) is chose


@pytest.mark.parametrize("command", ["predict", "embed"])
def test_inference_commands_keep_freed_memory(command, monkeypatch, tmp_path):
    import importlib

    module = importlib.import_module(f"bertlab.cli.{command}")
    calls = []
    monkeypatch.setattr(module, "keep_freed_memory", lambda: calls.append(command))
    with pytest.raises(SystemExit):
        module.main([str(tmp_path / "model"), "-", "--batch-size", "0"])
    assert calls == [command]


# The hydra entry points, run in a child process: the function is swapped before the CLI
# module imports it, and a bad override ends the run right after it.
HYDRA_MAIN = """
import sys
import bertlab.runtime.allocator as allocator
allocator.keep_freed_memory = lambda: print("kept freed memory", flush=True)
from bertlab.cli.{command} import main
sys.argv = ["bertlab-{command}", "optimizer.lr=-1", "hydra.run.dir={run_dir}"]
main()
"""


@pytest.mark.parametrize("command", ["train", "eval"])
def test_training_commands_keep_freed_memory(command, tmp_path):
    code = HYDRA_MAIN.format(command=command, run_dir=tmp_path / "run")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stdout.startswith("kept freed memory"), done.stdout


def test_without_allocator_choice_drops_what_counts_as_one():
    environ = {"PATH": "/bin", "MALLOC_ARENA_MAX": "2", "LD_PRELOAD": "libjemalloc.so"}
    environ |= {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}
    cleaned = without_allocator_choice(environ)
    assert cleaned == {"PATH": "/bin"}
    assert user_chose_allocator(environ) and not user_chose_allocator(cleaned)
