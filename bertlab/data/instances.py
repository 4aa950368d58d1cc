"""Pretraining instances and masked-LM masking.

Two recipes: BERT's create_pretraining_data (sentence pairs, half of them with a random
second segment, for next sentence prediction) and, with `nsp=False`, RoBERTa's
FULL-SENTENCES (whole sentences packed up to max_seq_length, crossing document boundaries
with a [SEP] between documents; masked LM only).

Instances are built once and stored in shards (`write_shard`): the token ids of segment A
then segment B, concatenated, plus an index row per instance. Masking happens when an
instance is read (`mask_tokens`), from a random generator keyed by (seed, epoch, index):
the same key gives the same mask, so "static" masking (epoch fixed at 0, `dupe_factor`
differently-cut copies) and "dynamic" masking (a fresh mask each epoch) are one code path.

This module imports only numpy and tokenizers so that preparation workers start fast.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

# Index columns of a shard: where the instance's tokens start, the lengths of A and B,
# and whether B is a random segment from another document (the NSP label, 1 = random).
OFFSET, LENGTH_A, LENGTH_B, IS_RANDOM_NEXT = range(4)

# Part of the cache key: bump it when a change here changes the instances built from a corpus.
RECIPE_VERSION = 2


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


def tokenize_documents(documents: list[list[str]], tokenizer: Tokenizer) -> list[list[list[int]]]:
    """Documents of sentences -> documents of token-id lists (empty sentences dropped)."""
    sentences = [s for doc in documents for s in doc]
    ids = [enc.ids for enc in tokenizer.encode_batch(sentences, add_special_tokens=False)]
    tokenized, start = [], 0
    for doc in documents:
        tokenized.append([s for s in ids[start : start + len(doc)] if s])
        start += len(doc)
    return [doc for doc in tokenized if doc]


def create_instances(
    documents: list[list[list[int]]],
    settings: InstanceSettings,
    rng: random.Random,
    extra_random_documents: list[list[list[int]]] = (),
) -> list[tuple[list[int], list[int], bool]]:
    """All (tokens_a, tokens_b, is_random_next) instances, `dupe_factor` passes over the documents.

    Random next segments come from the other documents, and from `extra_random_documents`
    (instances are made only from `documents`).
    """
    pool = [*documents, *extra_random_documents]
    if len(pool) < 2:
        raise ValueError(
            "next sentence prediction needs at least 2 documents (separate them by a blank line)"
        )
    instances = []
    for _ in range(settings.dupe_factor):
        for doc_index in range(len(documents)):
            instances.extend(_instances_from_document(pool, doc_index, settings, rng))
    rng.shuffle(instances)
    return instances


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
    dtype = np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32
    index = np.zeros((len(instances), 4), dtype=np.int64)
    total = sum(len(a) + len(b) for a, b, _ in instances)
    tokens = np.empty(total, dtype=dtype)
    offset = 0
    for row, (a, b, is_random_next) in enumerate(instances):
        tokens[offset : offset + len(a) + len(b)] = a + b
        index[row] = (offset, len(a), len(b), is_random_next)
        offset += len(a) + len(b)
    np.save(f"{path_prefix}.tokens.npy", tokens)
    np.save(f"{path_prefix}.index.npy", index)
    return len(instances)


def build_shard(task: dict) -> dict:
    """Worker entry point: tokenize one chunk of documents and write its train and val shards."""
    tokenizer = Tokenizer.from_str(task["tokenizer_json"])
    settings = InstanceSettings(**task["settings"])
    counts = {}
    documents = {split: tokenize_documents(task[split], tokenizer) for split in ("train", "val")}
    for split in ("train", "val"):
        if split == "val":  # validation is masked once; copies would only repeat it
            settings_split = InstanceSettings(**{**settings.to_dict(), "dupe_factor": 1})
        else:
            settings_split = settings
        # A chunk may hold a single validation document: its random next segments may
        # then come from the chunk's training documents.
        extra = documents["train"] if split == "val" and len(documents["val"]) < 2 else []
        rng = random.Random(f"{settings.seed}-{task['chunk']}-{split}")
        instances = []
        if documents[split] and not settings.nsp:
            separator = tokenizer.token_to_id("[SEP]")
            instances = create_packed_instances(documents[split], settings_split, rng, separator)
        elif documents[split] and len(documents[split]) + len(extra) >= 2:
            instances = create_instances(documents[split], settings_split, rng, extra)
        if instances:
            write_shard(
                instances,
                Path(task["out_dir"]) / f"{split}-{task['chunk']:05d}",
                tokenizer.get_vocab_size(),
            )
        counts[split] = len(instances)
        counts[f"{split}_tokens"] = sum(len(a) + len(b) for a, b, _ in instances)
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
