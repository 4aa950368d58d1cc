"""The classification data module: length buckets, tokenized and cached splits, padded batches,
labels inferred, bad settings refused, skipped rows reported on every run.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from bertlab import pipeline
from bertlab.data.classification import FixedBucketSampler, bucket_members
from bertlab.tokenizer import special_ids, train_wordpiece

from support.bad_data import lines_of, write_lines
from support.data import keyword_pair, write_custom, write_glue_task
from support.runs import datamodule_for


@pytest.fixture(scope="module")
def tokenizer():
    texts = [text for row in range(60) for label in range(6) for text in keyword_pair(label, row)]
    return train_wordpiece(texts + ["long " * 10, "short"], vocab_size=120, min_frequency=1)


# ---- length buckets ---------------------------------------------------------------------------


def test_bucket_sampler_covers_every_example_once_per_epoch() -> None:
    lengths = np.random.default_rng(0).integers(5, 120, size=203)
    sampler = FixedBucketSampler(lengths, batch_size=16, num_buckets=5, shuffle=True, seed=3)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert sorted(i for batch in batches for i in batch) == list(range(203))
        assert all(1 <= len(batch) <= 16 for batch in batches)
        orders.append([i for batch in batches for i in batch])
    assert orders[0] != orders[1]
    sampler.set_epoch(1)
    assert [i for batch in sampler for i in batch] == orders[1]  # seed + epoch decide the order


def test_a_resumed_epoch_continues_after_the_batches_already_trained() -> None:
    lengths = np.random.default_rng(1).integers(5, 60, size=90)
    sampler = FixedBucketSampler(lengths, batch_size=8, shuffle=True, seed=2)
    sampler.set_epoch(1)
    full_epoch = list(sampler)
    resumed = FixedBucketSampler(lengths, batch_size=8, shuffle=True, seed=2)
    resumed.resume_at(1, 3)
    assert list(resumed) == full_epoch[3:]
    resumed.set_epoch(2)
    assert len(list(resumed)) == len(full_epoch)  # later epochs start from their beginning


def test_batches_stay_within_one_length_bucket() -> None:
    lengths = np.array([5] * 40 + [100] * 40 + [50] * 40)
    members = bucket_members(lengths, num_buckets=4)
    assert [len(m) for m in members] == [40, 40, 40]
    for batch in FixedBucketSampler(lengths, batch_size=8, num_buckets=4, shuffle=True):
        assert len({int(lengths[i]) for i in batch}) == 1


def test_ranks_split_evaluation_exactly_and_training_evenly() -> None:
    lengths = np.arange(1, 51)
    shards = [list(FixedBucketSampler(lengths, 4, num_replicas=3, rank=rank)) for rank in range(3)]
    assert sorted(i for shard in shards for batch in shard for i in batch) == list(range(50))
    assert [len(FixedBucketSampler(lengths, 4, num_replicas=3, rank=r)) for r in range(3)] == [
        len(s) for s in shards
    ]
    train_shards = [
        list(FixedBucketSampler(lengths, 4, shuffle=True, num_replicas=3, rank=r, even_shards=True))
        for r in range(3)
    ]
    assert len({len(shard) for shard in train_shards}) == 1  # ranks step together


# ---- tokenized, cached, padded batches ---------------------------------------------------------


def test_pairs_are_cls_a_sep_b_sep_truncated_longest_first_and_padded_per_batch(
    tmp_path, tokenizer
) -> None:
    rows = [("long " * 10, "short", "1"), ("short", "short", "0"), ("long " * 3, "long " * 3, "1")]
    lines = [[str(i), a, b, label] for i, (a, b, label) in enumerate(rows)]
    for name in ("train.tsv", "dev.tsv"):
        (tmp_path / name).write_text(
            "index\tsentence1\tsentence2\tlabel\n" + "".join("\t".join(x) + "\n" for x in lines)
        )
    datamodule = datamodule_for(
        "glue/wnli", tmp_path, "task.max_seq_length=8", "task.test_files={}"
    )
    datamodule.set_tokenizer(tokenizer)
    datamodule.prepare_data()
    datamodule.setup("fit")
    ids = special_ids(tokenizer)
    batch = datamodule.splits["val"][[0, 1]]
    assert {k: v.dtype for k, v in batch.items()} == dict.fromkeys(batch, torch.int64)
    first = batch["input_ids"][0].tolist()
    long_id, short_id = tokenizer.token_to_id("long"), tokenizer.token_to_id("short")
    # [CLS] + 10 x long + [SEP] + short + [SEP] is 14 > 8: the longer side loses tokens, down to 4
    assert first == [ids.cls, *[long_id] * 4, ids.sep, short_id, ids.sep]
    assert batch["token_type_ids"][0].tolist() == [0] * 6 + [1] * 2
    assert batch["input_ids"].shape == (2, 8)  # padded to the longest in this batch, not beyond
    assert batch["attention_mask"][1].tolist() == [1] * 5 + [0] * 3
    assert batch["input_ids"][1, 5:].tolist() == [ids.pad] * 3
    assert batch["labels"].tolist() == [1, 0]


def test_tokenized_splits_are_cached_and_reused(tmp_path, tokenizer, monkeypatch) -> None:
    write_glue_task(tmp_path, "sst2", train=10, dev=4, test=2)
    first = datamodule_for("glue/sst2", tmp_path)
    first.set_tokenizer(tokenizer)
    first.prepare_data()
    entries = sorted((tmp_path / "_cache" / "classification").iterdir())

    def no_reading(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr("bertlab.data.classification.read_examples", no_reading)
    second = datamodule_for("glue/sst2", tmp_path)
    second.set_tokenizer(tokenizer)
    second.setup("fit")
    assert sorted((tmp_path / "_cache" / "classification").iterdir()) == entries
    assert len(second.splits["train"]) == 10
    monkeypatch.undo()
    third = datamodule_for("glue/sst2", tmp_path, "task.max_seq_length=16")
    third.set_tokenizer(tokenizer)
    third.prepare_data()
    assert len(list((tmp_path / "_cache" / "classification").iterdir())) > len(entries)


def test_module_kwargs_infer_sorted_labels_for_custom_data(tmp_path, tokenizer) -> None:
    rows = [(keyword_pair(i % 3, i)[0], ["b", "c", "a"][i % 3]) for i in range(9)]
    write_custom(tmp_path, "jsonl", "train.jsonl", rows)
    write_custom(tmp_path, "jsonl", "dev.jsonl", rows[:3])
    datamodule = datamodule_for(
        "custom",
        tmp_path,
        "task.train_file=train.jsonl",
        "task.val_files.val=dev.jsonl",
        "task.text_columns=[review]",
        "task.label_column=stars",
    )
    datamodule.set_tokenizer(tokenizer)
    datamodule.prepare_data()
    assert datamodule.module_kwargs() == {
        "num_labels": 3,
        "label_names": ["a", "b", "c"],
        "metrics": ["accuracy"],
        "regression": False,
        "val_splits": ["val"],
    }
    assert datamodule.info() | {"cache": ""} == {
        "train examples": 9,
        "val examples": 3,
        "labels": "a, b, c",
        "cache": "",
    }


def test_custom_regression_has_one_output_and_float_targets(tmp_path, tokenizer) -> None:
    rows = [(keyword_pair(i % 2, i)[0], f"{i / 4:.2f}") for i in range(8)]
    write_custom(tmp_path, "jsonl", "train.jsonl", rows)
    write_custom(tmp_path, "jsonl", "dev.jsonl", rows[:4])
    datamodule = datamodule_for(
        "custom",
        tmp_path,
        "task.train_file=train.jsonl",
        "task.val_files.val=dev.jsonl",
        "task.text_columns=[review]",
        "task.label_column=stars",
        "task.regression=true",
        "task.metrics=[pearson,spearman]",
    )
    datamodule.set_tokenizer(tokenizer)
    datamodule.setup("fit")
    kwargs = datamodule.module_kwargs()
    assert (kwargs["num_labels"], kwargs["label_names"], kwargs["regression"]) == (1, None, True)
    batches = list(datamodule.val_dataloader()[0])
    assert all(batch["labels"].dtype == torch.float32 for batch in batches)
    assert sorted(x for batch in batches for x in batch["labels"].tolist()) == [
        0.0,
        0.25,
        0.5,
        0.75,
    ]


def test_bad_config_is_rejected_before_any_reading(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"unknown metric 'auc'; allowed: \['accuracy'"):
        datamodule_for("glue/sst2", tmp_path, "task.metrics=[auc]")
    with pytest.raises(ValueError, match=r"'pearson' does not apply to a classification task"):
        datamodule_for("glue/sst2", tmp_path, "task.metrics=[pearson]")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['text_column'\]"):
        datamodule_for("glue/sst2", tmp_path, "+task.text_column=x")


def test_skipped_rows_are_reported_again_when_the_cache_is_reused(prepared, caplog):
    reader, cfg, path = prepared("glue-qqp")
    lines = lines_of(path)
    lines[2] = "just one field"
    write_lines(path, lines)
    expected = f"{path}: skipped 1 malformed rows (wrong number of fields)"
    for run in ("first", "cached"):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            datamodule = pipeline.build_datamodule(cfg)
            datamodule.set_tokenizer(pipeline.resolve_tokenizer(cfg, datamodule, None))
            datamodule.prepare_data()
        assert expected in caplog.text, run
        report = datamodule.data_report()
        assert report["train"]["skipped_malformed_rows"] == 1, run
        assert report["train"]["examples"] == len(lines) - 2  # less the header and that row
        assert report["val"]["skipped_malformed_rows"] == 0
