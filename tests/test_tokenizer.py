import subprocess
import sys

import pytest

from bertlab.errors import DataError
from bertlab.tokenizer import load_tokenizer, save_tokenizer, special_ids, train_wordpiece

TEXT = [
    "The Quick brown fox jumps over the lazy dog.",
    "Pack my box with five dozen liquor jugs.",
] * 50


def test_trained_tokenizer_builds_bert_pairs():
    tokenizer = train_wordpiece(TEXT, vocab_size=150, min_frequency=1)
    encoding = tokenizer.encode("the quick fox", "lazy dog")
    assert encoding.tokens[0] == "[CLS]" and encoding.tokens.count("[SEP]") == 2
    assert encoding.type_ids == [0] * 5 + [1] * 3
    assert special_ids(tokenizer).pad == 0


# Words of random letters: many merges tie on their counts, the case that hash order decided.
TIES = """
import random
from bertlab.tokenizer import train_wordpiece
rng = random.Random(0)
words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(3, 7))) for _ in range(300)]
texts = [" ".join(words[i : i + 10]) for i in range(0, 300, 10)] + ["Ünïcödé, ok: x-y z.z"]
tokenizer = train_wordpiece(lambda: iter(texts), vocab_size=200, min_frequency=1)
print(sorted(tokenizer.get_vocab().items(), key=lambda item: item[1]))
"""


def test_the_same_texts_give_the_same_vocabulary_in_every_process():
    """The bare tokenizers trainer gave 4 different vocabularies in 4 processes here."""
    vocabularies = {
        subprocess.run(
            [sys.executable, "-c", TIES], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(4)
    }
    assert len(vocabularies) == 1
    vocabulary = eval(vocabularies.pop())  # noqa: S307 - our own printout
    tokens = [token for token, _ in vocabulary]
    assert len(tokens) == 200 and tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert "##a" in tokens and "##." not in tokens and "##," not in tokens  # "." never continues


def test_continuation_pieces_are_plain_vocabulary_entries():
    """They were numbered as trainer special tokens; the tokenizer must not treat them so."""
    tokenizer = train_wordpiece(TEXT, vocab_size=150, min_frequency=1)
    assert "##o" in tokenizer.get_vocab()
    assert tokenizer.encode("##o").tokens[1:-1] == ["[UNK]", "[UNK]", "o"]  # text, not the piece
    assert tokenizer.decode(tokenizer.encode("jugs").ids) == "jugs"
    added = {token.content for token in tokenizer.get_added_tokens_decoder().values()}
    assert added == {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}


@pytest.mark.parametrize("lowercase", [True, False])
def test_cased_and_uncased(lowercase):
    tokenizer = train_wordpiece(TEXT, vocab_size=150, min_frequency=1, lowercase=lowercase)
    tokens = tokenizer.encode("Quick").tokens
    assert ("quick" in tokens) == lowercase


def test_save_and_reload_from_json_vocab_and_directory(tmp_path):
    tokenizer = train_wordpiece(TEXT, vocab_size=150, min_frequency=1, lowercase=False)
    save_tokenizer(tokenizer, tmp_path)
    expected = tokenizer.encode("The Quick dog", "jugs").ids
    assert load_tokenizer(tmp_path).encode("The Quick dog", "jugs").ids == expected
    assert (
        load_tokenizer(tmp_path / "tokenizer.json").encode("The Quick dog", "jugs").ids == expected
    )
    # a bare vocab.txt with capitalised entries is detected as cased
    assert load_tokenizer(tmp_path / "vocab.txt").encode("The Quick dog", "jugs").ids == expected


def test_vocab_without_special_tokens_is_refused(tmp_path):
    (tmp_path / "vocab.txt").write_text("hello\nworld\n")
    with pytest.raises(ValueError, match=r"no \[PAD\] token"):
        load_tokenizer(tmp_path / "vocab.txt")


def test_duplicate_vocab_entry_names_the_line(tmp_path):
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n[UNK]\n")
    with pytest.raises(ValueError, match=r"vocab.txt:4: duplicate token"):
        load_tokenizer(tmp_path / "vocab.txt")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.json", b"some notes\n", r"notes.json: not a tokenizers JSON file \(expected value"),
        ("config.json", b'{"hidden_size": 768}', r"config.json: not a tokenizers JSON file"),
        ("vocab.txt", b"[PAD]\n\xff\xfe\n", r"vocab.txt:2: not UTF-8 text"),
    ],
)
def test_a_file_that_is_not_a_tokenizer_is_named(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_tokenizer(tmp_path / name)


def test_a_missing_tokenizer_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=r"no tokenizer.json or vocab.txt in this directory"):
        load_tokenizer(tmp_path)
    with pytest.raises(DataError, match=r"nope.json: tokenizer file not found"):
        load_tokenizer(tmp_path / "nope.json")
