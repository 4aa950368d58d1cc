import itertools

import pytest

from bertlab.data.corpus import python_documentation, read_corpus_files, read_documents
from bertlab.errors import DataError


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
