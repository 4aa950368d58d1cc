"""Small datasets in their real on-disk formats, for every reader of bertlab.

The writers know the official layouts (GLUE, SNLI, XNLI, IMDB, custom tables, BERT's corpus
format, SQuAD) independently of conf/task/*.yaml, so tests that read them check the task files
as much as the reader code.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
import yaml

from bertlab.glue import GLUE_TASKS

# ---- collated pretraining batches, as PretrainingCollator returns them --------------------


def pretraining_batch(
    generator: torch.Generator, vocab: int, batch: int, length: int, predictions: int
) -> dict[str, torch.Tensor]:
    """Random unpadded instances with `predictions` masked positions each (never [CLS])."""
    positions = torch.stack(
        [torch.randperm(length - 1, generator=generator)[:predictions] + 1 for _ in range(batch)]
    )
    return {
        "input_ids": torch.randint(5, vocab, (batch, length), generator=generator),
        "token_type_ids": torch.zeros(batch, length, dtype=torch.long),
        "attention_mask": torch.ones(batch, length, dtype=torch.long),
        "masked_positions": positions,
        "masked_labels": torch.randint(5, vocab, (batch, predictions), generator=generator),
        "next_sentence_labels": torch.randint(0, 2, (batch,), generator=generator),
    }


# ---- pretraining text in BERT's format ------------------------------------------------------

WORDS = [
    "river",
    "stone",
    "cloud",
    "garden",
    "window",
    "music",
    "paper",
    "candle",
    "forest",
    "bridge",
    "silver",
    "quiet",
    "morning",
    "yellow",
    "engine",
    "planet",
    "winter",
    "summer",
    "market",
    "letter",
    "mountain",
    "ocean",
    "valley",
    "signal",
    "harbor",
    "lantern",
    "meadow",
    "thunder",
    "pencil",
    "orchard",
    "castle",
    "rocket",
    "velvet",
    "marble",
    "copper",
    "falcon",
]


def write_corpus(path: Path, documents: int = 60, seed: int = 0) -> Path:
    """A corpus in BERT's format: sentences with a per-document topic word, so NSP is learnable."""
    rng = random.Random(seed)
    lines = []
    for _ in range(documents):
        topic = rng.choice(WORDS)
        for _ in range(rng.randint(3, 8)):
            words = [topic] + rng.sample(WORDS, rng.randint(4, 10))
            lines.append(" ".join(words).capitalize() + ".")
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---- classification data in each dataset's official layout ---------------------------------


MNLI_PARSES = [
    "sentence1_binary_parse",
    "sentence2_binary_parse",
    "sentence1_parse",
    "sentence2_parse",
]


GLUE_LAYOUTS = {
    # task: (train/dev header or None, test header, how a labeled row is laid out)
    "cola": (None, ["index", "sentence"]),
    "sst2": (["sentence", "label"], ["index", "sentence"]),
    "mrpc": (
        ["\ufeffQuality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
        ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"],
    ),
    "stsb": (
        [
            "index",
            "genre",
            "filename",
            "year",
            "old_index",
            "source1",
            "source2",
            "sentence1",
            "sentence2",
            "score",
        ],
        [
            "index",
            "genre",
            "filename",
            "year",
            "old_index",
            "source1",
            "source2",
            "sentence1",
            "sentence2",
        ],
    ),
    "qqp": (
        ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
        ["id", "question1", "question2"],
    ),
    "mnli": (
        [
            "index",
            "promptID",
            "pairID",
            "genre",
            *MNLI_PARSES,
            "sentence1",
            "sentence2",
            "label1",
            "gold_label",
        ],
        ["index", "promptID", "pairID", "genre", *MNLI_PARSES, "sentence1", "sentence2"],
    ),
    "qnli": (["index", "question", "sentence", "label"], ["index", "question", "sentence"]),
    "rte": (["index", "sentence1", "sentence2", "label"], ["index", "sentence1", "sentence2"]),
    "wnli": (["index", "sentence1", "sentence2", "label"], ["index", "sentence1", "sentence2"]),
}


GLUE_LABELS = {
    "cola": ["0", "1"],
    "sst2": ["0", "1"],
    "mrpc": ["0", "1"],
    "qqp": ["0", "1"],
    "wnli": ["0", "1"],
    "mnli": ["contradiction", "entailment", "neutral"],
    "qnli": ["entailment", "not_entailment"],
    "rte": ["entailment", "not_entailment"],
    "stsb": None,
}


GLUE_TEST_FILES = {
    "cola": {"CoLA": "test.tsv"},
    "sst2": {"SST-2": "test.tsv"},
    "mrpc": {"MRPC": "test.tsv"},
    "stsb": {"STS-B": "test.tsv"},
    "qqp": {"QQP": "test.tsv"},
    "mnli": {"MNLI-m": "test_matched.tsv", "MNLI-mm": "test_mismatched.tsv"},
    "qnli": {"QNLI": "test.tsv"},
    "rte": {"RTE": "test.tsv"},
    "wnli": {"WNLI": "test.tsv"},
}


# Function words: the filler of every sentence pair (keyword_pair).
FILLER = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "it",
    "that",
    "with",
    "for",
    "on",
    "as",
    "by",
    "at",
]


# One cue word per label; words of the pretraining corpus (WORDS), so its vocabulary has them.
CUES = ["river", "stone", "cloud", "garden", "window", "music"]


def keyword_pair(label_index: int, row: int) -> tuple[str, str]:
    """A sentence pair whose label is learnable: sentence A carries the label's cue word."""
    filler = [FILLER[(row * 7 + k * 3) % len(FILLER)] for k in range(3 + row % 5)]
    return " ".join([*filler[:2], CUES[label_index], *filler[2:]]), " ".join(reversed(filler))


def glue_rows(task: str, count: int, start: int = 0) -> list[tuple[str, str, str]]:
    """(label, sentence A, sentence B); STS-B's label is a score 0-5 tied to the cue."""
    labels = GLUE_LABELS[task]
    rows = []
    for row in range(start, start + count):
        label_index = row % (6 if labels is None else len(labels))
        a, b = keyword_pair(label_index, row)
        rows.append((f"{label_index:.1f}" if labels is None else labels[label_index], a, b))
    return rows


def glue_line(task: str, row: int, label: str | None, a: str, b: str) -> list[str]:
    """One row in the task's own columns; `label=None` writes a test row."""
    test = label is None
    if task == "cola":
        return [str(row), a] if test else ["gj04", label, "" if label == "1" else "*", a]
    if task == "sst2":
        return [str(row), a] if test else [a, label]
    if task == "mrpc":
        ids = [str(1000 + row), str(2000 + row)]
        return [str(row), *ids, a, b] if test else [label, *ids, a, b]
    if task == "stsb":
        return [str(row), "main-captions", "MSRvid", "2012test", str(row), "none", "none", a, b] + (
            [] if test else [label]
        )
    if task == "qqp":
        return [str(row), a, b] if test else [str(row), str(2 * row), str(2 * row + 1), a, b, label]
    if task == "mnli":
        fields = [
            str(row),
            str(row),
            f"{row}e",
            "fiction",
            f"( {a} )",
            f"( {b} )",
            f"(ROOT {a})",
            f"(ROOT {b})",
            a,
            b,
        ]
        return fields if test else [*fields, label, label]
    return [str(row), a, b] if test else [str(row), a, b, label]  # qnli, rte, wnli


def write_tsv(path: Path, header: list[str] | None, lines: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ([header] if header else []) + lines
    path.write_text("".join("\t".join(fields) + "\n" for fields in rows), encoding="utf-8")
    return path


def write_glue_task(
    directory: Path, task: str, train: int = 40, dev: int = 12, test: int = 6
) -> Path:
    """train.tsv, dev(_matched/_mismatched).tsv and test file(s) as the GLUE download has them."""
    labeled_header, test_header = GLUE_LAYOUTS[task]
    if task == "mnli":  # dev files carry five annotator labels
        labeled_header = labeled_header[:-2] + [
            "label1",
            "label2",
            "label3",
            "label4",
            "label5",
            "gold_label",
        ]
        dev_names = ["dev_matched.tsv", "dev_mismatched.tsv"]
    else:
        dev_names = ["dev.tsv"]

    def labeled(rows, dev_file: bool) -> list[list[str]]:
        lines = []
        for row, (label, a, b) in enumerate(rows):
            fields = glue_line(task, row, label, a, b)
            if task == "mnli" and dev_file:
                fields = fields[:-2] + [label] * 6
            lines.append(fields)
        return lines

    train_header = GLUE_LAYOUTS[task][0]
    write_tsv(directory / "train.tsv", train_header, labeled(glue_rows(task, train), False))
    for name in dev_names:
        write_tsv(
            directory / name, labeled_header, labeled(glue_rows(task, dev, start=train), True)
        )
    for name in GLUE_TEST_FILES[task].values():
        lines = [
            glue_line(task, row, None, a, b) for row, (_, a, b) in enumerate(glue_rows(task, test))
        ]
        write_tsv(directory / name, test_header, lines)
    return directory


def write_snli(directory: Path, rows_per_split: dict[str, int], unlabeled_every: int = 5) -> Path:
    labels = ["contradiction", "entailment", "neutral"]
    directory.mkdir(parents=True, exist_ok=True)
    for split, count in rows_per_split.items():
        with open(directory / f"snli_1.0_{split}.jsonl", "w", encoding="utf-8") as out:
            for row in range(count):
                a, b = keyword_pair(row % 3, row)
                gold = "-" if row % unlabeled_every == unlabeled_every - 1 else labels[row % 3]
                record = {
                    "annotator_labels": [labels[row % 3]],
                    "captionID": f"{row}.jpg#0",
                    "gold_label": gold,
                    "pairID": f"{row}.jpg#0r1e",
                    "sentence1": a,
                    "sentence1_binary_parse": f"( {a} )",
                    "sentence1_parse": f"(ROOT {a})",
                    "sentence2": b,
                    "sentence2_binary_parse": f"( {b} )",
                    "sentence2_parse": f"(ROOT {b})",
                }
                out.write(json.dumps(record) + "\n")
    return directory


XNLI_HEADER = [
    "language",
    "gold_label",
    *MNLI_PARSES,
    "sentence1",
    "sentence2",
    "promptID",
    "pairID",
    "genre",
]


XNLI_HEADER += ["label1", "label2", "label3", "label4", "label5"]


def write_xnli(directory: Path, language: str = "de", train: int = 45, dev: int = 12) -> Path:
    """XNLI-1.0/xnli.{dev,test}.tsv (all languages) and
    XNLI-MT-1.0/multinli/multinli.train.<lang>.tsv.
    """
    labels = ["contradiction", "entailment", "neutral"]
    mt_rows = []
    for row in range(train):
        a, b = keyword_pair(row % 3, row)
        mt_rows.append([a, b, "contradictory" if row % 3 == 0 else labels[row % 3]])
    write_tsv(
        directory / "XNLI-MT-1.0" / "multinli" / f"multinli.train.{language}.tsv",
        ["premise", "hypo", "label"],
        mt_rows,
    )
    for split in ("dev", "test"):
        lines = []
        for lang in ("en", language, "zh"):
            for row in range(dev):
                a, b = keyword_pair(row % 3, row)
                gold = labels[row % 3]
                lines.append(
                    [lang, gold, a, b, a, b, a, b, str(row), str(row), "fiction", *[gold] * 5]
                )
        write_tsv(directory / "XNLI-1.0" / f"xnli.{split}.tsv", XNLI_HEADER, lines)
    return directory


def write_imdb(directory: Path, per_label: int = 10) -> Path:
    for split in ("train", "test"):
        for label_index, label in enumerate(("neg", "pos")):
            folder = directory / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for row in range(per_label):
                text, _ = keyword_pair(label_index, row)
                (folder / f"{row}_{3 + 5 * label_index}.txt").write_text(
                    f"{text}<br /><br />the end", encoding="utf-8"
                )
        # Files beside the label directories, and train/unsup/, are not examples.
        (directory / split / "urls_pos.txt").write_text("http://example.invalid\n")
    (directory / "train" / "unsup").mkdir()
    (directory / "train" / "unsup" / "0_0.txt").write_text("an unlabeled review", encoding="utf-8")
    return directory


def write_custom(directory: Path, file_format: str, name: str, rows: list[tuple[str, str]]) -> Path:
    """(text, label) rows as CSV (with a quoted comma), TSV or JSON Lines, with a header."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    if file_format == "jsonl":
        path.write_text(
            "".join(json.dumps({"review": t, "stars": label}) + "\n" for t, label in rows)
        )
    elif file_format == "csv":
        path.write_text(
            "id,review,stars\n"
            + "".join(f'{i},"{t}, truly",{label}\n' for i, (t, label) in enumerate(rows))
        )
    else:
        write_tsv(path, ["review", "stars"], [[t, label] for t, label in rows])
    return path


# ---- the GLUE download, and job directories as bertlab-train leaves them ---------------------


def write_glue_download(root: Path, diagnostic: bool = True) -> Path:
    """The GLUE download's layout (CoLA/, SST-2/, ..., diagnostic/), tiny files in the real
    formats.
    """
    for key, task in GLUE_TASKS.items():
        name = key.split("/")[1]
        write_glue_task(root / task.directory, name, train=16, dev=6, test=4)
    if diagnostic:
        rows = [[str(i), f"river stone {i}", f"cloud {i}"] for i in range(5)]
        write_tsv(root / "diagnostic" / "diagnostic.tsv", ["index", "sentence1", "sentence2"], rows)
    return root


# The leaderboard's BERT-large test row (shared/ANCHORS.md): its GLUE score is 80.5.
BERT_LARGE = {
    "glue/cola": {"val/matthews_corrcoef": 60.5},
    "glue/sst2": {"val/accuracy": 94.9},
    "glue/mrpc": {"val/f1": 89.3, "val/accuracy": 85.4},
    "glue/stsb": {"val/pearson": 87.6, "val/spearman": 86.5},
    "glue/qqp": {"val/f1": 72.1, "val/accuracy": 89.3},
    "glue/mnli": {"val_matched/accuracy": 86.7, "val_mismatched/accuracy": 85.9},
    "glue/qnli": {"val/accuracy": 92.7},
    "glue/rte": {"val/accuracy": 70.1},
    "glue/wnli": {"val/accuracy": 65.1},
}


def write_glue_job(
    directory: Path,
    task: str,
    metrics: dict[str, float],
    init: str | None = "bert-large",
    seed: int = 1,
    overrides: tuple[str, ...] = (),
    wall_seconds: float = 10.0,
) -> Path:
    """A finished job: results.json (metrics as logged, 0-1) and Hydra's .hydra/ files."""
    (directory / ".hydra").mkdir(parents=True)
    results = {
        "task": task,
        "metrics": {name: value / 100 for name, value in metrics.items()},
        "steps": 3,
        "wall_seconds": wall_seconds,
    }
    (directory / "results.json").write_text(json.dumps(results))
    config = {"task": {"name": task}, "model": {"init": init}, "seed": seed}
    (directory / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    command_line = [f"task={task}", f"seed={seed}", f"model.init={init}", *overrides]
    (directory / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(command_line))
    return directory


def write_glue_suite(root: Path, rows: dict[str, dict[str, float]], **job) -> Path:
    """One finished job per task of `rows` (task -> metrics in percent), in root/0, root/1, ..."""
    for number, (task, metrics) in enumerate(rows.items()):
        write_glue_job(root / str(number), task, metrics, **job)
    return root


# ---- SQuAD ------------------------------------------------------------------------------------

# The words of generated SQuAD contexts and answers.
SQUAD_WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "green",
    "table",
    "music",
    "paper",
    "light",
    "window",
    "garden",
    "silver",
    "orange",
    "forest",
    "bridge",
    "candle",
    "planet",
    "ocean",
    "thunder",
    "violet",
]
QUESTION = "what is the code?"


def generated_squad(num_questions: int, seed: int, unanswerable: float = 0.0) -> dict:
    """A SQuAD file whose answer is always the word after "code:" (absent when unanswerable)."""
    rng = random.Random(seed)
    version_2 = unanswerable > 0
    paragraphs = []
    for number in range(num_questions):
        words = [rng.choice(SQUAD_WORDS) for _ in range(rng.randint(8, 40))]
        impossible = rng.random() < unanswerable
        answer = rng.choice(SQUAD_WORDS).capitalize() + "é"
        if not impossible:
            position = rng.randrange(len(words))
            words[position:position] = ["code:", answer]
        context = " ".join(words)
        answers = (
            [] if impossible else [{"text": answer, "answer_start": context.index("code: ") + 6}]
        )
        qa = {"id": f"q{number}", "question": QUESTION, "answers": answers}
        if version_2:
            qa["is_impossible"] = impossible
        paragraphs.append({"context": context, "qas": [qa]})
    return {
        "version": "v2.0" if version_2 else "1.1",
        "data": [{"title": "generated", "paragraphs": paragraphs}],
    }


def write_squad(directory: Path, name: str, content: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
    return path


def one_paragraph(context: str, qas: list[dict]) -> dict:
    return {
        "version": "1.1",
        "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}],
    }


def qa(qid: str, question: str, context: str, *answers: str) -> dict:
    return {
        "id": qid,
        "question": question,
        "answers": [{"text": text, "answer_start": context.index(text)} for text in answers],
    }


def write_squad_dataset(data_dir: Path, version: str) -> tuple[Path, Path]:
    """Valid SQuAD training and dev files of `version` (v1.1, v2.0); returns (train, dev)."""
    unanswerable = 0.3 if version == "v2.0" else 0.0
    dev = write_squad(data_dir, f"dev-{version}.json", generated_squad(4, 1, unanswerable))
    train = write_squad(data_dir, f"train-{version}.json", generated_squad(8, 0, unanswerable))
    return train, dev
