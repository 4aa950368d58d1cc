"""The Hydra and W&B runtime of a run, one concern per module.

- `hydra`: what the running Hydra job is (multirun or not, its overrides, its sweep dir).
- `rundir`: `RunDir`, the paths inside a run directory, and `claimed()`, one run per directory.
- `loggers`: the run's loggers from the `logger` group; the CSV logger that appends on resume.
- `wandb_run`: W&B names, groups, offline mode, the run id kept across resume.
- `ddp`: DDP ranks started by Lightning inside a multirun job re-run that job only.
- `results`: `results.json` and the tokenizer files a run leaves.
- `quiet`: library messages a user can do nothing about, silenced at their source.
- `allocator`: glibc keeps the memory a step frees (no page faults on the next step).
- `cpu`: the CPU's vendor and model name from /proc/cpuinfo.
- `wandb_sweeps`: checks W&B sweep specs (`python -m bertlab.runtime.wandb_sweeps SPEC.yaml`).
"""
