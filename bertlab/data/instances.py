"""Pretraining instances and masked-LM masking.

Two recipes: BERT's create_pretraining_data (sentence pairs, half of them with a random
second segment, for next sentence prediction) and, with `nsp=False`, RoBERTa's
FULL-SENTENCES (whole sentences packed up to max_seq_length, crossing document boundaries
with a [SEP] between documents; masked LM only).

Sentence pairs are computed on flat token arrays (`TokenizedDocuments`, `pair_instances`):
numpy over all documents at once, not Python lists per sentence; `_instances_from_document`
is the same recipe written as a loop over one document, kept as the readable reference.

Instances are built once and stored in shards (`write_shard`): the token ids of segment A
then segment B, concatenated, plus an index row per instance. Masking happens when an
instance is read (`mask_tokens`), from a random generator keyed by (seed, epoch, index):
the same key gives the same mask, so "static" masking (epoch fixed at 0, `dupe_factor`
differently-cut copies) and "dynamic" masking (a fresh mask each epoch) are one code path.

This module imports only numpy and tokenizers so that preparation workers start fast.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Tokenizer

# Index columns of a shard: where the instance's tokens start, the lengths of A and B,
# and whether B is a random segment from another document (the NSP label, 1 = random).
OFFSET, LENGTH_A, LENGTH_B, IS_RANDOM_NEXT = range(4)

# Part of the cache key: bump it when a change here changes the instances built from a corpus.
RECIPE_VERSION = 3


@dataclass(frozen=True)
class InstanceSettings:
    """What determines the instances; part of the shard cache key."""

    max_seq_length: int = 128
    short_seq_prob: float = 0.1
    dupe_factor: int = 5
    seed: int = 12345
    nsp: bool = True  # sentence pairs for next sentence prediction; False: packed full sentences

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TokenizedDocuments:
    """Documents of tokenized sentences as flat arrays, so that pairing is array arithmetic.

    Sentence `s` is `tokens[sentence_starts[s] : sentence_starts[s + 1]]`; document `d` holds
    sentences `document_starts[d]` to `document_starts[d + 1] - 1`. No sentence or document
    is empty.
    """

    tokens: np.ndarray  # (T,) int32
    sentence_starts: np.ndarray  # (S + 1,) int64, offsets into tokens
    document_starts: np.ndarray  # (D + 1,) int64, offsets into sentences

    def __len__(self) -> int:
        return len(self.document_starts) - 1

    @classmethod
    def from_lists(cls, documents: list[list[list[int]]]) -> TokenizedDocuments:
        sentences = [s for doc in documents for s in doc if s]
        counts = [sum(1 for s in doc if s) for doc in documents]
        return cls(
            np.fromiter(itertools.chain.from_iterable(sentences), np.int32),
            _offsets([len(s) for s in sentences]),
            _offsets([c for c in counts if c]),
        )

    def to_lists(self) -> list[list[list[int]]]:
        starts, tokens = self.sentence_starts, self.tokens.tolist()
        return [
            [tokens[starts[s] : starts[s + 1]] for s in range(first, end)]
            for first, end in itertools.pairwise(self.document_starts.tolist())
        ]

    def concatenate(self, other: TokenizedDocuments) -> TokenizedDocuments:
        """These documents, then `other`'s."""
        return TokenizedDocuments(
            np.concatenate([self.tokens, other.tokens]),
            np.concatenate([self.sentence_starts, other.sentence_starts[1:] + len(self.tokens)]),
            np.concatenate(
                [
                    self.document_starts,
                    other.document_starts[1:] + len(self.sentence_starts) - 1,
                ]
            ),
        )


def _offsets(lengths) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)


# Joins a document's sentences for one encode call per document; never in the vocabulary.
SENTENCE_BOUNDARY = "[bertlab:sentence-boundary]"


def tokenize_documents(documents: list[list[str]], tokenizer: Tokenizer) -> TokenizedDocuments:
    """Documents of sentences -> flat token arrays (empty sentences and documents dropped).

    Each document is encoded as one text, its sentences joined by a special token that marks
    where one ends (fewer, longer texts for the Rust tokenizer; the same ids as encoding each
    sentence, since the pre-tokenizer splits at whitespace anyway), by a copy of `tokenizer`
    that has that token. A document whose text holds the marker itself is encoded sentence
    by sentence.
    """
    marked = Tokenizer.from_str(tokenizer.to_str())
    marked.no_truncation()
    marked.no_padding()
    marked.add_special_tokens([AddedToken(SENTENCE_BOUNDARY, special=True, normalized=False)])
    boundary = marked.token_to_id(SENTENCE_BOUNDARY)
    texts = [f" {SENTENCE_BOUNDARY} ".join(doc) for doc in documents]
    ids = [enc.ids for enc in marked.encode_batch(texts, add_special_tokens=False)]
    for d, doc in enumerate(documents):
        if ids[d].count(boundary) != len(doc) - 1:  # a sentence holds the marker text
            sentences = tokenizer.encode_batch(doc, add_special_tokens=False)
            ids[d] = [t for enc in sentences for t in (*enc.ids, boundary)][:-1]
    flat = np.fromiter(itertools.chain.from_iterable(ids), np.int32)
    document_of_token = np.repeat(np.arange(len(ids)), [len(i) for i in ids])
    is_boundary = flat == boundary
    # Sentence number of each token: the boundaries before it, plus one per earlier document.
    sentence = np.cumsum(is_boundary) - is_boundary + document_of_token
    lengths = np.bincount(sentence[~is_boundary], minlength=sum(len(doc) for doc in documents))
    kept = lengths > 0
    sentence_document = np.repeat(np.arange(len(documents)), [len(doc) for doc in documents])
    per_document = np.bincount(sentence_document[kept], minlength=len(documents))
    return TokenizedDocuments(
        flat[~is_boundary], _offsets(lengths[kept]), _offsets(per_document[per_document > 0])
    )


@dataclass(frozen=True)
class Instances:
    """Sentence-pair instances as token ranges of a TokenizedDocuments' `tokens`."""

    a_start: np.ndarray
    a_length: np.ndarray
    b_start: np.ndarray
    b_length: np.ndarray
    is_random_next: np.ndarray

    def __len__(self) -> int:
        return len(self.a_start)

    def take(self, rows: np.ndarray) -> Instances:
        return Instances(*(getattr(self, f.name)[rows] for f in fields(self)))

    def to_lists(self, tokens: np.ndarray) -> list[tuple[list[int], list[int], bool]]:
        return [
            (tokens[a : a + la].tolist(), tokens[b : b + lb].tolist(), bool(r))
            for a, la, b, lb, r in zip(
                self.a_start,
                self.a_length,
                self.b_start,
                self.b_length,
                self.is_random_next,
                strict=True,
            )
        ]


def create_instances(
    documents: list[list[list[int]]],
    settings: InstanceSettings,
    rng: random.Random,
    extra_random_documents: list[list[list[int]]] = (),
) -> list[tuple[list[int], list[int], bool]]:
    """`pair_instances` on lists: (tokens_a, tokens_b, is_random_next) tuples."""
    pool = TokenizedDocuments.from_lists([*documents, *extra_random_documents])
    own = sum(1 for doc in documents if any(doc))
    generator = np.random.default_rng(rng.getrandbits(64))
    return pair_instances(pool, own, settings, generator).to_lists(pool.tokens)


def pair_instances(
    pool: TokenizedDocuments, own: int, settings: InstanceSettings, rng: np.random.Generator
) -> Instances:
    """BERT's sentence pairs from the first `own` documents of `pool`, `dupe_factor` passes,
    shuffled; random next segments come from any other document of the pool.

    The recipe of `_instances_from_document` (kept as the readable reference), computed for
    every (pass, document) at once. The random draws come in another order than the
    per-document loop's, so the instances are the same in distribution, not draw for draw.
    """
    if len(pool) < 2:
        raise ValueError(
            "next sentence prediction needs at least 2 documents (separate them by a blank line)"
        )
    if own == 0:
        return Instances(*(np.zeros(0, dtype=np.int64) for _ in range(4)), np.zeros(0, bool))
    max_num_tokens = settings.max_seq_length - 3  # [CLS] A [SEP] B [SEP]
    document = np.tile(np.arange(own), settings.dupe_factor)
    short = rng.random(len(document)) < settings.short_seq_prob
    target = np.where(short, rng.integers(2, max_num_tokens + 1, len(document)), max_num_tokens)
    chunk_document, chunk_target, first, last = _chunks(pool, document, target)

    count = last - first + 1
    is_random_next = rng.random(len(count)) < 0.5
    # A one-sentence chunk (a one-sentence document) has no next sentence: it makes no instance.
    keep = (count > 1) | is_random_next
    chunk_document, chunk_target, first, last, count, is_random_next = (
        array[keep] for array in (chunk_document, chunk_target, first, last, count, is_random_next)
    )
    a_sentences = np.where(count >= 2, rng.integers(1, np.maximum(count, 2)), 1)
    starts = pool.sentence_starts
    a_start = starts[first]
    a_length = starts[first + a_sentences] - a_start
    b_start, b_length = starts[first + a_sentences], starts[last + 1] - starts[first + a_sentences]
    random_start, random_length = _random_segments(
        pool, chunk_document[is_random_next], (chunk_target - a_length)[is_random_next], rng
    )
    b_start[is_random_next], b_length[is_random_next] = random_start, random_length
    instances = _truncate(
        Instances(a_start, a_length, b_start, b_length, is_random_next), max_num_tokens, rng
    )
    return instances.take(rng.permutation(len(instances)))


def _chunks(pool: TokenizedDocuments, document: np.ndarray, target: np.ndarray):
    """Cut each (pass, document) into chunks of sentences: one instance each.

    A chunk closes at the first sentence where it holds `target` tokens and two sentences
    and leaves at least two sentences of the document, or at the document's last sentence.
    Returns, per chunk: its document, target length, first and last sentence. One loop step
    per chunk of the longest document; the cut is a search in the cumulative lengths.
    """
    starts = pool.sentence_starts
    last = pool.document_starts[document + 1] - 1
    start = pool.document_starts[document].copy()
    open_rows = np.arange(len(document))
    pieces = []
    while len(open_rows):
        first, end = start[open_rows], last[open_rows]
        # Sentences first..i hold target tokens from i = (first sentence end >= start + target).
        enough = np.searchsorted(starts, starts[first] + target[open_rows], side="left") - 1
        close = np.maximum(enough, first + 1)
        close = np.where(close <= end - 2, close, end)
        pieces.append((open_rows, first, close))
        start[open_rows] = close + 1
        open_rows = open_rows[close < end]
    rows, first, close = (np.concatenate(column) for column in zip(*pieces, strict=True))
    return document[rows], target[rows], first, close


def _random_segments(
    pool: TokenizedDocuments, document: np.ndarray, target: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """From a random point of a random *other* document: whole sentences, up to `target` tokens
    (at least one sentence). Returns token starts and lengths.
    """
    other = rng.integers(0, len(pool) - 1, len(document))
    other += other >= document  # skip the current document
    first_sentence = pool.document_starts[other]
    sentences = pool.document_starts[other + 1] - first_sentence
    first = first_sentence + (rng.random(len(other)) * sentences).astype(np.int64)
    starts = pool.sentence_starts
    end = np.searchsorted(starts, starts[first] + target, side="left") - 1
    end = np.clip(end, first, first_sentence + sentences - 1)
    return starts[first], starts[end + 1] - starts[first]


def _truncate(instances: Instances, max_num_tokens: int, rng: np.random.Generator) -> Instances:
    """`truncate_pair` for every instance at once.

    Trimming always takes a token from the longer segment (B on a tie), so how many each
    loses is fixed: the longer one down to the shorter's length, then the two in turn, B
    first. Only the end each token comes from is random, a fair coin per token, so the
    number taken from the front is binomial.
    """
    a_length, b_length = instances.a_length, instances.b_length
    excess = np.maximum(a_length + b_length - max_num_tokens, 0)
    gap = np.minimum(np.abs(a_length - b_length), excess)
    rest = excess - gap
    from_a = np.where(a_length > b_length, gap, 0) + rest // 2
    from_b = excess - from_a
    a_front = rng.binomial(from_a, 0.5)
    b_front = rng.binomial(from_b, 0.5)
    return Instances(
        instances.a_start + a_front,
        a_length - from_a,
        instances.b_start + b_front,
        b_length - from_b,
        instances.is_random_next,
    )


def create_packed_instances(
    documents: list[list[list[int]]],
    settings: InstanceSettings,
    rng: random.Random,
    separator: int,
) -> list[tuple[list[int], list[int], bool]]:
    """RoBERTa's FULL-SENTENCES inputs as (tokens, [], False), `dupe_factor` passes.

    Whole sentences are packed until the next one would not fit in max_seq_length - 2
    tokens ([CLS] ... [SEP]); a segment continues into the next document after a
    `separator` token, as RoBERTa's does (Liu et al. 2019, section 4.2). Each pass takes the
    documents in a new order, so copies are cut differently. A sentence longer than a whole
    segment is cut to fit.
    """
    max_num_tokens = settings.max_seq_length - 2
    instances = []
    for _ in range(settings.dupe_factor):
        order = list(range(len(documents)))
        rng.shuffle(order)
        segment: list[int] = []
        target = _target_length(max_num_tokens, settings, rng)
        for doc_index in order:
            if segment:
                segment.append(separator)  # a document boundary inside the segment
            for sentence in documents[doc_index]:
                if segment and len(segment) + len(sentence) > target:
                    _close_segment(segment, separator, instances)
                    segment, target = [], _target_length(max_num_tokens, settings, rng)
                segment.extend(sentence[:max_num_tokens])
        _close_segment(segment, separator, instances)
    rng.shuffle(instances)
    return instances


def _target_length(max_num_tokens: int, settings: InstanceSettings, rng: random.Random) -> int:
    """Mostly fill the sequence; sometimes a shorter one, like the short inputs of fine-tuning."""
    if rng.random() < settings.short_seq_prob:
        return rng.randint(2, max_num_tokens)
    return max_num_tokens


def _close_segment(segment: list[int], separator: int, instances: list) -> None:
    tokens = segment[:-1] if segment[-1:] == [separator] else segment
    if tokens:
        instances.append((tokens, [], False))


def _instances_from_document(documents, doc_index, settings: InstanceSettings, rng: random.Random):
    document = documents[doc_index]
    max_num_tokens = settings.max_seq_length - 3  # [CLS] A [SEP] B [SEP]
    target_length = _target_length(max_num_tokens, settings, rng)

    # Each chunk of sentences makes exactly one instance, "random next" or not, and both
    # outcomes consume the same sentences; so the NSP labels stay 50/50 whatever the
    # documents' lengths. The original script departs from that in three places, which
    # skew its labels towards "random" (to 60% on docstring-sized documents): it puts a
    # random pair's unused sentences back to start the next chunk, it makes a one-sentence
    # chunk always random, and it leaves a document's last sentence alone in its own chunk.
    instances, chunk, chunk_length, i = [], [], 0, 0
    while i < len(document):
        chunk.append(document[i])
        chunk_length += len(document[i])
        remaining = len(document) - 1 - i
        # Close the chunk when it is long enough, has two sentences (A and a possible B) and
        # does not leave the document's last sentence alone.
        if remaining == 0 or (chunk_length >= target_length and len(chunk) >= 2 and remaining >= 2):
            is_random_next = rng.random() < 0.5
            if len(chunk) == 1 and not is_random_next:
                break  # a one-sentence document has no next sentence; this pass skips it
            a_end = 1 if len(chunk) < 2 else rng.randint(1, len(chunk) - 1)
            tokens_a = [t for sentence in chunk[:a_end] for t in sentence]
            if is_random_next:  # the chunk's unused sentences are left to the other passes
                tokens_b = _random_segment(documents, doc_index, target_length - len(tokens_a), rng)
            else:
                tokens_b = [t for sentence in chunk[a_end:] for t in sentence]
            truncate_pair(tokens_a, tokens_b, max_num_tokens, rng)
            instances.append((tokens_a, tokens_b, is_random_next))
            chunk, chunk_length = [], 0
        i += 1
    return instances


def _random_segment(documents, doc_index: int, target_length: int, rng: random.Random) -> list[int]:
    """Sentences from a random point of a random *other* document, up to target_length tokens."""
    other = rng.randrange(len(documents) - 1)
    other += other >= doc_index  # skip the current document
    random_document = documents[other]
    tokens: list[int] = []
    for sentence in random_document[rng.randrange(len(random_document)) :]:
        tokens.extend(sentence)
        if len(tokens) >= target_length:
            break
    return tokens


def truncate_pair(
    tokens_a: list[int], tokens_b: list[int], max_num_tokens: int, rng: random.Random
) -> None:
    """Trim the longer segment, randomly from its front or back, until the pair fits."""
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def write_shard(instances, path_prefix: Path, vocab_size: int) -> int:
    """Store instances as `<prefix>.tokens.npy` (A then B, concatenated) and
    `<prefix>.index.npy`.
    """
    index = np.zeros((len(instances), 4), dtype=np.int64)
    total = sum(len(a) + len(b) for a, b, _ in instances)
    tokens = np.empty(total, dtype=_token_dtype(vocab_size))
    offset = 0
    for row, (a, b, is_random_next) in enumerate(instances):
        tokens[offset : offset + len(a) + len(b)] = a + b
        index[row] = (offset, len(a), len(b), is_random_next)
        offset += len(a) + len(b)
    _save_shard(path_prefix, tokens, index)
    return len(instances)


def write_pair_shard(
    instances: Instances, tokens: np.ndarray, path_prefix: Path, vocab_size: int
) -> int:
    """`write_shard` for `pair_instances`' ranges of `tokens`, in one gather."""
    lengths = np.stack([instances.a_length, instances.b_length], axis=1).ravel()
    starts = np.stack([instances.a_start, instances.b_start], axis=1).ravel()
    offsets = np.cumsum(lengths) - lengths
    gather = np.repeat(starts - offsets, lengths) + np.arange(lengths.sum())
    index = np.stack(
        [offsets[0::2], instances.a_length, instances.b_length, instances.is_random_next], axis=1
    ).astype(np.int64)
    _save_shard(path_prefix, tokens[gather].astype(_token_dtype(vocab_size)), index)
    return len(instances)


def _token_dtype(vocab_size: int) -> type:
    return np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32


def _save_shard(path_prefix: Path, tokens: np.ndarray, index: np.ndarray) -> None:
    np.save(f"{path_prefix}.tokens.npy", tokens)
    np.save(f"{path_prefix}.index.npy", index)


def build_shard(task: dict) -> dict:
    """Worker entry point: tokenize one chunk of documents and write its train and val shards."""
    tokenizer = Tokenizer.from_str(task["tokenizer_json"])
    vocab_size, separator = tokenizer.get_vocab_size(), tokenizer.token_to_id("[SEP]")
    settings = InstanceSettings(**task["settings"])
    documents = {split: tokenize_documents(task[split], tokenizer) for split in ("train", "val")}
    counts = {}
    for number, split in enumerate(("train", "val")):
        if split == "val":  # validation is masked once; copies would only repeat it
            settings = replace(settings, dupe_factor=1)
        prefix = Path(task["out_dir"]) / f"{split}-{task['chunk']:05d}"
        own = documents[split]
        written, tokens = 0, 0
        if len(own) and not settings.nsp:
            rng = random.Random(f"{settings.seed}-{task['chunk']}-{split}")
            instances = create_packed_instances(own.to_lists(), settings, rng, separator)
            if instances:
                written = write_shard(instances, prefix, vocab_size)
                tokens = sum(len(a) for a, _, _ in instances)
        elif len(own) and settings.nsp:
            # A chunk may hold a single validation document: its random next segments may
            # then come from the chunk's training documents.
            pool = own.concatenate(documents["train"]) if split == "val" and len(own) < 2 else own
            if len(pool) >= 2:
                rng = np.random.default_rng([settings.seed, task["chunk"], number])
                pairs = pair_instances(pool, len(own), settings, rng)
                written = write_pair_shard(pairs, pool.tokens, prefix, vocab_size)
                tokens = int(pairs.a_length.sum() + pairs.b_length.sum())
        counts[split], counts[f"{split}_tokens"] = written, tokens
    counts["chars"] = task["chars"]
    return counts


@dataclass(frozen=True)
class MaskingSettings:
    """Which tokens a masked LM predicts, and what it reads in their place.

    `masked_lm_prob` of the tokens (at most `max_predictions_per_seq`, None: no cap) are
    predicted; of those, `mask_token_prob` read [MASK], `random_token_prob` a random token,
    and the rest the token itself (BERT: 0.15, 0.8, 0.1, 0.1).
    """

    masked_lm_prob: float = 0.15
    max_predictions_per_seq: int | None = 20
    whole_word_masking: bool = False
    mask_token_prob: float = 0.8
    random_token_prob: float = 0.1

    def at_bert_rate(self) -> MaskingSettings:
        """The same masking at BERT's rate and split: the yardstick runs at any rate compare on."""
        return replace(self, masked_lm_prob=0.15, mask_token_prob=0.8, random_token_prob=0.1)


def mask_tokens(
    input_ids: np.ndarray,
    candidate: np.ndarray,
    word_start: np.ndarray | None,
    settings: MaskingSettings,
    mask_id: int,
    replacement_ids: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BERT masking of one sequence: returns (masked input ids, positions, original ids).

    `candidate` marks maskable positions (not [CLS]/[SEP]). With whole-word masking,
    `word_start` marks tokens that begin a word, and a word's pieces are masked together.
    Of the chosen positions `mask_token_prob` become [MASK], `random_token_prob` a random
    token, the rest stay unchanged (BERT: 80%, 10%, 10%).
    """
    num_to_predict = max(1, round(len(input_ids) * settings.masked_lm_prob))
    if settings.max_predictions_per_seq is not None:
        num_to_predict = min(settings.max_predictions_per_seq, num_to_predict)
    positions = np.flatnonzero(candidate)
    if settings.whole_word_masking and word_start is not None:
        starts = word_start[positions] | (np.arange(len(positions)) == 0)
        words = np.split(positions, np.flatnonzero(starts)[1:])
        chosen: list[int] = []
        for w in rng.permutation(len(words)):
            if len(chosen) >= num_to_predict:
                break
            if len(chosen) + len(words[w]) <= num_to_predict:
                chosen.extend(words[w])
        masked_positions = np.sort(np.asarray(chosen, dtype=np.int64))
    else:
        masked_positions = np.sort(rng.permutation(positions)[:num_to_predict])

    labels = input_ids[masked_positions].copy()
    masked = input_ids.copy()
    roll = rng.random(len(masked_positions))
    masked[masked_positions[roll < settings.mask_token_prob]] = mask_id
    # The top of the roll, so that BERT's 80/10/10 split draws what it always drew.
    randomized = masked_positions[roll >= 1 - settings.random_token_prob]
    masked[randomized] = replacement_ids[rng.integers(len(replacement_ids), size=len(randomized))]
    return masked, masked_positions, labels
