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
