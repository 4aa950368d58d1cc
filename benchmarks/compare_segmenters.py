"""Sentence segmenters on real prose: speed, and boundary errors on a hand-checked sample.

The prose is the default corpus' (Python's documentation: pydoc topics and standard-library
docstrings), cut into paragraphs the way bertlab/data/corpus.py does, code examples
dropped. The sample (benchmarks/sentence_sample.json) is 22 of those paragraphs, 61
sentences split by hand. Each segmenter that is installed is timed over the same
paragraphs (sentences/s and MB/s, median of 3 passes over at most `--kilobytes` of prose)
and scored on the sample: a boundary is the position, in non-space characters, where one
sentence ends; missed = a gold boundary it does not make, false = a split the gold lacks.

    pip install pysbd blingfire syntok nltk spacy     # whichever you want compared
    python benchmarks/compare_segmenters.py
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from bertlab.data.corpus import _CODE_LINE, _SENTENCE_END, _stdlib_sources

SAMPLE = Path(__file__).with_name("sentence_sample.json")
Segmenter = Callable[[str], list[str]]


def prose_paragraphs() -> list[str]:
    """The default corpus' paragraphs of prose, lines joined, before sentence splitting."""
    from pydoc_data.topics import topics

    texts = [topics[name] for name in sorted(topics)]
    for path in _stdlib_sources():
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                texts.append(ast.get_docstring(node) or "")
    paragraphs = []
    for text in texts:
        for paragraph in re.split(r"\n\s*\n", text):
            lines = paragraph.splitlines()
            if not lines or any(_CODE_LINE.match(line) for line in lines):
                continue
            prose = " ".join(line.strip() for line in lines)
            if len(prose.split()) >= 4:
                paragraphs.append(prose)
    return paragraphs


def segmenters() -> dict[str, Segmenter | str]:
    """name -> split function, or the reason it cannot run here."""
    found: dict[str, Segmenter | str] = {
        "bertlab regex (corpus._sentences)": lambda text: _SENTENCE_END.split(text)
    }
    try:
        import pysbd

        pysbd_segmenter = pysbd.Segmenter(language="en", clean=False)
        found["pysbd 0.3"] = pysbd_segmenter.segment
    except ImportError:
        found["pysbd"] = "not installed"
    try:
        import blingfire

        found["blingfire"] = lambda text: blingfire.text_to_sentences(text).split("\n")
    except ImportError:
        found["blingfire"] = "not installed"
    try:
        from syntok import segmenter as syntok_segmenter

        def syntok_split(text: str) -> list[str]:
            return [
                "".join(token.spacing + token.value for token in sentence).strip()
                for paragraph in syntok_segmenter.analyze(text)
                for sentence in paragraph
            ]

        found["syntok"] = syntok_split
    except ImportError:
        found["syntok"] = "not installed"
    try:
        import nltk
        from nltk.tokenize.punkt import PunktSentenceTokenizer

        try:
            nltk.sent_tokenize("Try it. Now.")
            found["nltk punkt (pretrained English)"] = nltk.sent_tokenize
        except LookupError:
            found["nltk punkt (pretrained English)"] = (
                "needs nltk.download('punkt_tab'): a download, unusable offline"
            )
        found["nltk punkt, untrained"] = PunktSentenceTokenizer().tokenize
    except ImportError:
        found["nltk punkt"] = "not installed"
    try:
        import spacy

        nlp = spacy.blank("en")
        nlp.add_pipe("sentencizer")
        found["spaCy sentencizer"] = lambda text: [s.text for s in nlp(text).sents]
    except ImportError:
        found["spaCy sentencizer"] = "not installed"
    return found


def boundaries(sentences: list[str]) -> set[int]:
    """Where each sentence but the last ends, counted in non-space characters."""
    ends, position = set(), 0
    for sentence in sentences[:-1]:
        position += len("".join(sentence.split()))
        ends.add(position)
    return ends


def score(split: Segmenter, sample: list[dict]) -> dict:
    missed = false = correct = exact = 0
    examples = []
    for item in sample:
        gold = boundaries(item["sentences"])
        found = boundaries([s for s in split(item["text"]) if s.strip()])
        correct += len(gold & found)
        missed += len(gold - found)
        false += len(found - gold)
        exact += gold == found
        if gold != found and len(examples) < 3:
            examples.append(item["text"][:70])
    return {
        "boundaries": sum(len(item["sentences"]) - 1 for item in sample),
        "correct": correct,
        "missed": missed,
        "false": false,
        "exact_paragraphs": exact,
        "examples": examples,
    }


def speed(split: Segmenter, paragraphs: list[str], kilobytes: float) -> tuple[float, float]:
    """(sentences/s, MB/s), median of 3 passes over the first `kilobytes` of prose."""
    budget, chosen = kilobytes * 1000, []
    for paragraph in paragraphs:
        chosen.append(paragraph)
        budget -= len(paragraph)
        if budget <= 0:
            break
    size = sum(map(len, chosen))
    seconds, count = [], 0
    for _ in range(3):
        started = time.perf_counter()
        count = sum(len(split(p)) for p in chosen)
        seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds)
    return count / median, size / median / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kilobytes", type=float, default=300, help="prose timed per segmenter")
    args = parser.parse_args()
    sample = json.loads(SAMPLE.read_text(encoding="utf-8"))
    paragraphs = prose_paragraphs()
    print(f"prose: {len(paragraphs):,} paragraphs, {sum(map(len, paragraphs)) / 1e6:.2f} MB")
    print(
        f"{'segmenter':36} {'sent/s':>9} {'MB/s':>6}  sample boundaries: right missed false, exact "
        "paragraphs"
    )
    for name, split in segmenters().items():
        if isinstance(split, str):
            print(f"{name:36} {split}")
            continue
        sentences_per_second, megabytes_per_second = speed(split, paragraphs, args.kilobytes)
        result = score(split, sample)
        print(
            f"{name:36} {sentences_per_second:9,.0f} {megabytes_per_second:6.2f}  "
            f"{result['correct']:>2}/{result['boundaries']}  {result['missed']:>6} "
            f"{result['false']:>5} {result['exact_paragraphs']:>3}/{len(sample)}"
        )
        for example in result["examples"]:
            print(f"{'':38}wrong: {example}...")


if __name__ == "__main__":
    main()
