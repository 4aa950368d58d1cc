"""Inference on bertlab checkpoints and Hugging Face directories: load, read inputs, batch, run.

Shared by `bertlab-predict`, `bertlab-embed` and `bertlab-export`. A checkpoint is read
once with `torch.load(weights_only=True)`; the task module is rebuilt from its
`hyper_parameters` and the tokenizer from `checkpoint["tokenizer"]`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
from tokenizers import Tokenizer

from bertlab.checkpoint import load_checkpoint, tokenizer_from_checkpoint
from bertlab.errors import DataError
from bertlab.hf import (
    hf_model_config,
    load_hf_state_dict,
    load_hf_tokenizer,
    read_hf_config,
    resolve_init,
)
from bertlab.model import BertConfig, BertModel
from bertlab.qa.decode import DecodingSettings, Window, decode_question
from bertlab.qa.read import SquadExample, SquadSplit
from bertlab.qa.windows import (
    SquadFeatures,
    WindowSettings,
    build_features,
    collate_features,
)
from bertlab.tasks.base import BertTaskModule
from bertlab.tasks.classify import ClassificationModule
from bertlab.tasks.pretrain import PretrainingModule
from bertlab.tasks.qa import QuestionAnsweringModule
from bertlab.tokenizer import special_ids

# Only these classes are ever built from a checkpoint: a name stored in a file must not
# choose arbitrary code to import.
TASK_MODULES: dict[str, type[BertTaskModule]] = {
    cls.__name__: cls for cls in (PretrainingModule, ClassificationModule, QuestionAnsweringModule)
}
QA_DEFAULT_MAX_LENGTH = 384


# ---- loading --------------------------------------------------------------------------


def module_class(checkpoint: dict) -> type[BertTaskModule]:
    """The task module a checkpoint was saved from.

    Lightning records no class, so a stored `module_class` name is used when present and
    otherwise the hyperparameters decide: only classification has `num_labels`, only
    question answering `version_2_with_negative`.
    """
    stored = str(checkpoint.get("module_class", "")).rsplit(".", 1)[-1]
    if stored in TASK_MODULES:
        return TASK_MODULES[stored]
    hyper_parameters = checkpoint["hyper_parameters"]
    if "num_labels" in hyper_parameters:
        return ClassificationModule
    if "version_2_with_negative" in hyper_parameters:
        return QuestionAnsweringModule
    return PretrainingModule


def load_module(path: str | Path) -> tuple[BertTaskModule, Tokenizer]:
    """The task module of a bertlab checkpoint or a Hugging Face directory, in eval mode, and its tokenizer."""
    source = resolve_init(path)  # hf:NAME downloads once, here
    if source.is_dir():
        return load_hf_module(source)
    checkpoint = load_checkpoint(path)
    if "hyper_parameters" not in checkpoint or "state_dict" not in checkpoint:
        raise ValueError(f"{path}: not a bertlab checkpoint (no hyper_parameters or state_dict)")
    module = module_class(checkpoint)(**checkpoint["hyper_parameters"])
    missing, _ = module.load_state_dict(checkpoint["state_dict"], strict=False)
    missing_weights = [key for key in missing if key.startswith("model.")]
    if missing_weights:
        raise ValueError(f"{path}: the checkpoint lacks weights, e.g. {missing_weights[0]}")
    module.on_load_checkpoint(checkpoint)
    if module.tokenizer_json:
        tokenizer = Tokenizer.from_str(module.tokenizer_json)
    else:
        tokenizer = tokenizer_from_checkpoint(path)
        if tokenizer is None:
            raise ValueError(f"{path}: no tokenizer in the checkpoint or beside it")
    return module.eval(), tokenizer


def load_hf_module(directory: Path) -> tuple[BertTaskModule, Tokenizer]:
    """A transformers `BertForSequenceClassification` / `BertForQuestionAnswering` directory
    as the bertlab task module with the same weights (the parameter names are the same)."""
    config = read_hf_config(directory)
    architectures = config.get("architectures") or []
    model, vocab_size = hf_model_config(directory), config["vocab_size"]
    if "BertForSequenceClassification" in architectures:
        id2label = config.get("id2label") or {}
        num_labels = len(id2label) or int(config.get("num_labels", 2))
        regression = config.get("problem_type") == "regression" or num_labels == 1
        names = [id2label.get(str(i)) for i in range(num_labels)]  # JSON keys are strings
        module: BertTaskModule = ClassificationModule(
            model,
            {},
            vocab_size,
            num_labels=num_labels,
            metrics=["pearson"] if regression else ["accuracy"],
            regression=regression,
            label_names=None if regression or None in names else names,
        )
    elif "BertForQuestionAnswering" in architectures:
        positions = model.get("max_position_embeddings", QA_DEFAULT_MAX_LENGTH)
        module = QuestionAnsweringModule(
            model, {}, vocab_size, max_seq_length=min(QA_DEFAULT_MAX_LENGTH, positions)
        )
    else:
        raise ValueError(
            f"{directory / 'config.json'}: architectures={architectures}; bertlab-predict takes "
            "BertForSequenceClassification or BertForQuestionAnswering (bertlab-embed takes any BERT)"
        )
    missing, _ = module.model.load_state_dict(load_hf_state_dict(directory), strict=False)
    missing = [key for key in missing if not key.startswith("bert.pooler.")]  # QA has no pooler
    if missing:
        raise ValueError(f"{directory}: the weights lack parameters, e.g. {missing[0]}")
    return module.eval(), load_hf_tokenizer(directory)


def load_encoder(path: str | Path) -> tuple[BertModel, Tokenizer]:
    """The BERT encoder of a bertlab checkpoint, a Hugging Face directory or `hf:NAME`."""
    directory = resolve_init(path)
    if not directory.is_dir():
        module, tokenizer = load_module(path)
        return module.model.bert.eval(), tokenizer
    encoder = BertModel(BertConfig.from_dict(hf_model_config(directory)))
    weights = {
        key.removeprefix("bert."): value
        for key, value in load_hf_state_dict(directory).items()
        if key.startswith("bert.")
    }
    missing, _ = encoder.load_state_dict(weights, strict=False)
    # A BertForQuestionAnswering checkpoint has no pooler; embeddings never use it.
    missing = [key for key in missing if not key.startswith("pooler.")]
    if missing:
        raise ValueError(f"{path}: the weights lack encoder parameters, e.g. {missing[0]}")
    return encoder.eval(), load_hf_tokenizer(directory)


# ---- inputs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InputRecord:
    line: int
    fields: dict


def read_inputs(stream: TextIO, name: str) -> list[InputRecord]:
    """JSON Lines (one object per line) or plain text (one `text` per line); blank lines skipped.

    The first non-blank line decides: a line starting with `{` means JSON Lines, and then
    every line must be a JSON object.
    """
    records: list[InputRecord] = []
    json_lines: bool | None = None
    for line_number, line in enumerate(stream, 1):
        line = line.strip()
        if not line:
            continue
        if json_lines is None:
            json_lines = line.startswith("{")
        fields = _parse_json_line(line, name, line_number) if json_lines else {"text": line}
        records.append(InputRecord(line_number, fields))
    return records


def _parse_json_line(line: str, name: str, line_number: int) -> dict:
    try:
        fields = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(name, f"not valid JSON ({error.msg})", line_number) from None
    if not isinstance(fields, dict):
        raise DataError(name, "expected a JSON object per line", line_number)
    return fields


def require_text_fields(
    records: Iterable[InputRecord], required: Sequence[str], optional: Sequence[str], name: str
) -> None:
    """Every record has the `required` fields as strings; `optional` ones are strings or null."""
    for record in records:
        for field_name in required:
            if field_name not in record.fields:
                raise DataError(
                    name,
                    f"missing field {field_name!r} (expected {', '.join(required)})",
                    record.line,
                )
        present = [*required, *(f for f in optional if record.fields.get(f) is not None)]
        for field_name in present:
            value = record.fields[field_name]
            if not isinstance(value, str):
                raise DataError(
                    name, f"field {field_name!r} must be a string, got {value!r}", record.line
                )


def batched(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---- sentences and sentence pairs -----------------------------------------------------


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


@torch.no_grad()
def classify(
    module: ClassificationModule, batch: dict[str, torch.Tensor], with_logits: bool = False
) -> list[dict]:
    """`label` + `probs` per row (label names when the task has them), or `score` for regression."""
    logits = module.model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    if module.hparams.regression:
        return [{"score": float(score)} for score in logits.squeeze(-1)]
    probabilities = logits.float().softmax(-1)
    label_names = module.hparams.get("label_names")
    results = []
    for row_logits, row_probabilities in zip(logits, probabilities, strict=True):
        label_id = int(row_probabilities.argmax())
        result = {
            "label": label_names[label_id] if label_names else label_id,
            "probs": row_probabilities.tolist(),
        }
        if with_logits:
            result["logits"] = row_logits.tolist()
        results.append(result)
    return results


# ---- question answering ---------------------------------------------------------------


@torch.no_grad()
def answer_questions(
    module: QuestionAnsweringModule,
    tokenizer: Tokenizer,
    records: Sequence[dict],
    batch_size: int,
    source: str = "<input>",
    max_length: int | None = None,
) -> list[dict]:
    """`answer` and its n-best `score` (probability) per {question, context} record.

    Windows are `max_length` tokens (default: the length the model was fine-tuned with).
    """
    settings = module.hparams
    max_length = min(
        max_length or settings.get("max_seq_length", QA_DEFAULT_MAX_LENGTH),
        module.model.config.max_position_embeddings,
    )
    split = _question_split(records, source)
    arrays = build_features(split, tokenizer, qa_window_settings(max_length), False, True)
    features = SquadFeatures(arrays, train=False)
    windows: dict[int, list[Window]] = {index: [] for index in range(len(records))}
    for rows in batched(range(len(features)), batch_size):
        batch = collate_features([features[row] for row in rows])
        start_logits, end_logits = module.model(
            batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
        )
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
    """The reference's 64-token questions and 128-token stride at 384, scaled down for short models."""
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


# ---- embeddings -----------------------------------------------------------------------


@torch.no_grad()
def embed(
    encoder: BertModel, batch: dict[str, torch.Tensor], encodings: list, pooling: str
) -> list[dict]:
    """`tokens`, `token_vectors` (real tokens only) and a `sentence_vector` per row.

    `cls` pooling takes the final [CLS] vector; `mean` averages every real token's vector,
    the special ones included (as sentence-transformers does).
    """
    sequence_output, _ = encoder(
        batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
    )
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


# ---- commands -------------------------------------------------------------------------


def read_input_file(path: str) -> tuple[list[InputRecord], str]:
    """Records of a file, or of stdin for `-`; and the name errors use for it."""
    if path == "-":
        import sys

        return read_inputs(sys.stdin, "<stdin>"), "<stdin>"
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: input file not found")
    with open(path, encoding="utf-8") as stream:
        return read_inputs(stream, path), path


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
        raise ValueError(
            f"{type(module).__name__} checkpoint: bertlab-predict runs classification, regression "
            "and question answering checkpoints (bertlab-embed gives a pretrained model's vectors)"
        )
    return [{**record.fields, **result} for record, result in zip(records, results, strict=True)]


def write_json_lines(rows: Iterable[dict], out: str | None) -> None:
    """One JSON object per line into `out`, or stdout."""
    import sys

    stream = open(out, "w", encoding="utf-8") if out else sys.stdout  # noqa: SIM115
    try:
        for row in rows:
            stream.write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        if out:
            stream.close()
