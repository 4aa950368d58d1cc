"""What every task's data module offers the training entry point (docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Iterator

import pytorch_lightning as pl
from tokenizers import Tokenizer


class BertDataModule(pl.LightningDataModule):
    """A LightningDataModule that is told its tokenizer after construction.

    The tokenizer may have to be learned from this module's own text
    (`training_texts`), so it cannot be a constructor argument.
    """

    tokenizer: Tokenizer | None = None

    def set_tokenizer(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    def training_texts(self) -> Iterator[str]:
        """Text to learn a WordPiece vocabulary from when no tokenizer is given."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot train a tokenizer; set tokenizer.path or model.init"
        )

    def data_fingerprint(self) -> str:
        """Identifies `training_texts()`, for caching a vocabulary trained on them."""
        raise NotImplementedError

    def baseline_metrics(self) -> dict[str, float]:
        """Trivial-predictor scores on validation data (e.g. majority class), reported beside the
        model's.
        """
        return {}

    def data_report(self) -> dict:
        """What reading the data skipped or dropped, per split (results.json's "data")."""
        return {}

    def info(self) -> dict:
        """Facts `bertlab-prepare` prints about the prepared data."""
        return {}

    def module_kwargs(self) -> dict:
        """Keyword arguments the LightningModule needs from the data (e.g. num_labels)."""
        return {}
