"""W&B sweep specs (`conf/wandb_sweeps/*.yaml`), checked before `wandb sweep` uploads them.

`wandb agent` starts each trial with the spec's `command`; `${args_no_hyphens}` becomes one
argument `key=value` per parameter, the value formatted by Python's `str`, never quoted.
`bertlab-train` reads those as Hydra overrides, so every value must survive that trip:
a value with whitespace (Hydra strips it at the ends, and it breaks run names and output
paths), a comma (Hydra reads a sweep), or `None` (it arrives as the string "None") would
silently train something else, or fail only when the agent runs it. Check a spec with

    python -m bertlab.runtime.wandb_sweeps conf/wandb_sweeps/glue_lr.yaml
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from hydra.errors import HydraException

from bertlab.errors import ConfigError
from bertlab.runtime.hydra import parse_override

ARGS_MACRO = "${args_no_hyphens}"
GOALS = ("maximize", "minimize")
METHODS = ("grid", "random", "bayes")


def agent_argument(key: str, value: Any) -> str:
    """The argument `wandb agent` builds for `${args_no_hyphens}` (wandb's
    create_sweep_command_args).
    """
    return f"{key}={value}"


def value_problem(key: str, value: Any) -> str | None:
    """Why Hydra would not read `key=value` back as this one value, or None when it would."""
    argument = agent_argument(key, value)
    if value is None:
        return (
            f"value null reaches bertlab-train as the string 'None' ({argument}); leave the key "
            "out to keep the default"
        )
    if isinstance(value, Mapping | list):
        return (
            f"value {value!r} is a mapping or list; sweep over dotted keys with plain values (e.g. "
            "optimizer.lr)"
        )
    if any(character.isspace() for character in str(value)):
        return (
            f"value {str(value)!r} contains whitespace, which wandb agent passes unquoted in "
            f"'{argument}': "
            "Hydra drops it at the ends, and it ends up in run names and directory names. "
            "Use a value without spaces (e.g. underscores, or a config file selected by name)"
        )
    try:
        override = parse_override(argument)
    except HydraException as error:
        return f"Hydra cannot parse '{argument}': {error}"
    if override.is_sweep_override():
        return (
            f"'{argument}' is a Hydra sweep (comma or sweep function), not one value; list the "
            "values in `values:` instead"
        )
    return None


def parameter_values(spec: Mapping) -> Iterator[Any]:
    """The literal values a parameter can take; distributions yield only their numeric bounds."""
    if "value" in spec:
        yield spec["value"]
    yield from spec.get("values", [])
    for bound in ("min", "max"):
        if bound in spec:
            yield spec[bound]


def parameter_problems(key: str, spec: Any) -> list[str]:
    if not isinstance(spec, Mapping):
        return [
            f"parameters.{key}: expected a mapping with value, values or distribution, got {spec!r}"
        ]
    if "parameters" in spec:
        return [
            f"parameters.{key}: nested parameters reach Hydra as a dict literal; use dotted keys "
            f"({key}.NAME)"
        ]
    if not {"value", "values", "distribution"} & spec.keys():
        return [f"parameters.{key}: needs value, values or distribution"]
    problems = [value_problem(key, value) for value in parameter_values(spec)]
    return [f"parameters.{key}: {problem}" for problem in problems if problem]


def spec_problems(spec: Any) -> list[str]:
    """Every reason the spec would not run `bertlab-train` as intended; empty when it would."""
    if not isinstance(spec, Mapping):
        return [
            "the file is not a mapping (a W&B sweep spec has method, metric, parameters, command)"
        ]
    problems = []
    command = [str(part) for part in spec.get("command", [])]
    if ARGS_MACRO not in command or not any("bertlab-train" in part for part in command):
        problems.append(
            f"command: must run bertlab-train with {ARGS_MACRO} (Hydra reads key=value, not "
            f"--key=value); got {command}"
        )
    if spec.get("method") not in METHODS:
        problems.append(f"method: {spec.get('method')!r}, allowed: {', '.join(METHODS)}")
    metric = spec.get("metric") or {}
    if not metric.get("name") or metric.get("goal") not in GOALS:
        problems.append(
            "metric: needs name (the task's objective, e.g. val/accuracy) and goal "
            f"({' or '.join(GOALS)}); got {metric}"
        )
    parameters = spec.get("parameters") or {}
    if not parameters:
        problems.append("parameters: none given")
    for key, parameter in parameters.items():
        problems += parameter_problems(str(key), parameter)
    return problems


def validate_wandb_sweep(spec: Any, source: str = "sweep spec") -> None:
    """Raise ConfigError listing every problem, each prefixed with `source`."""
    problems = spec_problems(spec)
    if problems:
        raise ConfigError("\n".join(f"{source}: {problem}" for problem in problems))


def load_wandb_sweep(path: str | Path) -> dict:
    """Read and check a W&B sweep spec file; ConfigError names the file and the key."""
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    validate_wandb_sweep(spec, source=str(path))
    return spec


def main(argv: list[str] | None = None) -> int:
    """Check spec files; exit 2 with one line per problem if any is wrong."""
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print(
            "usage: python -m bertlab.runtime.wandb_sweeps SPEC.yaml [SPEC.yaml ...]",
            file=sys.stderr,
        )
        return 2
    failed = False
    for path in paths:
        try:
            load_wandb_sweep(path)
            print(f"{path}: ok")
        except (ConfigError, OSError) as error:
            print(error, file=sys.stderr)
            failed = True
    return 2 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
