"""Lightning callbacks that keep long runs from losing work (docs/reliability.md), one per module.

- `step_checkpoint.StepCheckpoint`: `checkpoints/last.ckpt` every N optimizer steps and when
  training ends.
- `stop.GracefulStop`: SIGTERM / SIGINT finish the current step, save `last.ckpt`, exit with a
  resume hint.
- `nonfinite.NonFiniteGuard`: a NaN/inf loss or gradient stops the run naming the step, or
  skips the step.
- `resume.ExactResume`: `resume=true` continues with the same RNG states and the same
  position in the epoch.
- `summary.ParameterSummary`: the model summary, without Lightning's always-zero FLOPs.

The first four are in conf/callbacks/default.yaml; `~callbacks.<name>` removes one.
"""
