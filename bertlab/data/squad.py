"""SQuAD v1.1 / v2.0: read the official JSON (or the Hub), cut question + context windows.

Windows follow the reference `run_squad.py`: the question is cut to `max_query_length`
tokens; the context is split into windows of what is left of `max_seq_length`, each
starting `doc_stride` tokens after the previous one. A window that does not contain the
whole answer is labelled with [CLS] (start = end = 0), in v1.1 as in v2.0, as the
reference does. Tokens are mapped back to characters through the tokenizer's own
offsets, so predicted answers are slices of the original context.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Encoding, Tokenizer
from torch.utils.data import DataLoader, Dataset

from bertlab.data.base import BertDataModule
from bertlab.data.cache import cached_dir, default_cache_dir, fingerprint
from bertlab.errors import DataError
from bertlab.data.sampling import EpochSampler
from bertlab.squad_eval import GoldQuestion, evaluate_v2
from bertlab.tokenizer import special_ids

FEATURES_FORMAT = 1  # bump when the cached arrays change meaning
NOT_CONTEXT = -1  # offsets of tokens that are not context ([CLS], question, [SEP], padding)


@dataclass(frozen=True)
class SquadExample:
    """One question. `answer_starts` are character offsets into `contexts[context_index]`."""

    qid: str
    question: str
    context_index: int
    answer_texts: tuple[str, ...]
    answer_starts: tuple[int, ...]
    is_impossible: bool


@dataclass
class SquadSplit:
    """The questions of one file; paragraphs are stored once, shared by their questions."""

    contexts: list[str]
    examples: list[SquadExample]
    source: str


# ---------------------------------------------------------------- reading


def read_squad_file(path: str | Path, require_answers: bool = False) -> SquadSplit:
    """Parse an official SQuAD JSON file (v1.1 or v2.0).

    `require_answers`: training data needs an answer for every answerable question.
    Raises DataError naming the file and question for any record it cannot use.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            articles = json.load(handle)["data"]
    except json.JSONDecodeError as error:
        raise DataError(path, f"not valid JSON: {error.msg}", line=error.lineno) from error
    except UnicodeDecodeError as error:
        raise DataError(
            path, f"not valid UTF-8 ({error.reason})", line=_first_undecodable_line(path)
        ) from None
    except (KeyError, TypeError) as error:
        raise DataError(path, "not a SQuAD file: no top-level 'data' list") from error
    split = SquadSplit(contexts=[], examples=[], source=str(path))
    for article_number, article in enumerate(articles):
        for paragraph_number, paragraph in enumerate(
            _required(article, "paragraphs", path, f"data[{article_number}]")
        ):
            where = f"data[{article_number}].paragraphs[{paragraph_number}]"
            _add_paragraph(split, paragraph, path, where, require_answers)
    return split


def _first_undecodable_line(path: Path) -> int | None:
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def _required(record, key: str, path: Path, where: str):
    if not isinstance(record, dict) or key not in record:
        raise DataError(path, f"{where}: missing {key!r}")
    return record[key]


def _add_paragraph(
    split: SquadSplit, paragraph: dict, path: Path, where: str, require_answers: bool
) -> None:
    context = _required(paragraph, "context", path, where)
    split.contexts.append(context)
    for qa_number, qa in enumerate(_required(paragraph, "qas", path, where)):
        qid = str(_required(qa, "id", path, f"{where}.qas[{qa_number}]"))
        question = _required(qa, "question", path, f"question {qid!r}")
        answers = _required(qa, "answers", path, f"question {qid!r}")
        texts, starts = _answers(answers, path, qid)
        example = SquadExample(
            qid=qid,
            question=question,
            context_index=len(split.contexts) - 1,
            answer_texts=texts,
            answer_starts=starts,
            is_impossible=bool(qa.get("is_impossible", False)) or not texts,
        )
        check_example(example, context, path, require_answers, v2=("is_impossible" in qa))
        split.examples.append(example)


def _answers(answers, path: Path, qid: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    try:
        texts = tuple(answer["text"] for answer in answers)
        starts = tuple(int(answer["answer_start"]) for answer in answers)
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(
            path, f"question {qid!r}: every answer needs 'text' and an integer 'answer_start'"
        ) from error
    return texts, starts


def check_example(
    example: SquadExample, context: str, path, require_answers: bool, v2: bool
) -> None:
    """Every answer must be the slice of the context its `answer_start` points at."""
    if require_answers and not v2 and not example.answer_texts:
        raise DataError(
            path, f"question {example.qid!r}: no answer (a v1.1 training question needs one)"
        )
    for text, start in zip(example.answer_texts, example.answer_starts, strict=True):
        found = context[start : start + len(text)]
        if start < 0 or found != text:
            raise DataError(
                path,
                f"question {example.qid!r}: answer {text!r} does not match the context at "
                f"answer_start {start} (found {found!r})",
            )


def read_squad_hub(dataset_name: str, split_name: str, data_dir_hint: str) -> SquadSplit:
    """Read `rajpurkar/squad` / `rajpurkar/squad_v2` through `datasets` (needs the network once)."""
    try:
        import datasets  # lazily: an optional dependency, and slow to import
    except ImportError as error:
        raise FileNotFoundError(
            f"no local SQuAD files and the `datasets` package is not installed; set {data_dir_hint}=DIR "
            "(the official train/dev JSON files) or pip install 'bertlab[hub]'"
        ) from error
    try:
        rows = datasets.load_dataset(dataset_name, split=split_name)
    except Exception as error:  # offline, unknown name, ... all mean: use local files
        raise FileNotFoundError(
            f"cannot load {dataset_name} ({split_name}) from the Hub ({error}); set {data_dir_hint}=DIR "
            "to a directory with the official SQuAD JSON files"
        ) from error
    return squad_split_from_rows(rows, f"{dataset_name}:{split_name}")


def squad_split_from_rows(rows, source: str) -> SquadSplit:
    """Hub rows (`id`, `question`, `context`, `answers: {text, answer_start}`) as a SquadSplit."""
    split = SquadSplit(contexts=[], examples=[], source=source)
    context_index: dict[str, int] = {}
    for row in rows:
        context = row["context"]
        if context not in context_index:
            context_index[context] = len(split.contexts)
            split.contexts.append(context)
        texts = tuple(row["answers"]["text"])
        example = SquadExample(
            qid=str(row["id"]),
            question=row["question"],
            context_index=context_index[context],
            answer_texts=texts,
            answer_starts=tuple(int(start) for start in row["answers"]["answer_start"]),
            is_impossible=not texts,
        )
        check_example(example, context, source, require_answers=False, v2=True)
        split.examples.append(example)
    return split


# ---------------------------------------------------------------- windows


@dataclass(frozen=True)
class WindowSettings:
    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64

    def check(self) -> None:
        if self.max_seq_length - self.max_query_length - 3 < 1:
            raise ValueError(
                f"task.max_seq_length={self.max_seq_length} leaves no room for context after "
                f"task.max_query_length={self.max_query_length} and 3 special tokens"
            )
        if self.doc_stride < 1:
            raise ValueError(f"task.doc_stride={self.doc_stride}: must be at least 1")


def window_starts(
    num_context_tokens: int, max_context_tokens: int, doc_stride: int
) -> list[tuple[int, int]]:
    """(start, length) of each context window, as the reference: step `doc_stride`, last one ends at the end."""
    spans = []
    start = 0
    while start < num_context_tokens:
        length = min(num_context_tokens - start, max_context_tokens)
        spans.append((start, length))
        if start + length == num_context_tokens:
            break
        start += min(length, doc_stride)
    return spans


def max_context_flags(spans: Sequence[tuple[int, int]], span_index: int) -> np.ndarray:
    """For each token of window `span_index`: is this the window where it has most context?

    Score = min(left, right context) + 0.01 * window length; ties go to the earlier window.
    """
    start, length = spans[span_index]
    positions = np.arange(start, start + length)
    best_score = np.full(length, -np.inf)
    best_span = np.full(length, -1)
    for index, (other_start, other_length) in enumerate(spans):
        inside = (positions >= other_start) & (positions < other_start + other_length)
        left = positions - other_start
        right = other_start + other_length - 1 - positions
        score = np.minimum(left, right) + 0.01 * other_length
        better = inside & (score > best_score)
        best_score[better], best_span[better] = score[better], index
    return best_span == span_index


def answer_token_span(
    offsets: np.ndarray, answer_start: int, answer_end: int
) -> tuple[int, int] | None:
    """First and last context token overlapping characters [answer_start, answer_end)."""
    first = int(np.searchsorted(offsets[:, 1], answer_start, side="right"))
    last = int(np.searchsorted(offsets[:, 0], answer_end, side="left")) - 1
    if first >= len(offsets) or last < first:
        return None
    return first, last


class FeatureBuilder:
    """Turns a SquadSplit into fixed-width arrays of windows (one row per window)."""

    def __init__(
        self, tokenizer: Tokenizer, settings: WindowSettings, with_labels: bool, with_offsets: bool
    ):
        self.tokenizer, self.settings = tokenizer, settings
        self.with_labels, self.with_offsets = with_labels, with_offsets
        self.ids = special_ids(tokenizer)
        self.rows: dict[str, list] = {name: [] for name in self.array_names()}

    def array_names(self) -> list[str]:
        names = ["input_ids", "token_type_ids", "lengths", "example_index"]
        names += ["start_positions", "end_positions"] if self.with_labels else []
        names += ["offsets", "token_is_max_context"] if self.with_offsets else []
        return names

    def build(self, split: SquadSplit) -> dict[str, np.ndarray]:
        contexts = self._encode(split.contexts)
        questions = self._encode([example.question for example in split.examples])
        for example_index, (example, question) in enumerate(
            zip(split.examples, questions, strict=True)
        ):
            context_encoding = contexts[example.context_index]
            self._add_example(split, example_index, example, question, context_encoding)
        return self._stack()

    def _encode(self, texts: list[str]) -> list[Encoding]:
        return self.tokenizer.encode_batch(texts, add_special_tokens=False)

    def _add_example(
        self, split, example_index, example, question: Encoding, context: Encoding
    ) -> None:
        settings = self.settings
        query_ids = question.ids[: settings.max_query_length]
        context_offsets = np.asarray(context.offsets, dtype=np.int64).reshape(-1, 2)
        max_context_tokens = settings.max_seq_length - len(query_ids) - 3
        spans = window_starts(len(context.ids), max_context_tokens, settings.doc_stride)
        answer = self._answer_tokens(split, example, context_offsets) if self.with_labels else None
        for span_index in range(len(spans)):
            self._add_window(query_ids, context, context_offsets, spans, span_index, answer)
            self.rows["example_index"].append(example_index)

    def _answer_tokens(
        self, split: SquadSplit, example: SquadExample, offsets: np.ndarray
    ) -> tuple[int, int] | None:
        if example.is_impossible:
            return None
        # The reference trains on the first gold answer only.
        text, start = example.answer_texts[0], example.answer_starts[0]
        span = answer_token_span(offsets, start, start + len(text))
        if span is None:
            raise DataError(
                split.source,
                f"question {example.qid!r}: answer {text!r} covers no token of the context",
            )
        return span

    def _add_window(
        self, query_ids, context: Encoding, context_offsets, spans, span_index, answer
    ) -> None:
        start, length = spans[span_index]
        context_position = len(query_ids) + 2  # after [CLS] question [SEP]
        ids = [
            self.ids.cls,
            *query_ids,
            self.ids.sep,
            *context.ids[start : start + length],
            self.ids.sep,
        ]
        width = self.settings.max_seq_length
        self.rows["input_ids"].append(_padded(ids, width, self.ids.pad))
        self.rows["token_type_ids"].append(
            _padded([0] * context_position + [1] * (length + 1), width, 0)
        )
        self.rows["lengths"].append(len(ids))
        if self.with_labels:
            label = (0, 0)  # [CLS]: the answer is not (wholly) in this window
            if answer is not None and start <= answer[0] and answer[1] < start + length:
                label = (answer[0] - start + context_position, answer[1] - start + context_position)
            self.rows["start_positions"].append(label[0])
            self.rows["end_positions"].append(label[1])
        if self.with_offsets:
            offsets = np.full((width, 2), NOT_CONTEXT, dtype=np.int32)
            offsets[context_position : context_position + length] = context_offsets[
                start : start + length
            ]
            self.rows["offsets"].append(offsets)
            max_context = np.zeros(width, dtype=bool)
            max_context[context_position : context_position + length] = max_context_flags(
                spans, span_index
            )
            self.rows["token_is_max_context"].append(max_context)

    def _stack(self) -> dict[str, np.ndarray]:
        width = self.settings.max_seq_length
        row_shapes = {"input_ids": (width,), "token_type_ids": (width,), "offsets": (width, 2)}
        row_shapes["token_is_max_context"] = (width,)
        dtypes = {"input_ids": np.int32, "token_type_ids": np.int8, "offsets": np.int32}
        dtypes["token_is_max_context"] = np.bool_
        return {
            name: np.asarray(rows, dtype=dtypes.get(name, np.int64)).reshape(
                -1, *row_shapes.get(name, ())
            )
            for name, rows in self.rows.items()
        }


def _padded(values: list[int], width: int, pad: int) -> np.ndarray:
    row = np.full(width, pad, dtype=np.int32)
    row[: len(values)] = values
    return row


def build_features(
    split: SquadSplit,
    tokenizer: Tokenizer,
    settings: WindowSettings,
    with_labels: bool,
    with_offsets: bool,
) -> dict[str, np.ndarray]:
    """Windows of every question of `split` as arrays with one row per window."""
    settings.check()
    return FeatureBuilder(tokenizer, settings, with_labels, with_offsets).build(split)


# ---------------------------------------------------------------- batches


class SquadFeatures(Dataset):
    """Rows of the feature arrays; `feature_index` is the row number (eval), labels for training."""

    def __init__(self, arrays: dict[str, np.ndarray], train: bool):
        self.arrays, self.train = arrays, train

    def __len__(self) -> int:
        return len(self.arrays["lengths"])

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, np.ndarray | int]:
        index = key[1] if isinstance(key, tuple) else key  # EpochSampler yields (epoch, index)
        item = {
            "input_ids": self.arrays["input_ids"][index],
            "token_type_ids": self.arrays["token_type_ids"][index],
            "length": int(self.arrays["lengths"][index]),
        }
        if self.train:
            item["start_positions"] = int(self.arrays["start_positions"][index])
            item["end_positions"] = int(self.arrays["end_positions"][index])
        else:
            item["feature_index"] = index
        return item


def collate_features(items: list[dict]) -> dict[str, torch.Tensor]:
    """Stack windows, cut to the longest window of the batch; int64 tensors throughout."""
    width = max(item["length"] for item in items)
    lengths = torch.tensor([item["length"] for item in items])
    batch = {
        "input_ids": torch.from_numpy(
            np.stack([item["input_ids"][:width] for item in items]).astype(np.int64)
        ),
        "token_type_ids": torch.from_numpy(
            np.stack([item["token_type_ids"][:width] for item in items]).astype(np.int64)
        ),
        "attention_mask": (torch.arange(width)[None, :] < lengths[:, None]).long(),
    }
    for name in ("start_positions", "end_positions", "feature_index"):
        if name in items[0]:
            batch[name] = torch.tensor([item[name] for item in items], dtype=torch.int64)
    return batch


# ---------------------------------------------------------------- the data module


@dataclass
class SquadEvalSet:
    """What decoding and scoring need besides the logits: questions, contexts, window offsets."""

    split: SquadSplit
    example_index: np.ndarray  # (F,) question of each window
    offsets: np.ndarray  # (F, T, 2) character span of each context token, NOT_CONTEXT elsewhere
    token_is_max_context: np.ndarray  # (F, T)
    lengths: np.ndarray  # (F,)


class QuestionAnsweringDataModule(BertDataModule):
    """SQuAD-format data: local official files under `data_dir`, else the Hub."""

    def __init__(
        self,
        data_dir: str | None = None,
        train_file: str = "train-v1.1.json",
        dev_file: str = "dev-v1.1.json",
        hub_dataset: str = "rajpurkar/squad",
        version_2_with_negative: bool = False,
        max_seq_length: int = 384,
        doc_stride: int = 128,
        max_query_length: int = 64,
        batch_size: int = 12,
        eval_batch_size: int | None = None,
        n_best_size: int = 20,
        max_answer_length: int = 30,
        null_score_diff_threshold: float = 0.0,
        num_workers: int = 0,
        pin_memory: bool = False,
        cache_dir: str | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.data_dir = Path(data_dir).expanduser() if data_dir else None
        self.train_file, self.dev_file, self.hub_dataset = train_file, dev_file, hub_dataset
        self.version_2_with_negative = version_2_with_negative
        self.settings = WindowSettings(max_seq_length, doc_stride, max_query_length)
        self.settings.check()
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.decoding = {
            "n_best_size": n_best_size,
            "max_answer_length": max_answer_length,
            "null_score_diff_threshold": null_score_diff_threshold,
        }
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.seed = seed
        self._splits: dict[str, SquadSplit] = {}
        self._arrays: dict[str, dict[str, np.ndarray]] = {}
        if self.data_dir is not None:
            self._check_local_files()

    # -- sources

    def _check_local_files(self) -> None:
        for name in (self.train_file, self.dev_file):
            if not (self.data_dir / name).is_file():
                raise FileNotFoundError(
                    f"task.data_dir={self.data_dir}: no {name} there (the official SQuAD file)"
                )

    def _local_path(self, stage: str) -> Path | None:
        if self.data_dir is None:
            return None
        return self.data_dir / (self.train_file if stage == "train" else self.dev_file)

    def read_split(self, stage: str) -> SquadSplit:
        """The questions of `train` or `validation` (read once, then kept)."""
        if stage not in self._splits:
            path = self._local_path(stage)
            if path is not None:
                self._splits[stage] = read_squad_file(path, require_answers=stage == "train")
            else:
                self._splits[stage] = read_squad_hub(self.hub_dataset, stage, "task.data_dir")
        return self._splits[stage]

    def _source_key(self, stage: str):
        path = self._local_path(stage)
        return path if path is not None else f"{self.hub_dataset}:{stage}"

    # -- features

    def _features(self, stage: str) -> dict[str, np.ndarray]:
        if self.tokenizer is None:
            raise RuntimeError("set_tokenizer() must be called before the SQuAD features are built")
        if stage not in self._arrays:
            train = stage == "train"
            key = fingerprint(
                FEATURES_FORMAT,
                self._source_key(stage),
                self.tokenizer.to_str(),
                self.settings.__dict__,
                train,
            )

            def build(directory: Path) -> dict:
                arrays = build_features(
                    self.read_split(stage), self.tokenizer, self.settings, train, not train
                )
                for name, array in arrays.items():
                    np.save(directory / f"{name}.npy", array)
                return {
                    "windows": int(len(arrays["lengths"])),
                    "source": str(self._source_key(stage)),
                }

            entry = cached_dir(self.cache_dir, "squad-features", key, build)
            self._arrays[stage] = {
                path.stem: np.load(path, mmap_mode="r") for path in entry.glob("*.npy")
            }
        return self._arrays[stage]

    def prepare_data(self) -> None:
        for stage in ("train", "validation"):
            self._features(stage)

    def setup(self, stage: str | None = None) -> None:
        self.prepare_data()  # cache hits after prepare_data; loads the arrays on every rank

    def eval_set(self) -> SquadEvalSet:
        arrays = self._features("validation")
        return SquadEvalSet(
            split=self.read_split("validation"),
            example_index=np.asarray(arrays["example_index"]),
            offsets=arrays["offsets"],
            token_is_max_context=arrays["token_is_max_context"],
            lengths=np.asarray(arrays["lengths"]),
        )

    # -- loaders

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            SquadFeatures(self._features("train"), train=True),
            batch_size=self.batch_size,
            sampler=EpochSampler(
                len(self._features("train")["lengths"]), shuffle=True, seed=self.seed
            ),
            collate_fn=collate_features,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            SquadFeatures(self._features("validation"), train=False),
            batch_size=self.eval_batch_size,
            sampler=EpochSampler(len(self._features("validation")["lengths"]), shuffle=False),
            collate_fn=collate_features,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )

    # -- what the entry point asks

    def training_texts(self) -> Iterator[str]:
        split = self.read_split("train")
        yield from split.contexts
        yield from (example.question for example in split.examples)

    def baseline_metrics(self) -> dict[str, float]:
        """v2.0: the official scores of answering "" to every question (the NoAns share)."""
        if not self.version_2_with_negative:
            return {}  # v1.1: "" scores 0
        examples = self.read_split("validation").examples
        questions = [GoldQuestion(example.qid, example.answer_texts) for example in examples]
        scores = evaluate_v2(questions, {question.qid: "" for question in questions})
        return {"val/no_answer_exact_match": scores["exact"], "val/no_answer_f1": scores["f1"]}

    def data_fingerprint(self) -> str:
        return fingerprint(self._source_key("train"))

    def module_kwargs(self) -> dict:
        return {
            "version_2_with_negative": self.version_2_with_negative,
            "max_seq_length": self.settings.max_seq_length,
            **self.decoding,
        }
