"""Extractive question answering: an `answer` span of the context and its `score` per question."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer

from bertlab.checkpoints.restore import QA_DEFAULT_MAX_LENGTH
from bertlab.inference.batches import batched
from bertlab.inference.task_model import TaskModel
from bertlab.qa.decode import DecodingSettings, Window, decode_question
from bertlab.qa.windows import (
    SquadExample,
    SquadFeatures,
    SquadSplit,
    WindowSettings,
    build_features,
    collate_features,
)


def answer_questions(
    model: TaskModel,
    tokenizer: Tokenizer,
    records: Sequence[dict],
    batch_size: int,
    source: str = "<input>",
    max_length: int | None = None,
) -> list[dict]:
    """`answer` and its n-best `score` (probability) per {question, context} record.

    Windows are `max_length` tokens (default: the length the model was fine-tuned with).
    """
    settings = model.settings
    max_length = min(
        max_length or settings.get("max_seq_length", QA_DEFAULT_MAX_LENGTH), model.max_positions
    )
    split = _question_split(records, source)
    arrays = build_features(split, tokenizer, qa_window_settings(max_length), False, True)
    features = SquadFeatures(arrays, train=False)
    windows: dict[int, list[Window]] = {index: [] for index in range(len(records))}
    for rows in batched(range(len(features)), batch_size):
        batch = collate_features([features[row] for row in rows])
        start_logits, end_logits = model.forward(batch)
        for offset, row in enumerate(rows):
            windows[int(arrays["example_index"][row])].append(
                _window(arrays, row, start_logits[offset], end_logits[offset])
            )
    decoding = DecodingSettings(
        **{
            key: settings[key]
            for key in (
                "n_best_size",
                "max_answer_length",
                "null_score_diff_threshold",
                "version_2_with_negative",
            )
            if key in settings
        }
    )
    return [_decoded(split.contexts[i], windows[i], decoding) for i in range(len(records))]


def qa_window_settings(max_length: int) -> WindowSettings:
    """The reference's 64-token questions and 128-token stride at 384, scaled to `max_length`."""
    return WindowSettings(
        max_seq_length=max_length,
        doc_stride=min(128, max_length // 3),
        max_query_length=min(64, max_length // 2),
    )


def _question_split(records: Sequence[dict], source: str) -> SquadSplit:
    examples = [
        SquadExample(str(index), record["question"], index, (), (), False)
        for index, record in enumerate(records)
    ]
    return SquadSplit([record["context"] for record in records], examples, source)


def _window(arrays: dict, row: int, start_logits, end_logits) -> Window:
    # The batch is cut to its longest window; decoding reads only the first `length` logits.
    return Window(
        start_logits=start_logits.float().numpy(),
        end_logits=end_logits.float().numpy(),
        offsets=np.asarray(arrays["offsets"][row]),
        token_is_max_context=np.asarray(arrays["token_is_max_context"][row]),
        length=int(arrays["lengths"][row]),
    )


def _decoded(context: str, windows: list[Window], settings: DecodingSettings) -> dict:
    prediction, nbest, _ = decode_question(context, windows, settings)
    score = next((entry["probability"] for entry in nbest if entry["text"] == prediction), 0.0)
    return {"answer": prediction, "score": score}
