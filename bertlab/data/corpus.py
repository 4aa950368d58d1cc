"""Raw pretraining text: documents of sentences, from files or from Python's own documentation.

The corpus format is BERT's: one sentence per line, a blank line between documents.
"""

from __future__ import annotations

import ast
import glob
import re
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

from bertlab.errors import DataError

Document = list[str]

MAX_LINE_CHARS = 100_000  # a "sentence" longer than this is a broken file, not text


def read_documents(lines: Iterable[str], source: str = "<text>") -> Iterator[Document]:
    """Group sentence lines into documents; any run of blank lines ends a document.

    Trailing whitespace is ignored and a missing final newline is fine.
    """
    document: Document = []
    for line_number, line in enumerate(lines, 1):
        sentence = line.strip()
        if len(line) > MAX_LINE_CHARS:
            raise DataError(
                source,
                f"line of {len(line.rstrip(chr(10))):,} characters (limit {MAX_LINE_CHARS:,}); "
                "the format is one sentence per line",
                line_number,
            )
        if sentence:
            document.append(sentence)
        elif document:
            yield document
            document = []
    if document:
        yield document


def corpus_files(pattern: str | list[str]) -> list[Path]:
    """Expand `task.corpus` (a glob, or a list of globs) into a sorted list of files."""
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    files = []
    for item in patterns:
        matched = sorted(Path(p) for p in glob.glob(str(Path(item).expanduser()), recursive=True))
        matched = [p for p in matched if p.is_file()]
        if not matched:
            raise DataError(item, "task.corpus matches no file")
        files.extend(matched)
    return files


def read_corpus_files(files: Iterable[Path]) -> Iterator[Document]:
    for path in files:
        try:
            with open(path, encoding="utf-8") as handle:
                yield from read_documents(handle, source=str(path))
        except UnicodeDecodeError as error:
            line = _line_of_byte(path, error.start)
            raise DataError(
                path, f"not UTF-8 text (byte {error.object[error.start]:#x})", line
            ) from None


def _line_of_byte(path: Path, byte_offset: int) -> int:
    """1-based line of a byte offset within the chunk that failed to decode (approximate for big
    files).
    """
    with open(path, "rb") as handle:
        return handle.read(byte_offset + 1).count(b"\n") + 1


# ---------------------------------------------------------------------------
# The default corpus: Python's documentation, shipped with the interpreter.

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")
_CODE_LINE = re.compile(r"^\s*(>>>|\.\.\.|\$ |[|+]-|-{3,}|={3,}|\.\. )")


def python_documentation() -> Iterator[Document]:
    """English documents from this interpreter: pydoc topics, then standard-library docstrings.

    Docstrings are read by parsing source with `ast` (fast, no imports, no side effects).
    Each docstring of two or more sentences is a document, so "next sentence" means the
    next sentence of the same docstring; a module's one-sentence docstrings together make
    one more document. (A whole module as one document made most "next" pairs cross from
    one function's docstring to another's, which next sentence prediction can hardly tell
    from a random pair.) The result is deterministic for a given Python version.
    """
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield from _documents_from_text(topics[name])
    for path in _stdlib_sources():
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue  # a few stdlib files are deliberately invalid (test data)
        one_liners = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                sentences = _sentences(ast.get_docstring(node) or "")
                if len(sentences) >= 2:
                    yield sentences
                else:
                    one_liners.extend(sentences)
        if len(one_liners) >= 2:
            yield one_liners


def _stdlib_sources() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    skip = {
        "test",
        "tests",
        "idle_test",
        "site-packages",
        "dist-packages",
        "lib2to3",
        "__pycache__",
    }
    return sorted(
        path
        for path in stdlib.rglob("*.py")
        if not skip.intersection(path.relative_to(stdlib).parts)
    )


def _documents_from_text(text: str) -> Iterator[Document]:
    """Split reStructuredText-ish prose into documents at section rules, sentences within."""
    for section in re.split(r"\n\s*[*=~^-]{4,}\s*\n", text):
        sentences = _sentences(section)
        if len(sentences) >= 2:
            yield sentences


def _sentences(text: str) -> list[str]:
    """Prose paragraphs -> sentences; drops code examples, tables and directives."""
    sentences = []
    for paragraph in re.split(r"\n\s*\n", text):
        lines = paragraph.splitlines()
        if (
            not lines
            or any(_CODE_LINE.match(line) for line in lines)
            or lines[0].startswith("    ")
        ):
            continue
        prose = " ".join(line.strip() for line in lines)
        if len(prose.split()) < 4:
            continue
        sentences.extend(s.strip() for s in _SENTENCE_END.split(prose) if len(s.split()) >= 3)
    return sentences


def python_documentation_id() -> str:
    """What the default corpus depends on, for cache keys."""
    return (
        f"python-docs-v2-{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    )


def write_documents(documents: Iterable[Document], path: Path) -> int:
    """Write documents in the corpus format; returns the number of documents."""
    count = 0
    with open(path, "w", encoding="utf-8") as out:
        for document in documents:
            out.write("\n".join(document) + "\n\n")
            count += 1
    return count
