"""Pretraining instances (BERT pairs, RoBERTa full sentences), truncation and masking statistics."""

import random
from collections import Counter

import numpy as np
import pytest

from bertlab.data.instances import (
    Instances,
    InstanceSettings,
    MaskingSettings,
    TokenizedDocuments,
    _instances_from_document,
    _truncate,
    create_instances,
    create_packed_instances,
    mask_tokens,
    pair_instances,
    tokenize_documents,
    truncate_pair,
)
from bertlab.tokenizer import train_wordpiece

MASK_ID = 4


def documents(count: int = 40, seed: int = 0) -> list[list[list[int]]]:
    """Document d uses only token ids in [1000 d, 1000 d + 999], sentence s of it starts at 1000
    d + 50 s.
    """
    rng = random.Random(seed)
    docs = []
    for d in range(count):
        sentences = []
        for s in range(rng.randint(2, 9)):
            start = 1000 * d + 50 * s
            sentences.append(list(range(start, start + rng.randint(3, 30))))
        docs.append(sentences)
    return docs


def test_instances_pair_real_and_random_next_segments():
    settings = InstanceSettings(max_seq_length=64, short_seq_prob=0.1, dupe_factor=5, seed=1)
    instances = create_instances(documents(count=200), settings, random.Random(1))
    labels = np.array([is_random for _, _, is_random in instances])
    assert len(instances) > 1500
    assert 0.46 < labels.mean() < 0.54  # 50/50 (3 standard errors)

    for tokens_a, tokens_b, is_random_next in instances:
        assert tokens_a and tokens_b
        assert len(tokens_a) + len(tokens_b) <= settings.max_seq_length - 3
        same_document = tokens_a[0] // 1000 == tokens_b[0] // 1000
        assert same_document != is_random_next  # random segments always come from another document
        assert all(t // 1000 == tokens_a[0] // 1000 for t in tokens_a)
        if not is_random_next:
            assert max(tokens_a) < min(tokens_b)  # B follows A in the document


def test_nsp_labels_stay_balanced_on_two_sentence_documents():
    """Docstring-sized documents: the original recipe's put-back sentences made 60% "random"."""
    short_documents = [[[1000 * d + 1] * 8, [1000 * d + 2] * 8] for d in range(500)]
    settings = InstanceSettings(max_seq_length=64, short_seq_prob=0.0, dupe_factor=5, seed=3)
    labels = np.array(
        [r for _, _, r in create_instances(short_documents, settings, random.Random(3))]
    )
    assert len(labels) > 2000
    assert abs(labels.mean() - 0.5) < 0.03


def test_short_seq_prob_produces_short_instances():
    long_docs = [
        [list(range(1000 * d + 50 * s, 1000 * d + 50 * s + 20)) for s in range(12)]
        for d in range(30)
    ]
    lengths = lambda p: [  # noqa: E731
        len(a) + len(b)
        for a, b, _ in create_instances(long_docs, InstanceSettings(128, p, 3, 0), random.Random(0))
    ]
    # A chunk holds at least two 20-token sentences, so "short" is 40 to 60 tokens here.
    assert np.mean(np.array(lengths(0.0)) <= 60) < 0.15
    assert np.mean(np.array(lengths(0.5)) <= 60) > 0.25


def test_truncation_removes_from_the_longer_segment():
    a, b = list(range(10)), list(range(100, 103))
    truncate_pair(a, b, 8, random.Random(0))
    assert len(a) + len(b) == 8 and b == [100, 101, 102]
    assert set(a) <= set(range(10))


def test_a_single_document_cannot_make_nsp_pairs():
    with pytest.raises(ValueError, match="at least 2 documents"):
        create_instances(documents(1), InstanceSettings(), random.Random(0))


def test_masking_statistics_match_15_percent_and_80_10_10():
    settings = MaskingSettings(
        masked_lm_prob=0.15, max_predictions_per_seq=80, whole_word_masking=False
    )
    replacement_ids = np.arange(5, 30000)
    rng = np.random.default_rng(0)
    chosen = masked = kept = randomized = total = 0
    for _ in range(3000):
        length = int(rng.integers(20, 128))
        input_ids = rng.integers(5, 30000, size=length)
        candidate = np.ones(length, dtype=bool)
        candidate[[0, length - 1]] = False
        out, positions, labels = mask_tokens(
            input_ids, candidate, None, settings, MASK_ID, replacement_ids, rng
        )
        assert candidate[positions].all() and np.array_equal(labels, input_ids[positions])
        assert np.array_equal(np.delete(out, positions), np.delete(input_ids, positions))
        total += length
        chosen += len(positions)
        masked += int((out[positions] == MASK_ID).sum())
        kept += int((out[positions] == input_ids[positions]).sum())
        randomized += int(
            ((out[positions] != MASK_ID) & (out[positions] != input_ids[positions])).sum()
        )
    assert chosen / total == pytest.approx(0.15, abs=0.005)
    assert masked / chosen == pytest.approx(0.8, abs=0.015)
    assert kept / chosen == pytest.approx(0.1, abs=0.01)
    assert randomized / chosen == pytest.approx(0.1, abs=0.01)


def test_max_predictions_per_seq_caps_the_masks():
    settings = MaskingSettings(masked_lm_prob=0.5, max_predictions_per_seq=7)
    input_ids = np.arange(5, 105)
    _, positions, _ = mask_tokens(
        input_ids,
        np.ones(100, bool),
        None,
        settings,
        MASK_ID,
        np.arange(5, 200),
        np.random.default_rng(0),
    )
    assert len(positions) == 7


def test_whole_word_masking_masks_every_piece_of_a_word():
    # words of 3 pieces each: a word starts at every third position
    input_ids = np.arange(100, 160)
    word_start = (np.arange(60) % 3) == 0
    settings = MaskingSettings(
        masked_lm_prob=0.15, max_predictions_per_seq=20, whole_word_masking=True
    )
    for seed in range(50):
        _, positions, _ = mask_tokens(
            input_ids,
            np.ones(60, bool),
            word_start,
            settings,
            MASK_ID,
            np.arange(5, 99),
            np.random.default_rng(seed),
        )
        words = set(positions // 3)
        assert (
            len(positions) == 3 * len(words) == 9
        )  # round(60 * 0.15) = 9 pieces, whole words only


SEPARATOR = -1  # no document uses it


def test_full_sentences_fill_the_length_across_documents_without_nsp():
    docs = documents(count=60)
    settings = InstanceSettings(max_seq_length=64, short_seq_prob=0.0, dupe_factor=2, nsp=False)
    instances = create_packed_instances(docs, settings, random.Random(0), SEPARATOR)
    sentences = {tuple(s) for doc in docs for s in doc}
    crossing = 0
    for tokens, second, is_random_next in instances:
        assert second == [] and not is_random_next and 0 < len(tokens) <= 62  # [CLS] .. [SEP]
        pieces = [[]]
        for token in tokens:  # document boundaries: a [SEP] between whole sentences
            pieces[-1].append(token) if token != SEPARATOR else pieces.append([])
        crossing += len(pieces) > 1
        documents_seen = {piece[0] // 1000 for piece in pieces}
        assert len(documents_seen) == len(pieces)  # one document per piece
        for piece in pieces[1:-1]:  # a document in the middle is there whole
            assert sum(len(s) for s in docs[piece[0] // 1000]) == len(piece)
    assert crossing > len(instances) / 3
    # Filled: a segment stops only where the next sentence would not fit.
    lengths = np.array([len(tokens) for tokens, _, _ in instances])
    assert lengths.mean() > 0.75 * 62
    # Every sentence of every document is used, once per pass.
    used = sum(len(tokens) - tokens.count(SEPARATOR) for tokens, _, _ in instances)
    assert used == 2 * sum(len(s) for s in sentences)


def test_mask_rate_and_the_replace_random_keep_split_are_settings():
    settings = MaskingSettings(
        masked_lm_prob=0.3, max_predictions_per_seq=None, mask_token_prob=0.5, random_token_prob=0.2
    )
    input_ids = np.arange(5, 205)
    chosen = masked = randomized = 0
    for seed in range(100):
        out, positions, _ = mask_tokens(
            input_ids,
            np.ones(200, bool),
            None,
            settings,
            MASK_ID,
            np.arange(1000, 2000),
            np.random.default_rng(seed),
        )
        assert len(positions) == 60  # 30%, no cap
        chosen += len(positions)
        masked += int((out[positions] == MASK_ID).sum())
        randomized += int((out[positions] >= 1000).sum())
    assert masked / chosen == pytest.approx(0.5, abs=0.02)
    assert randomized / chosen == pytest.approx(0.2, abs=0.02)
    assert MaskingSettings(masked_lm_prob=0.3).at_bert_rate() == MaskingSettings()


def test_pair_instances_on_flat_arrays_have_berts_layout_and_balanced_labels():
    docs = documents(count=300, seed=4)
    pool = TokenizedDocuments.from_lists(docs)
    settings = InstanceSettings(max_seq_length=48, short_seq_prob=0.1, dupe_factor=3)
    pairs = pair_instances(pool, len(pool), settings, np.random.default_rng(4))
    assert len(pairs) > 1500
    assert (pairs.a_length >= 1).all() and (pairs.b_length >= 1).all()
    assert (pairs.a_length + pairs.b_length <= settings.max_seq_length - 3).all()
    assert abs(pairs.is_random_next.mean() - 0.5) < 0.04
    document_a = pool.tokens[pairs.a_start] // 1000
    document_b = pool.tokens[pairs.b_start] // 1000
    np.testing.assert_array_equal(document_a != document_b, pairs.is_random_next)
    real = ~pairs.is_random_next  # B starts after A ends, in the same document
    assert (pairs.b_start[real] >= pairs.a_start[real] + pairs.a_length[real]).all()


def test_every_pass_cuts_each_document_into_chunks_of_its_sentences():
    """Without truncation or random segments, a pass's real pairs tile their documents."""
    docs = [[[1000 * d + s] * 5 for s in range(2 + d % 7)] for d in range(200)]
    pool = TokenizedDocuments.from_lists(docs)
    settings = InstanceSettings(max_seq_length=200, short_seq_prob=0.3, dupe_factor=1)
    pairs = pair_instances(pool, len(pool), settings, np.random.default_rng(0))
    real = pairs.take(np.flatnonzero(~pairs.is_random_next))
    covered = np.zeros(len(pool.tokens), dtype=int)
    for a, la, b, lb in zip(real.a_start, real.a_length, real.b_start, real.b_length, strict=True):
        assert a + la == b  # A and B are consecutive sentences
        covered[a : b + lb] += 1
    assert covered.max() == 1  # no sentence in two chunks of one pass
    # a two-sentence document is one chunk: A one sentence, B the other
    assert {5} == {
        int(la) for la, lb in zip(real.a_length, real.b_length, strict=True) if la + lb == 10
    }


@pytest.mark.parametrize("seed", range(20))
def test_vectorised_truncation_takes_from_the_longer_segment_like_truncate_pair(seed):
    rng = random.Random(seed)
    rows = [(rng.randint(1, 90), rng.randint(1, 90)) for _ in range(200)]
    starts = np.arange(len(rows)) * 1000
    instances = Instances(
        starts,
        np.array([a for a, _ in rows]),
        starts + 500,
        np.array([b for _, b in rows]),
        np.zeros(len(rows), bool),
    )
    truncated = _truncate(instances, 61, np.random.default_rng(seed))
    for row, (a, b) in enumerate(rows):
        tokens_a, tokens_b = list(range(a)), list(range(500, 500 + b))
        truncate_pair(tokens_a, tokens_b, 61, random.Random(row))
        assert truncated.a_length[row] == len(tokens_a)
        assert truncated.b_length[row] == len(tokens_b)
        # the kept tokens are a contiguous run of the original segment
        assert 0 <= truncated.a_start[row] - starts[row] <= a - len(tokens_a)
        assert 0 <= truncated.b_start[row] - starts[row] - 500 <= b - len(tokens_b)


def test_truncation_takes_half_the_tokens_from_the_front():
    n = 20_000
    instances = Instances(
        np.zeros(n, int), np.full(n, 100), np.zeros(n, int), np.full(n, 10), np.zeros(n, bool)
    )
    truncated = _truncate(instances, 60, np.random.default_rng(0))
    assert (truncated.a_length == 50).all()
    assert truncated.a_start.mean() == pytest.approx(25, abs=0.2)  # 50 fair coins


def test_tokenize_documents_gives_each_sentences_ids_in_flat_arrays():
    tokenizer = train_wordpiece(
        ["the cat sat on the mat.", "a dog ran.", "Ça va très bien!"], vocab_size=100
    )
    docs = [
        ["the cat sat.", "", "a dog ran on the mat."],
        ["\x00\x01"],  # nothing left after normalization: dropped
        ["one [bertlab:sentence-boundary] two", "ça va."],  # the marker text inside a sentence
        ["the end"],
    ]
    flat = tokenize_documents(docs, tokenizer)
    expected = [
        [tokenizer.encode(s, add_special_tokens=False).ids for s in doc]
        for doc in docs
        if any(tokenizer.encode(s, add_special_tokens=False).ids for s in doc)
    ]
    expected = [[s for s in doc if s] for doc in expected]
    assert flat.to_lists() == expected
    assert len(flat) == 3 and flat.tokens.dtype == np.int32


def test_vectorised_pairs_cut_documents_as_the_reference_loop_does():
    """With a fixed target length the chunks, so the instances per document, are not random."""
    docs = documents(count=150, seed=7)
    settings = InstanceSettings(max_seq_length=64, short_seq_prob=0.0, dupe_factor=1)
    reference = [
        instance
        for d in range(len(docs))
        for instance in _instances_from_document(docs, d, settings, random.Random(d))
    ]
    pool = TokenizedDocuments.from_lists(docs)
    pairs = pair_instances(pool, len(pool), settings, np.random.default_rng(0))
    assert Counter(a[0] // 1000 for a, _, _ in reference) == Counter(
        (pool.tokens[pairs.a_start] // 1000).tolist()
    )
