"""Embeddings: token vectors and a pooled sentence vector per input, from any BERT encoder."""

from __future__ import annotations

import torch

from bertlab.inference.precision import autocast
from bertlab.model import BertModel


@torch.no_grad()
def embed(
    encoder: BertModel,
    batch: dict[str, torch.Tensor],
    encodings: list,
    pooling: str,
    precision: str = "fp32",
) -> list[dict]:
    """`tokens`, `token_vectors` (real tokens only) and a `sentence_vector` per row.

    `cls` pooling takes the final [CLS] vector; `mean` averages every real token's vector,
    the special ones included (as sentence-transformers does). `precision="bf16"` runs the
    encoder under bf16 autocast (its weights cast with `for_precision` first); the vectors
    are float32.
    """
    with autocast(precision):
        sequence_output, _ = encoder(
            batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
        )
    sequence_output = sequence_output.float()
    mask = batch["attention_mask"].unsqueeze(-1).to(sequence_output.dtype)  # (B, T, 1)
    if pooling == "cls":
        sentence_vectors = sequence_output[:, 0]
    elif pooling == "mean":
        sentence_vectors = (sequence_output * mask).sum(1) / mask.sum(1)
    else:
        raise ValueError(f"pooling={pooling!r}; choose cls or mean")
    results = []
    for row, encoding in enumerate(encodings):
        length = int(batch["attention_mask"][row].sum())
        results.append(
            {
                "tokens": encoding.tokens[:length],
                "token_vectors": sequence_output[row, :length].tolist(),
                "sentence_vector": sentence_vectors[row].tolist(),
            }
        )
    return results
