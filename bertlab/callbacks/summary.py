"""`ParameterSummary`: Lightning's model summary without its FLOPs column.

Lightning counts FLOPs only for a module with an `example_input_array`, which bertlab's
task modules have no use for, so its summary showed a FLOPs column of zeros and
"Total FLOPs: 0" on every run. `pipeline.build_trainer` puts this callback in place of
Lightning's own under the same switch, `trainer.enable_model_summary`.
"""

from __future__ import annotations

from typing import Any

from pytorch_lightning.callbacks import RichModelSummary
from pytorch_lightning.utilities.model_summary import get_human_readable_count

DROPPED_COLUMN = "FLOPs"


class ParameterSummary(RichModelSummary):
    """Layers with their type, parameter count and mode; the parameter total and its size."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        from rich import get_console
        from rich.table import Table

        columns = [(name, values) for name, values in summary_data if name != DROPPED_COLUMN]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        for name, _ in columns:
            table.add_column(name, justify="right" if name.startswith("Params") else "left")
        for row in zip(*(values for _, values in columns), strict=True):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        line = (
            f"[bold]Parameters[/]: {get_human_readable_count(total_parameters).strip()}, "
            f"{get_human_readable_count(trainable_parameters).strip()} trainable, "
            f"{model_size:,.1f} MB"
        )
        if total_training_modes["eval"]:  # a module left in eval mode trains without dropout
            line += f"; {total_training_modes['eval']} modules in eval mode"
        console.print(line)
