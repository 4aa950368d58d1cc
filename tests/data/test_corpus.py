"""BERT-format pretraining text: documents, bad bytes and lines named, and the text reader's bad
data
through the data steps of bertlab-train.
"""

from __future__ import annotations

import itertools
import re

import pytest

from bertlab.data.corpus import python_documentation, read_corpus_files, read_documents
from bertlab.errors import DataError

from support.bad_data import (
    BAD_BYTES,
    ONE_MB,
    PRETRAINING_TEXT,
    first_data_line,
    lines_of,
    write_lines,
)
from support.runs import run_data_steps, user_error


def test_documents_split_on_blank_line_runs_with_trailing_whitespace_and_no_final_newline(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(
        "First one.  \nSecond one.\t\n\n\n   \nThird one.\n\nFourth one.\nFifth one.",
        encoding="utf-8",
    )
    assert list(read_corpus_files([path])) == [
        ["First one.", "Second one."],
        ["Third one."],
        ["Fourth one.", "Fifth one."],
    ]


def test_leading_blank_lines_make_no_empty_document():
    assert list(read_documents(["\n", "\n", "Only.\n"])) == [["Only."]]


def test_non_utf8_corpus_names_file_and_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Fine line.\nAnother.\n\nCaf\xe9 au lait.\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.txt:4: not UTF-8"):
        list(read_corpus_files([path]))


def test_megabyte_line_is_refused_with_its_line_number(tmp_path):
    path = tmp_path / "huge.txt"
    path.write_text("Short.\n" + "word " * 200_000 + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"huge\.txt:2: line of 1,000,000 characters"):
        list(read_corpus_files([path]))


def test_python_documentation_is_english_prose_and_deterministic():
    first = list(python_documentation())
    sentences = [s for doc in first for s in doc]
    assert len(first) > 300 and len(sentences) > 10_000
    assert sum(map(len, sentences)) > 1_000_000  # about 1.8 MB of text on CPython 3.11
    assert all(len(doc) >= 2 for doc in first)
    assert not any(s.startswith(">>>") for s in sentences)
    assert first[:5] == list(itertools.islice(python_documentation(), 5))


# ---- the text reader's bad data, through the data steps of bertlab-train (issue 8) -----------
# The same cases as every reader's (tests/data/test_readers.py); a 1 MB line is an error here,
# where a line is one sentence.


@pytest.mark.parametrize("name", [PRETRAINING_TEXT])
def test_valid_data_passes(prepared, name):
    _, cfg, _ = prepared(name)
    run_data_steps(cfg)


@pytest.mark.parametrize("name", [PRETRAINING_TEXT])
def test_empty_file(prepared, name):
    reader, cfg, path = prepared(name)
    path.write_bytes(b"")
    message = user_error(cfg)
    assert message.startswith(str(path)) or str(path) in message, message
    assert re.search(r"empty|no examples|not valid JSON|needs more documents|no text", message)


@pytest.mark.parametrize("name", [PRETRAINING_TEXT])
def test_file_not_found(prepared, name):
    reader, cfg, path = prepared(name)
    if path.is_dir():
        for review in path.rglob("*"):
            if review.is_file():
                review.unlink()
        for folder in sorted(path.rglob("*"), reverse=True):
            folder.rmdir()
        path.rmdir()
    else:
        path.unlink()
    message = user_error(cfg)
    assert path.name in message and re.search(r"not found|matches no file|no .* there", message)


@pytest.mark.parametrize("name", [PRETRAINING_TEXT])
def test_bytes_that_are_not_utf8(prepared, name):
    reader, cfg, path = prepared(name)
    content = path.read_bytes()
    lines = content.split(b"\n")
    line = first_data_line(reader, cfg) + 1
    lines[line - 1] = lines[line - 1].replace(b" ", b" " + BAD_BYTES + b" ", 1)
    spoiled = b"\n".join(lines)
    path.write_bytes(spoiled)
    message = user_error(cfg)
    assert message.startswith(f"{path}:{line}: not") and "UTF-8" in message, message


def test_a_megabyte_line_of_pretraining_text_is_an_error(prepared):
    _, cfg, path = prepared("pretraining-text")
    lines = lines_of(path)
    lines[1] = "word " * (ONE_MB // 5)
    write_lines(path, lines)
    assert re.match(rf"{re.escape(str(path))}:2: line of 1,000,000 characters", user_error(cfg))
