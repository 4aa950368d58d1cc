"""`bertlab-prepare`: build a task's tokenizer and cached data ahead of training (same config tree).

bertlab-prepare task.corpus='corpus/*.txt' task.max_seq_length=512
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig
from rich.console import Console

from bertlab import pipeline
from bertlab.checkpoints.init import resolve
from bertlab.cli.errors import exit_on_user_errors


@hydra.main(version_base="1.3", config_path="pkg://bertlab.conf", config_name="train")
@exit_on_user_errors
def main(cfg: DictConfig) -> None:
    datamodule = pipeline.build_datamodule(cfg)
    init = resolve(cfg.model.init) if cfg.model.init else None  # its tokenizer, if it has one
    tokenizer = pipeline.resolve_tokenizer(cfg, datamodule, init)
    datamodule.set_tokenizer(tokenizer)
    datamodule.prepare_data()
    console = Console()
    console.print(f"[bold]{cfg.task.name}[/]: vocabulary of {tokenizer.get_vocab_size():,} tokens")
    for name, value in datamodule.info().items():
        console.print(f"  {name}: {value:,}" if isinstance(value, int) else f"  {name}: {value}")


if __name__ == "__main__":
    main()
