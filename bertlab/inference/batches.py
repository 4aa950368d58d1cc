"""Texts (or text pairs) -> padded int64 batches, the inputs every BERT model takes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from tokenizers import Tokenizer

from bertlab.tokenizer import special_ids


def batched(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SentenceEncoder:
    """Texts (or text pairs) -> padded int64 batches, truncated longest-first to `max_length`."""

    def __init__(self, tokenizer: Tokenizer, max_length: int):
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())  # keep the caller's settings
        self.tokenizer.enable_truncation(max_length, strategy="longest_first")
        pad = special_ids(tokenizer).pad
        self.tokenizer.enable_padding(pad_id=pad, pad_token=tokenizer.id_to_token(pad))

    def __call__(self, records: Sequence[dict]) -> tuple[dict[str, torch.Tensor], list]:
        inputs = [
            (r["text"], r["text_pair"]) if r.get("text_pair") is not None else r["text"]
            for r in records
        ]
        encodings = self.tokenizer.encode_batch(inputs)
        batch = {
            "input_ids": torch.tensor([e.ids for e in encodings], dtype=torch.int64),
            "token_type_ids": torch.tensor([e.type_ids for e in encodings], dtype=torch.int64),
            "attention_mask": torch.tensor(
                [e.attention_mask for e in encodings], dtype=torch.int64
            ),
        }
        return batch, encodings
