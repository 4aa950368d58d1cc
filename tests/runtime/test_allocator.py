"""bertlab's entry points keep the memory a step frees (glibc), unless the user chose otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from bertlab.runtime.allocator import user_chose_allocator


def glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (ValueError, OSError, AttributeError):
        return False


glibc_only = pytest.mark.skipif(not glibc(), reason="glibc's malloc only")

# Tensors of several sizes made and freed as a step does; the page faults per round after
# the first rounds are the pages glibc handed back to the kernel and faulted in again.
STEPS = textwrap.dedent(
    """
    import json, resource, sys, torch
    from bertlab.runtime.allocator import keep_freed_memory
    kept = keep_freed_memory() if sys.argv[1] == "keep" else None
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.set_num_threads(1)
    w = torch.randn(2048, 256)
    for i in range(8):
        if i == 3:
            start = faults()
        x = torch.randn(512, 2048)
        for _ in range(4):
            z = (x @ w).repeat(1, 16)
            x = torch.cat([z, z]).view(512, -1)[:, :2048].contiguous()
    print(json.dumps({"kept": kept, "faults": (faults() - start) / 5}))
    """
)


def run_steps(mode: str, **environ: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | environ
    env.pop("LD_PRELOAD", None)
    done = subprocess.run(
        [sys.executable, "-c", STEPS, mode], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@glibc_only
def test_kept_memory_is_not_faulted_in_again():
    default, kept = run_steps("default"), run_steps("keep")
    assert kept["kept"] is True
    assert default["faults"] > 1000  # the premise: glibc hands these blocks back by default
    assert kept["faults"] < default["faults"] / 10


@glibc_only
def test_a_users_malloc_setting_is_left_in_charge():
    chosen = run_steps("keep", MALLOC_TRIM_THRESHOLD_="131072")
    assert chosen["kept"] is False
    assert chosen["faults"] > 1000


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
