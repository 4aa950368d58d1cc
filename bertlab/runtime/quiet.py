"""Silence what Lightning and torch print on every run that a user can do nothing about.

Each entry names its source and why it carries no information for a bertlab run, so a
clean log shows what the user should read. `tests/test_train.py` runs the command line and
checks that none of them comes back. The FLOPs column of the model summary is handled by
bertlab/callbacks/summary.py.
"""

from __future__ import annotations

import logging
import warnings

# Python warnings (message regex, category).
SILENCED_WARNINGS = (
    # ModelCheckpoint.setup, on every run: checkpoints/ already holds the tokenizer files, or,
    # with resume=true, the checkpoint being continued. An earlier run's checkpoints never
    # are there: a fresh run clears them first (bertlab/runtime/rundir.py).
    (r"Checkpoint directory .* exists and is not empty", UserWarning),
    # torch >= 2.10 deprecates `LeafSpec`, which Lightning's own _pytree helper still builds.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
)

# Lightning's rank-zero info messages (logger pytorch_lightning.utilities.rank_zero), by prefix.
SILENCED_INFO = (
    "💡 Tip:",  # advertisements for Lightning's cloud services (litlogger, litmodels)
    "`Trainer(val_check_interval=1.0)` was configured",  # the default: validate once an epoch
    "Loading `train_dataloader` to estimate",  # the LR schedule's step count, read from the data
)
LIGHTNING_INFO_LOGGER = "pytorch_lightning.utilities.rank_zero"


class _DropMessages(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


_LIGHTNING_INFO_FILTER = _DropMessages(SILENCED_INFO)


def quiet_lightning() -> None:
    """Install the filters (idempotent: Python dedupes both kinds)."""
    for message, category in SILENCED_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    logging.getLogger(LIGHTNING_INFO_LOGGER).addFilter(_LIGHTNING_INFO_FILTER)
