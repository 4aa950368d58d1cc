"""WordPiece tokenizers on the `tokenizers` library: train, load, save.

Every bertlab tokenizer is a plain `tokenizers.Tokenizer` whose post-processor
builds BERT inputs, so `tokenizer.encode(a, b)` returns
``[CLS] a [SEP] b [SEP]`` with segment ids in `type_ids`. Special tokens are
always looked up by their string (`special_ids`), because a trained vocabulary
puts [PAD] at 0 while Google's uncased vocab.txt puts [CLS] at 101.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from bertlab.atomic import write_text_atomically
from bertlab.errors import DataError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.txt"


@dataclass(frozen=True)
class SpecialIds:
    pad: int
    unk: int
    cls: int
    sep: int
    mask: int


def special_ids(tokenizer: Tokenizer, source: str | Path = "tokenizer") -> SpecialIds:
    """The ids of BERT's special tokens; `source` names the tokenizer's file in the error."""
    ids = {}
    for name, token in zip(("pad", "unk", "cls", "sep", "mask"), SPECIAL_TOKENS, strict=True):
        token_id = tokenizer.token_to_id(token)
        if token_id is None:
            raise DataError(
                source, f"tokenizer has no {token} token; a BERT vocabulary needs {SPECIAL_TOKENS}"
            )
        ids[name] = token_id
    return SpecialIds(**ids)


def _bert_pipeline(tokenizer: Tokenizer, lowercase: bool) -> Tokenizer:
    # strip_accents follows lowercase, as in Google's uncased/cased BERT releases.
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=lowercase, lowercase=lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


def _add_post_processor(tokenizer: Tokenizer) -> Tokenizer:
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tokenizer


def train_wordpiece(
    texts: Iterable[str] | Callable[[], Iterable[str]],
    vocab_size: int = 8000,
    lowercase: bool = True,
    min_frequency: int = 2,
) -> Tokenizer:
    """Learn a WordPiece vocabulary of at most `vocab_size` entries from `texts`, reproducibly.

    `texts` is read twice: pass a function returning a fresh iterable (or a list).

    The same texts give the same vocabulary in every process. The `tokenizers` trainer
    alone does not: it numbers the "##" continuation pieces ("##s", "##e", ...) in
    hash-map order as it meets them, and those numbers break ties between equally
    frequent merges, so two runs can learn different vocabularies
    (huggingface/tokenizers#1794, fix pending in #2066). Numbering them in advance, as
    trainer special tokens in sorted order, leaves nothing to hash order; they are
    ordinary vocabulary entries of the returned tokenizer.
    """
    if not callable(texts) and not isinstance(texts, (list, tuple)):
        texts = list(texts)  # a one-shot iterator: keep it for the second pass
    read = texts if callable(texts) else (lambda: texts)
    pipeline = _bert_pipeline(Tokenizer(models.WordPiece(unk_token="[UNK]")), lowercase)
    pieces = _continuation_pieces(read(), pipeline)
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS + pieces,
        continuing_subword_prefix="##",
        show_progress=False,
    )
    pipeline.train_from_iterator(_batched(read()), trainer=trainer)
    # The same vocabulary without the pieces registered as special (added) tokens.
    tokenizer = Tokenizer(
        models.WordPiece(
            vocab=pipeline.get_vocab(with_added_tokens=False),
            unk_token="[UNK]",
            max_input_chars_per_word=100,
        )
    )
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    return _add_post_processor(_bert_pipeline(tokenizer, lowercase))


def _continuation_pieces(texts: Iterable[str], pipeline: Tokenizer) -> list[str]:
    """'##c' for every character c that can continue a word, sorted: the characters of the
    texts after normalization, less those the pre-tokenizer always splits off (whitespace,
    punctuation, CJK ideographs). A character that happens to start every word it is in
    still gets its piece, unused: the price of not tokenizing the texts twice."""
    characters: set[str] = set()
    for text in texts:
        characters.update(text)
    normalized = {c for raw in characters for c in pipeline.normalizer.normalize_str(raw)}
    return sorted(f"##{c}" for c in normalized if _continues_words(c, pipeline))


def _continues_words(character: str, pipeline: Tokenizer) -> bool:
    """Whether `character` stays inside a word: "a" + character + "a" is one pre-token."""
    text = pipeline.normalizer.normalize_str(f"a{character}a")
    return len(pipeline.pre_tokenizer.pre_tokenize_str(text)) == 1


def _batched(texts: Iterable[str], size: int = 1000) -> Iterator[list[str]]:
    batch = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def load_tokenizer(path: str | Path, lowercase: bool | None = None) -> Tokenizer:
    """Load `tokenizer.json`, a `vocab.txt`, or a directory holding either.

    A bare vocab.txt says nothing about casing: `lowercase=None` guesses uncased
    unless the vocabulary contains capitalised words (true of every cased release).
    """
    path = Path(path)
    if path.is_dir():
        for name in (TOKENIZER_FILE, VOCAB_FILE):
            if (path / name).exists():
                return load_tokenizer(path / name, lowercase)
        raise DataError(path, f"no {TOKENIZER_FILE} or {VOCAB_FILE} in this directory")
    if not path.exists():
        raise DataError(path, "tokenizer file not found")
    if path.suffix == ".json":
        tokenizer = _tokenizer_from_json(path)
    else:
        vocab = _read_vocab(path)
        if lowercase is None:
            lowercase = not any(token[:1].isupper() for token in vocab if not token.startswith("["))
        tokenizer = Tokenizer(
            models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100)
        )
        special_ids(tokenizer, path)  # fail now, naming the missing token, not mid-training
        tokenizer = _add_post_processor(_bert_pipeline(tokenizer, lowercase))
    special_ids(tokenizer, path)
    return tokenizer


def _tokenizer_from_json(path: Path) -> Tokenizer:
    try:
        return Tokenizer.from_file(str(path))
    except Exception as error:  # the Rust library raises a bare Exception for any bad file
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(
            path,
            f"not a tokenizers JSON file ({reason}); tokenizer.path takes a {TOKENIZER_FILE}, "
            f"a {VOCAB_FILE} or a directory holding one",
        ) from None


def _read_vocab(path: Path) -> dict[str, int]:
    """One token per line, the line's position its id."""
    vocab: dict[str, int] = {}
    with open(path, "rb") as lines:  # bytes, so a bad byte is reported with its line
        for line_number, raw in enumerate(lines, 1):
            try:
                token = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise DataError(
                    path, "not UTF-8 text; a vocabulary file has one token per line", line_number
                ) from None
            if not token:
                raise DataError(path, "empty line in a vocabulary file", line_number)
            if token in vocab:
                raise DataError(path, f"duplicate token {token!r}", line_number)
            vocab[token] = len(vocab)
    if not vocab:
        raise DataError(path, "empty vocabulary file")
    return vocab


def save_tokenizer(tokenizer: Tokenizer, directory: str | Path) -> Path:
    """Write `tokenizer.json` and `vocab.txt` (ids in order) into `directory`."""
    directory = Path(directory)
    write_text_atomically(directory / TOKENIZER_FILE, tokenizer.to_str(pretty=True))
    vocab = sorted(tokenizer.get_vocab(with_added_tokens=True).items(), key=lambda item: item[1])
    write_text_atomically(directory / VOCAB_FILE, "".join(token + "\n" for token, _ in vocab))
    return directory
