"""`bertlab-predict`'s work: the task module decides between classification and QA."""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer

from bertlab.errors import CheckpointError
from bertlab.inference.batches import SentenceEncoder, batched
from bertlab.inference.classify import classify
from bertlab.inference.io import InputRecord, require_text_fields
from bertlab.inference.qa import answer_questions
from bertlab.tasks.base import BertTaskModule
from bertlab.tasks.classify import ClassificationModule
from bertlab.tasks.qa import QuestionAnsweringModule


def predict(
    module: BertTaskModule,
    tokenizer: Tokenizer,
    records: Sequence[InputRecord],
    source: str,
    batch_size: int = 32,
    max_length: int | None = None,
    with_logits: bool = False,
) -> list[dict]:
    """Each input record with the task's outputs added (see `classify`, `answer_questions`)."""
    if isinstance(module, QuestionAnsweringModule):
        require_text_fields(records, ("question", "context"), (), source)
        fields = [record.fields for record in records]
        results = [
            result
            for chunk in batched(fields, batch_size)
            for result in answer_questions(module, tokenizer, chunk, batch_size, source, max_length)
        ]
    elif isinstance(module, ClassificationModule):
        require_text_fields(records, ("text",), ("text_pair",), source)
        encoder = SentenceEncoder(
            tokenizer, max_length or module.model.config.max_position_embeddings
        )
        results = []
        for chunk in batched(records, batch_size):
            batch, _ = encoder([record.fields for record in chunk])
            results += classify(module, batch, with_logits)
    else:
        raise CheckpointError(
            f"{type(module).__name__} checkpoint: bertlab-predict runs classification, regression "
            "and question answering checkpoints (bertlab-embed gives a pretrained model's vectors)"
        )
    return [{**record.fields, **result} for record, result in zip(records, results, strict=True)]
