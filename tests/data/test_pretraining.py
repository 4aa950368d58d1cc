"""Sharded pretraining instances: parallel preparation, caching, masked batches, damaged caches."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
import torch

from bertlab.data.cache import FILE_SIZES
from bertlab.data.pretraining import PretrainingDataModule
from bertlab.errors import DataError
from bertlab.tokenizer import special_ids, train_wordpiece

from support.data import write_corpus
from support.runs import shard_arrays


@pytest.fixture(scope="module")
def corpus_and_tokenizer(tmp_path_factory):
    corpus = write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt", documents=120)
    tokenizer = train_wordpiece(corpus.read_text().splitlines(), vocab_size=200, min_frequency=1)
    return corpus, tokenizer


def prepared(corpus, tokenizer, cache_dir, **settings) -> PretrainingDataModule:
    datamodule = PretrainingDataModule(
        corpus=str(corpus),
        max_seq_length=64,
        dupe_factor=2,
        num_workers=0,
        cache_dir=str(cache_dir),
        **settings,
    )
    datamodule.set_tokenizer(tokenizer)
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule


def test_parallel_workers_write_the_same_shards_as_one_process(corpus_and_tokenizer, tmp_path):
    corpus, tokenizer = corpus_and_tokenizer
    serial = prepared(corpus, tokenizer, tmp_path / "serial", chunk_chars=3000, prepare_workers=1)
    parallel = prepared(
        corpus, tokenizer, tmp_path / "parallel", chunk_chars=3000, prepare_workers=2
    )
    serial_arrays, parallel_arrays = shard_arrays(serial), shard_arrays(parallel)
    assert len(serial_arrays) >= 8  # several chunks, each a train and a val shard
    assert serial_arrays.keys() == parallel_arrays.keys()
    for name, array in serial_arrays.items():
        np.testing.assert_array_equal(array, parallel_arrays[name], err_msg=name)
    assert serial.info() == parallel.info()


def test_same_settings_reuse_the_cache_and_new_ones_rebuild(corpus_and_tokenizer, tmp_path):
    corpus, tokenizer = corpus_and_tokenizer
    first = prepared(corpus, tokenizer, tmp_path).shard_dir
    assert prepared(corpus, tokenizer, tmp_path).shard_dir == first
    assert prepared(corpus, tokenizer, tmp_path, short_seq_prob=0.5).shard_dir != first
    assert len(list((tmp_path / "pretraining").glob("*/complete.json"))) == 2


def test_batches_are_masked_bert_pairs_padded_per_batch(corpus_and_tokenizer, tmp_path):
    corpus, tokenizer = corpus_and_tokenizer
    datamodule = prepared(corpus, tokenizer, tmp_path)
    ids = special_ids(tokenizer)
    batch = next(iter(datamodule.train_dataloader()))
    lengths = batch["attention_mask"].sum(1)
    assert (
        batch["input_ids"].shape[1] % 8 == 0
        and batch["input_ids"].shape[1] - int(lengths.max()) < 8
    )
    assert (batch["input_ids"][:, 0] == ids.cls).all()
    for row in range(len(lengths)):
        n = int(lengths[row])
        assert (batch["input_ids"][row, n:] == ids.pad).all()
        assert int((batch["input_ids"][row, :n] == ids.sep).sum()) >= 2 - int(
            (batch["masked_labels"][row] == ids.sep).sum()
        )
        positions = batch["masked_positions"][row][batch["masked_positions"][row] >= 0]
        assert 1 <= len(positions) <= 20 and int(positions.max()) < n
    assert set(batch["next_sentence_labels"].tolist()) <= {0, 1}


def test_static_masks_repeat_and_dynamic_masks_change_between_epochs(
    corpus_and_tokenizer, tmp_path
):
    corpus, tokenizer = corpus_and_tokenizer
    static = prepared(corpus, tokenizer, tmp_path).train_set
    dynamic = prepared(corpus, tokenizer, tmp_path, masking="dynamic").train_set
    assert np.array_equal(static[(0, 3)]["masked_positions"], static[(1, 3)]["masked_positions"])
    changed = sum(
        not np.array_equal(dynamic[(0, i)]["masked_positions"], dynamic[(1, i)]["masked_positions"])
        for i in range(20)
    )
    assert changed >= 15
    assert torch.equal(
        torch.as_tensor(dynamic[(1, 3)]["input_ids"]), torch.as_tensor(dynamic[(1, 3)]["input_ids"])
    )


# ---- caches that check themselves, builds that clean up (issue 15) -----------------------------


def test_a_truncated_shard_is_rebuilt_with_a_warning(corpus_and_tokenizer, tmp_path, caplog):
    corpus, tokenizer = corpus_and_tokenizer
    original = shard_arrays(prepared(corpus, tokenizer, tmp_path))
    shard = sorted((tmp_path / "pretraining").glob("*/train-*.tokens.npy"))[0]
    with open(shard, "r+b") as handle:  # a disk that filled up, a copy that stopped
        handle.truncate(shard.stat().st_size // 2)
    with caplog.at_level(logging.WARNING):
        rebuilt = prepared(corpus, tokenizer, tmp_path)
    assert re.search(
        rf"cache entry .* is damaged \({shard.name}: .* bytes, written as", caplog.text
    )
    assert shard_arrays(rebuilt).keys() == original.keys()
    for name, array in original.items():
        np.testing.assert_array_equal(array, shard_arrays(rebuilt)[name], err_msg=name)
    next(iter(rebuilt.train_dataloader()))


def test_a_damaged_entry_without_recorded_sizes_is_named_with_how_to_clear_it(
    corpus_and_tokenizer, tmp_path
):
    corpus, tokenizer = corpus_and_tokenizer
    entry = prepared(corpus, tokenizer, tmp_path).shard_dir
    (entry / FILE_SIZES).unlink()  # as an entry written before sizes were recorded
    index = sorted(entry.glob("train-*.index.npy"))[0]
    with open(index, "r+b") as handle:
        handle.truncate(index.stat().st_size - 40)
    with pytest.raises(DataError, match=rf"{re.escape(str(index))}: damaged cache file .*delete"):
        prepared(corpus, tokenizer, tmp_path)


@pytest.mark.parametrize(
    ("setting", "accelerator", "workers"),
    [(None, "cpu", 0), (None, "gpu", 1), (3, "cpu", 3), (0, "gpu", 0)],
)
def test_num_workers_null_reads_in_process_on_a_cpu_and_with_one_worker_beside_a_gpu(
    setting, accelerator, workers
):
    from types import SimpleNamespace

    from pytorch_lightning.accelerators import CPUAccelerator

    datamodule = PretrainingDataModule(num_workers=setting)
    assert datamodule.loader_workers() == (0 if setting is None else setting)  # no trainer yet
    device = CPUAccelerator() if accelerator == "cpu" else SimpleNamespace()
    datamodule.trainer = SimpleNamespace(accelerator=device)
    assert datamodule.loader_workers() == workers


def test_data_report_counts_instances_and_fingerprints_what_made_them(
    corpus_and_tokenizer, tmp_path
):
    corpus, tokenizer = corpus_and_tokenizer
    first = prepared(corpus, tokenizer, tmp_path / "a")
    report = first.data_report()
    assert report["train"]["instances"] == first.info()["train"] == len(first.train_set) > 0
    assert report["val"]["instances"] == first.info()["val"] == len(first.val_set) > 0
    # A build from scratch in another cache gives the same fingerprints: they name the inputs.
    assert prepared(corpus, tokenizer, tmp_path / "b").data_report() == report
    other_vocab = train_wordpiece(corpus.read_text().splitlines(), vocab_size=150, min_frequency=1)
    changed = prepared(corpus, other_vocab, tmp_path / "c").data_report()["fingerprints"]
    assert changed["corpus"] == report["fingerprints"]["corpus"]
    assert changed["tokenizer"] != report["fingerprints"]["tokenizer"]
    assert changed["instances"] != report["fingerprints"]["instances"]


@pytest.mark.parametrize("nsp", [True, False])
def test_an_item_unmasked_is_its_shard_rows_between_cls_and_seps(
    corpus_and_tokenizer, tmp_path, nsp
):
    corpus, tokenizer = corpus_and_tokenizer
    datamodule = prepared(corpus, tokenizer, tmp_path, nsp=nsp)
    ids, dataset = special_ids(tokenizer), datamodule.train_set
    arrays = shard_arrays(datamodule)
    first = sorted(name for name in arrays if name.startswith("train-"))[:2]
    index, tokens = (arrays[name] for name in sorted(first))  # *.index.npy, *.tokens.npy
    for row in range(min(len(index), 40)):
        offset, length_a, length_b, is_random_next = index[row].tolist()
        a, b = tokens[offset : offset + length_a], tokens[offset + length_a :][:length_b]
        if nsp:
            expected = [ids.cls, *a, ids.sep, *b, ids.sep]
            types = [0] * (length_a + 2) + [1] * (length_b + 1)
        else:
            expected, types = [ids.cls, *a, *b, ids.sep], [0] * (length_a + length_b + 2)
        item = dataset[(0, row)]
        restored = item["input_ids"].copy()
        restored[item["masked_positions"]] = item["masked_labels"]
        assert restored.tolist() == expected and item["token_type_ids"].tolist() == types
        assert item["input_ids"].dtype == item["token_type_ids"].dtype == np.int64
        assert int(item["next_sentence_labels"]) == is_random_next
