"""Whole documents -> sentences, for next sentence prediction; and the worker that does it.

Records (JSON Lines, CSV, Parquet, `datasets`) hold whole documents: paragraphs of prose.
Each line of a document is a paragraph, and each paragraph is split into sentences by
`task.sentence_splitter`:

- `spacy` (default): spaCy's rule-based sentencizer on a blank English pipeline. No model
  download, portable wheels, kept up to date; it split a hand-checked sample of Python's
  documentation without a missed boundary and handles abbreviations (Mr., U.S., e.g.)
  that a regular expression splits at. About 0.7 to 1.6 MB/s per core (its tokenizer).
- `regex`: a split after . ! ? followed by a capital letter (the default corpus' rule):
  25x faster, no dependency, but it splits at "Mr. Smith" and "U.S. Army".

docs/pretraining_data.md compares these with pysbd, blingfire, syntok and NLTK's Punkt.
Splitting runs in the preparation workers, next to tokenization, because it costs about as
much; text files (one sentence per line) are never re-split.
"""

from __future__ import annotations

import functools
import re

from bertlab.data.instances import build_shard
from bertlab.errors import ConfigError

SPLITTERS = ("spacy", "regex")
MAX_PIECE_CHARS = 100_000  # a "paragraph" longer than this is cut before spaCy sees it
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")  # as bertlab.data.corpus


def check_splitter(name: str) -> None:
    """Fail early, in the main process, if `task.sentence_splitter` cannot run here."""
    if name not in SPLITTERS:
        raise ConfigError(
            f"task.sentence_splitter={name}: allowed values are {', '.join(SPLITTERS)}"
        )
    if name == "spacy":
        try:
            import spacy  # noqa: F401
        except ImportError:
            raise ConfigError(
                "task.sentence_splitter=spacy: needs spaCy (pip install 'bertlab[corpora]'); "
                "task.sentence_splitter=regex needs nothing"
            ) from None


def paragraphs(text: str) -> list[str]:
    """A document's non-blank lines, stripped, cut to MAX_PIECE_CHARS."""
    pieces = []
    for line in text.splitlines():
        line = line.strip()
        pieces.extend(line[i : i + MAX_PIECE_CHARS] for i in range(0, len(line), MAX_PIECE_CHARS))
    return pieces


def split_documents(documents: list, splitter: str | None) -> list[list[str]]:
    """Documents as lists of sentences: lists pass through, strings are split.

    splitter None keeps each whole text as one piece (no next sentence prediction).
    """
    texts = [i for i, document in enumerate(documents) if isinstance(document, str)]
    if not texts:
        return documents
    result = list(documents)
    if splitter is None:
        for i in texts:
            result[i] = [documents[i].strip()] if documents[i].strip() else []
        return result
    # All paragraphs of the chunk go through the splitter at once (spaCy batches them).
    pieces = [paragraphs(documents[i]) for i in texts]
    flat = [piece for document in pieces for piece in document]
    sentences = _SPLIT[splitter](flat)
    start = 0
    for i, document in zip(texts, pieces, strict=True):
        result[i] = [s for paragraph in sentences[start : start + len(document)] for s in paragraph]
        start += len(document)
    return result


def _regex_split(texts: list[str]) -> list[list[str]]:
    return [[s.strip() for s in _SENTENCE_END.split(text) if s.strip()] for text in texts]


def _spacy_split(texts: list[str]) -> list[list[str]]:
    pipeline = _spacy_pipeline()
    return [
        [s.text.strip() for s in doc.sents if s.text.strip()]
        for doc in pipeline.pipe(texts, batch_size=256)
    ]


@functools.cache
def _spacy_pipeline():
    import spacy

    pipeline = spacy.blank("en")  # the tokenizer's rules only: no model to download
    pipeline.add_pipe("sentencizer")
    return pipeline


_SPLIT = {"spacy": _spacy_split, "regex": _regex_split}


def build_shard_from_documents(task: dict) -> dict:
    """Worker entry point: split the chunk's whole documents into sentences, then build_shard."""
    splitter = task["sentence_splitter"]
    task = {**task, "train": split_documents(task["train"], splitter)}
    task["val"] = split_documents(task["val"], splitter)
    counts = build_shard(task)
    counts["documents"] = task["documents"]
    counts["source_bytes"] = task["source_bytes"]
    return counts
