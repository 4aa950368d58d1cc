"""`bertlab-predict`'s work: the model's task decides between classification and QA."""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer

from bertlab.inference.batches import SentenceEncoder, batched
from bertlab.inference.classify import classify
from bertlab.inference.io import InputRecord, require_text_fields
from bertlab.inference.qa import answer_questions
from bertlab.inference.task_model import QUESTION_ANSWERING, TaskModel


def predict(
    model: TaskModel,
    tokenizer: Tokenizer,
    records: Sequence[InputRecord],
    source: str,
    batch_size: int = 32,
    max_length: int | None = None,
    with_logits: bool = False,
) -> list[dict]:
    """Each input record with the task's outputs added (see `classify`, `answer_questions`)."""
    if model.kind == QUESTION_ANSWERING:
        require_text_fields(records, ("question", "context"), (), source)
        fields = [record.fields for record in records]
        results = [
            result
            for chunk in batched(fields, batch_size)
            for result in answer_questions(model, tokenizer, chunk, batch_size, source, max_length)
        ]
    else:
        require_text_fields(records, ("text",), ("text_pair",), source)
        encoder = SentenceEncoder(tokenizer, max_length or model.max_positions)
        results = []
        for chunk in batched(records, batch_size):
            batch, _ = encoder([record.fields for record in chunk])
            results += classify(model, batch, with_logits)
    return [{**record.fields, **result} for record, result in zip(records, results, strict=True)]
