"""Pretraining corpora from records: JSON Lines, CSV, Parquet, save_to_disk and the Hub."""

from __future__ import annotations

import csv
import gzip
import json
import logging
import random
from pathlib import Path

import numpy as np
import pytest

from bertlab.cli.train import train
from bertlab.data.pretraining import PretrainingDataModule
from bertlab.data.sentences import split_documents
from bertlab.data.sources import HubDataset, RecordFiles, open_source
from bertlab.errors import ConfigError, DataError
from bertlab.tokenizer import train_wordpiece

from support.data import WORDS, write_corpus
from support.runs import FAST_PRETRAINING, shard_arrays


def prose_documents(count: int = 120, seed: int = 0) -> list[str]:
    """Paragraphs of prose whose sentences share their document's word group (NSP learnable)."""
    rng = random.Random(seed)
    documents = []
    for _ in range(count):
        group = WORDS[6 * rng.randrange(6) :][:6]  # 6 groups of 6 words
        sentences = [
            " ".join(rng.choices(group, k=rng.randint(5, 9))).capitalize() + "."
            for _ in range(rng.randint(4, 8))
        ]
        half = len(sentences) // 2  # two paragraphs: a line break inside the record
        documents.append(" ".join(sentences[:half]) + "\n" + " ".join(sentences[half:]))
    return documents


def write_jsonl(path: Path, documents: list[str], opener=open) -> Path:
    with opener(path, "wt", encoding="utf-8") as out:
        for number, text in enumerate(documents):
            out.write(json.dumps({"id": number, "text": text}) + "\n")
    return path


def write_csv(path: Path, documents: list[str]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "text"])
        writer.writerows(enumerate(documents))
    return path


def write_parquet(path: Path, documents: list[str]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": list(range(len(documents))), "text": documents})
    pq.write_table(table, path, row_group_size=50)  # several row groups, as real files have
    return path


def write_saved_dataset(path: Path, documents: list[str]) -> Path:
    import datasets

    dataset = datasets.Dataset.from_dict({"id": list(range(len(documents))), "text": documents})
    dataset.save_to_disk(str(path))
    return path


WRITERS = {
    "jsonl": lambda d, docs: write_jsonl(d / "corpus.jsonl", docs),
    "jsonl.gz": lambda d, docs: write_jsonl(d / "corpus.jsonl.gz", docs, gzip.open),
    "csv": lambda d, docs: write_csv(d / "corpus.csv", docs),
    "parquet": lambda d, docs: write_parquet(d / "corpus.parquet", docs),
    "save_to_disk": lambda d, docs: write_saved_dataset(d / "saved", docs),
}


@pytest.fixture(scope="module")
def documents() -> list[str]:
    return prose_documents()


@pytest.fixture(scope="module")
def tokenizer(documents):
    return train_wordpiece(documents, vocab_size=120, min_frequency=1)


def prepared(corpus: Path | str, tokenizer, cache_dir: Path, **settings) -> PretrainingDataModule:
    datamodule = PretrainingDataModule(
        corpus=str(corpus),
        max_seq_length=64,
        dupe_factor=2,
        num_workers=0,
        val_fraction=0.2,
        cache_dir=str(cache_dir),
        **settings,
    )
    datamodule.set_tokenizer(tokenizer)
    datamodule.prepare_data()
    return datamodule


def test_every_record_format_yields_the_same_documents_and_shards(documents, tokenizer, tmp_path):
    shards = {}
    for name, write in WRITERS.items():
        (tmp_path / name).mkdir()
        corpus = write(tmp_path / name, documents)
        assert list(open_source(str(corpus)).documents()) == documents, name
        datamodule = prepared(corpus, tokenizer, tmp_path / name / "cache")
        assert datamodule.info()["documents"] == len(documents)
        assert datamodule.info()["skipped_records"] == 0
        shards[name] = shard_arrays(datamodule)
    reference = shards.pop("jsonl")
    assert len(reference) >= 2
    for name, arrays in shards.items():
        assert arrays.keys() == reference.keys(), name
        for array_name, array in arrays.items():
            np.testing.assert_array_equal(array, reference[array_name], err_msg=name)


def test_records_are_split_into_sentences_within_paragraphs():
    text = "Mr. Smith went to Washington. He met the U.S. team.\nA new paragraph starts here."
    expected = [
        "Mr. Smith went to Washington.",
        "He met the U.S. team.",
        "A new paragraph starts here.",
    ]
    assert split_documents([text], "spacy") == [expected]
    assert split_documents([["Already.", "Split."]], "spacy") == [["Already.", "Split."]]
    assert split_documents([text], None) == [[text]]  # no next sentence prediction: whole
    assert split_documents([text], "regex")[0][0] == "Mr."  # why spaCy is the default


def test_bad_records_are_counted_and_reported_with_file_and_record(
    documents, tokenizer, tmp_path, caplog
):
    path = tmp_path / "corpus.jsonl"
    lines = [json.dumps({"text": text}) for text in documents]
    lines[4] = json.dumps({"body": "no text field"})
    lines[9] = json.dumps({"text": 42})
    lines[11] = "{truncated"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        datamodule = prepared(path, tokenizer, tmp_path / "cache")
    assert datamodule.info()["skipped_records"] == 3
    assert datamodule.info()["documents"] == len(documents) - 3
    assert "skipped 3 records without a string 'text' (1 missing, 1 int, 1 not JSON)" in caplog.text
    for number, reason in [(5, "missing"), (10, "int"), (12, "not JSON")]:
        assert f"{path} record {number} ({reason})" in caplog.text


def test_parquet_record_numbers_and_a_wrong_column(documents, tmp_path, caplog):
    path = write_parquet(tmp_path / "c.parquet", [*documents[:60], None, *documents[60:]])
    source = RecordFiles([path], "text")
    with caplog.at_level(logging.WARNING):
        assert len(list(source.documents())) == len(documents)
    assert f"{path} record 61 (NoneType)" in caplog.text
    with pytest.raises(DataError, match=r"c\.parquet: no column 'body' .* it has id, text"):
        list(RecordFiles([path], "body").documents())


def test_csv_documents_past_the_csv_field_limit_are_read_and_the_limit_restored(tmp_path):
    long_document = "A long sentence of words. " * 10_000  # 260 KB, past csv's 128 KB
    path = write_csv(tmp_path / "c.csv", [long_document, "Short."])
    limit = csv.field_size_limit()
    assert list(open_source(str(path)).documents()) == [long_document, "Short."]
    assert csv.field_size_limit() == limit


def test_a_column_no_record_has_is_an_error_naming_the_key(documents, tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", documents[:5])
    with pytest.raises(DataError, match=r"no record has a string 'body' \(task.text_column\)"):
        list(open_source(str(path), text_column="body").documents())


def test_zstd_compressed_jsonl(documents, tmp_path):
    zstandard = pytest.importorskip("zstandard")
    path = tmp_path / "c.jsonl.zst"
    raw = "".join(json.dumps({"text": t}) + "\n" for t in documents).encode()
    path.write_bytes(zstandard.ZstdCompressor().compress(raw))
    source = open_source(str(path))
    assert list(source.documents()) == documents
    assert source.bytes_read == path.stat().st_size  # progress counts compressed bytes


def test_cache_key_follows_the_file_and_the_splitter(documents, tokenizer, tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", documents)
    first = prepared(path, tokenizer, tmp_path / "cache").shard_dir
    assert prepared(path, tokenizer, tmp_path / "cache").shard_dir == first
    regex = prepared(path, tokenizer, tmp_path / "cache", sentence_splitter="regex").shard_dir
    assert regex != first
    write_jsonl(path, documents[:-1])
    assert prepared(path, tokenizer, tmp_path / "cache").shard_dir not in {first, regex}


def test_text_corpora_keep_their_cache_key(tmp_path):
    from bertlab.data.cache import file_digest, fingerprint

    corpus = write_corpus(tmp_path / "corpus.txt")
    datamodule = PretrainingDataModule(corpus=str(corpus), cache_dir=str(tmp_path))
    assert datamodule.data_fingerprint() == fingerprint([file_digest(corpus)])
    assert datamodule.sentence_settings() == ()


def test_hub_offline_names_task_corpus(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match=r"^task.corpus=hf:wikimedia/wikipedia: .*offline"):
        open_source("hf:wikimedia/wikipedia", corpus_config="20231101.en")


def test_hub_unreachable_names_task_corpus(monkeypatch):
    from huggingface_hub import HfApi, constants

    def unreachable(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'huggingface.co'")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(HfApi, "dataset_info", unreachable)
    with pytest.raises(ConfigError, match=r"^task.corpus=hf:some/corpus: cannot reach"):
        open_source("hf:some/corpus")


def test_hub_stream_at_a_fixed_revision(documents, tokenizer, tmp_path, monkeypatch):
    import datasets
    from huggingface_hub import HfApi, constants

    calls = []

    def dataset_info(self, name):
        return type("Info", (), {"sha": "abc123"})()

    def load_dataset(name, config, split, streaming, revision):
        calls.append((name, config, split, streaming, revision))
        return iter([{"text": text} for text in documents] + [{"text": None}])

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(HfApi, "dataset_info", dataset_info)
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    source = open_source("hf:wikimedia/wikipedia", corpus_config="20231101.en")
    assert isinstance(source, HubDataset)
    assert source.identity()["revision"] == "abc123"
    datamodule = prepared(
        "hf:wikimedia/wikipedia", tokenizer, tmp_path / "cache", corpus_config="20231101.en"
    )
    assert datamodule.info()["documents"] == len(documents)
    assert datamodule.info()["skipped_records"] == 1
    assert calls[-1] == ("wikimedia/wikipedia", "20231101.en", "train", True, "abc123")


def test_pretraining_from_json_lines_learns_next_sentence_prediction(make_config, tmp_path):
    # A tiny model needs about 200 steps to tell a next sentence (same word group) from a
    # random one; 100 were not enough. The other formats give the same shards (above).
    corpus = write_jsonl(tmp_path / "corpus.jsonl", prose_documents(200, seed=1))
    # A fixed vocabulary: WordPiece training breaks ties differently from run to run, and
    # so would the instances and the result.
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *WORDS, *letters]
    vocab += [f"##{letter}" for letter in letters]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    cfg = make_config(
        *FAST_PRETRAINING,
        f"task.corpus={corpus}",
        f"tokenizer.path={tmp_path / 'vocab.txt'}",
        "trainer.max_steps=200",
    )
    train(cfg)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    metrics = results["metrics"]
    assert metrics["val/nsp_accuracy"] > metrics["val/nsp_majority_accuracy"] + 0.05, json.dumps(
        results
    )


@pytest.mark.parametrize("corpus_format", ["parquet", "save_to_disk"])
def test_pretraining_runs_from_parquet_and_save_to_disk(corpus_format, make_config, tmp_path):
    corpus = WRITERS[corpus_format](tmp_path, prose_documents(60))
    cfg = make_config(*FAST_PRETRAINING, f"task.corpus={corpus}", "trainer.max_steps=20")
    train(cfg)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["steps"] == 20 and results["metrics"]["val/mlm_accuracy"] > 0


def test_a_vocabulary_is_trained_on_a_sample_spread_over_a_large_corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("".join(f"document {d} begins.\nIt ends.\n\n" for d in range(1000)))
    source = open_source(str(path))
    assert len(list(source.texts())) == 2000
    sample = list(source.texts(sample_bytes=path.stat().st_size // 10))
    assert sample[:4] == ["document 0 begins.", "It ends.", "document 10 begins.", "It ends."]
    assert len(sample) == 200 and "document 990 begins." in sample
    assert list(source.texts(sample_bytes=10**9)) == list(source.texts())


def test_a_stream_of_unknown_size_gives_its_first_documents_as_the_sample(monkeypatch, tmp_path):
    path = tmp_path / "corpus.jsonl"
    write_jsonl(path, [f"Record {n} is here." for n in range(100)])
    source = open_source(str(path))
    monkeypatch.setattr(source, "total_bytes", lambda: None)
    assert list(source.texts(sample_bytes=40)) == [
        "Record 0 is here.",
        "Record 1 is here.",
        "Record 2 is here.",
    ]
