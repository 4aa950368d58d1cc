"""Classification data module, bucket sampler, metrics, and short fine-tunes through `bertlab-train`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from test_readers import (
    CONF_DIR,
    GLUE_LABELS,
    GLUE_TEST_FILES,
    datamodule_for,
    glue_rows,
    keyword_pair,
    write_custom,
    write_glue_task,
    write_imdb,
    write_snli,
    write_xnli,
)

from bertlab.cli.train import train
from bertlab.data.classification import FixedBucketSampler, bucket_members
from bertlab.metrics import build_metrics
from bertlab.tasks.classify import ClassificationModule
from bertlab.tokenizer import special_ids, train_wordpiece

TINY_MODEL = [
    "model.hidden_size=32",
    "model.num_layers=1",
    "model.num_heads=2",
    "model.intermediate_size=64",
]


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


# ---- metrics against hand computation ---------------------------------------------------------


def hand_pearson(x: list[float], y: list[float]) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))


def average_ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def test_classification_metrics_match_their_definitions() -> None:
    predicted = [1, 0, 1, 1, 0, 1, 0, 0, 1, 1]
    gold = [1, 0, 0, 1, 0, 1, 1, 0, 0, 1]
    metrics = build_metrics(["accuracy", "f1", "matthews_corrcoef"], num_labels=2)
    metrics.update(
        torch.tensor(predicted[:4]), torch.tensor(gold[:4])
    )  # two batches, as in validation
    metrics.update(torch.tensor(predicted[4:]), torch.tensor(gold[4:]))
    values = {k: float(v) for k, v in metrics.compute().items()}
    tp = sum(p == g == 1 for p, g in zip(predicted, gold, strict=True))
    tn = sum(p == g == 0 for p, g in zip(predicted, gold, strict=True))
    fp = sum(p == 1 and g == 0 for p, g in zip(predicted, gold, strict=True))
    fn = sum(p == 0 and g == 1 for p, g in zip(predicted, gold, strict=True))
    assert values["accuracy"] == pytest.approx((tp + tn) / 10)
    assert values["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert values["matthews_corrcoef"] == pytest.approx(mcc, abs=1e-6)


def test_matthews_is_zero_when_one_class_is_never_predicted() -> None:
    metric = build_metrics(["matthews_corrcoef"], num_labels=2)
    metric.update(torch.tensor([1, 1, 1, 1]), torch.tensor([1, 0, 1, 1]))
    assert float(metric.compute()["matthews_corrcoef"]) == 0.0  # scikit-learn's (GLUE's) value


def test_multiclass_matthews_and_accuracy() -> None:
    predicted, gold = [0, 1, 2, 2, 1, 0, 2], [0, 1, 2, 1, 1, 2, 2]
    metrics = build_metrics(["accuracy", "matthews_corrcoef"], num_labels=3)
    metrics.update(torch.tensor(predicted), torch.tensor(gold))
    values = metrics.compute()
    confusion = np.zeros((3, 3))
    for p, g in zip(predicted, gold, strict=True):
        confusion[g, p] += 1
    t, p = confusion.sum(1), confusion.sum(0)
    c, s = np.trace(confusion), confusion.sum()
    expected = (c * s - t @ p) / math.sqrt((s**2 - p @ p) * (s**2 - t @ t))
    assert float(values["accuracy"]) == pytest.approx(5 / 7)
    assert float(values["matthews_corrcoef"]) == pytest.approx(expected, abs=1e-6)


def test_pearson_and_spearman_match_their_definitions() -> None:
    predicted = [0.1, 2.0, 2.0, 3.5, 4.9, 1.0]
    gold = [0.0, 1.8, 2.6, 3.0, 5.0, 1.8]
    metrics = build_metrics(["pearson", "spearman"], num_labels=1, regression=True)
    metrics.update(torch.tensor(predicted), torch.tensor(gold))
    values = metrics.compute()
    assert float(values["pearson"]) == pytest.approx(hand_pearson(predicted, gold), abs=1e-5)
    spearman = hand_pearson(average_ranks(predicted), average_ranks(gold))
    assert float(values["spearman"]) == pytest.approx(spearman, abs=1e-5)


def test_unknown_metric_lists_the_allowed_names() -> None:
    with pytest.raises(
        ValueError, match=r"allowed: \['accuracy', 'f1', 'macro_f1', 'matthews_corrcoef'"
    ):
        build_metrics(["bleu"], num_labels=2)
    with pytest.raises(ValueError, match="use 'macro_f1'"):
        build_metrics(["f1"], num_labels=3)


# ---- short fine-tunes through bertlab-train ---------------------------------------------------


def run_task(tmp_path: Path, task: str, data_dir: Path, *overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"task={task}",
                f"task.data_dir={data_dir}",
                f"run_dir={tmp_path / 'run'}",
                f"cache_dir={tmp_path / 'cache'}",
                *TINY_MODEL,
                "tokenizer.vocab_size=120",
                "tokenizer.min_frequency=1",
                "~logger",
                "callbacks.progress_bar=null",
                "callbacks.lr_monitor=null",
                "+trainer.enable_progress_bar=false",
                "trainer.enable_model_summary=false",
                "optimizer.lr=3e-3",
                "task.batch_size=16",
                *overrides,
            ],
        )
    train(cfg)
    return json.loads((tmp_path / "run" / "results.json").read_text())


GLUE_REPORTED = {
    "cola": ["val/matthews_corrcoef"],
    "sst2": ["val/accuracy"],
    "mrpc": ["val/accuracy", "val/f1"],
    "stsb": ["val/pearson", "val/spearman"],
    "qqp": ["val/accuracy", "val/f1"],
    "mnli": ["val_matched/accuracy", "val_mismatched/accuracy"],
    "qnli": ["val/accuracy"],
    "rte": ["val/accuracy"],
    "wnli": ["val/accuracy"],
}


@pytest.mark.parametrize("task", sorted(GLUE_REPORTED))
def test_every_glue_task_fine_tunes_and_writes_its_submission_files(
    tmp_path: Path, task: str
) -> None:
    write_glue_task(tmp_path / "data", task, train=24, dev=8, test=5)
    results = run_task(
        tmp_path, f"glue/{task}", tmp_path / "data", "trainer.max_steps=2", "task.predict_test=true"
    )
    for name in GLUE_REPORTED[task]:
        assert math.isfinite(results["metrics"][name]), name
    for stem in GLUE_TEST_FILES[task]:
        lines = (tmp_path / "run" / f"{stem}.tsv").read_text().splitlines()
        assert lines[0] == "index\tprediction" and len(lines) == 6
        assert [line.split("\t")[0] for line in lines[1:]] == ["0", "1", "2", "3", "4"]
        labels = GLUE_LABELS[task]
        for line in lines[1:]:
            value = line.split("\t")[1]
            assert value in labels if labels else float(value) == float(value)


@pytest.mark.parametrize("task", ["snli", "xnli", "imdb", "custom_csv", "custom_jsonl"])
def test_other_tasks_fine_tune_and_report_accuracy(tmp_path: Path, task: str) -> None:
    data = tmp_path / "data"
    overrides = ["trainer.max_steps=2"]
    if task == "snli":
        write_snli(data, {"train": 20, "dev": 10})
    elif task == "xnli":
        write_xnli(data, language="de", train=20, dev=6)
        overrides.append("task.language=de")
    elif task == "imdb":
        write_imdb(data, per_label=6)
    else:
        suffix = task.split("_")[1]
        rows = [(keyword_pair(i % 2, i)[0], ["neg", "pos"][i % 2]) for i in range(20)]
        write_custom(data, suffix, f"train.{suffix}", rows)
        write_custom(data, suffix, f"dev.{suffix}", rows[:8])
        overrides += [f"task.train_file=train.{suffix}", f"task.val_files.val=dev.{suffix}"]
        overrides += ["task.text_columns=[review]", "task.label_column=stars"]
    results = run_task(tmp_path, task.split("_")[0], data, *overrides)
    assert 0.0 <= results["metrics"]["val/accuracy"] <= 1.0
    assert "val/majority_accuracy" in results["metrics"]


def test_a_learnable_task_reaches_high_accuracy_and_reloads_from_its_checkpoint(
    tmp_path: Path,
) -> None:
    write_glue_task(tmp_path / "data", "sst2", train=200, dev=40, test=10)
    results = run_task(
        tmp_path, "glue/sst2", tmp_path / "data", "trainer.max_epochs=3", "task.predict_test=true"
    )
    assert results["metrics"]["val/accuracy"] >= 0.9
    predictions = (tmp_path / "run" / "SST-2.tsv").read_text().splitlines()[1:]
    assert [line.split("\t")[1] for line in predictions] == [
        label for label, _, _ in glue_rows("sst2", 10)
    ]
    module = ClassificationModule.load_from_checkpoint(
        results["last_checkpoint"], map_location="cpu"
    )
    assert module.hparams.label_names == ["0", "1"] and module.hparams.val_splits == ["val"]


# ---- recipes reproduce the reference settings (shared/ANCHORS.md) ------------------------------

RECIPES = {
    # experiment: (task, optimizer, lr, eps, batch, max length, epochs)
    "glue_mrpc_base": ("glue/mrpc", "bertlab.optim.BertAdam", 2e-5, 1e-6, 32, 128, 3),
    "glue_rte_base": ("glue/rte", "bertlab.optim.BertAdam", 2e-5, 1e-6, 32, 128, 3),
    "glue_sst2_base": ("glue/sst2", "bertlab.optim.BertAdam", 2e-5, 1e-6, 16, 128, 4),
    "glue_mnli_base": ("glue/mnli", "bertlab.optim.BertAdam", 2e-5, 1e-8, 32, 80, 3),
    "xnli_zh_base": ("xnli", "bertlab.optim.BertAdam", 2e-5, 1e-6, 32, 128, 4),
    "imdb_base": ("imdb", "torch.optim.AdamW", 5e-5, 1e-6, 32, 128, 3),
}


@pytest.mark.parametrize("experiment", sorted(RECIPES))
def test_fine_tuning_recipes_carry_the_reference_settings(experiment: str) -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}"])
    task, optimizer, lr, eps, batch, length, epochs = RECIPES[experiment]
    assert (cfg.task.name, cfg.model.name, cfg.optimizer._target_) == (task, "base", optimizer)
    assert (cfg.optimizer.lr, cfg.optimizer.eps, cfg.optimizer.warmup_ratio) == (lr, eps, 0.1)
    assert (cfg.task.batch_size, cfg.task.max_seq_length, cfg.trainer.max_epochs) == (
        batch,
        length,
        epochs,
    )


# ---- the chain: pretrain, then fine-tune from that checkpoint ----------------------------------


@pytest.mark.slow
def test_pretrain_then_fine_tune_from_the_checkpoint(
    make_config, corpus_file, tmp_path: Path
) -> None:
    from conftest import FAST_PRETRAINING

    train(make_config(*FAST_PRETRAINING, f"task.corpus={corpus_file}", "trainer.max_steps=10"))
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    pretrained = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    write_glue_task(tmp_path / "SST-2", "sst2", train=200, dev=40, test=10)
    cfg = make_config(
        "task=glue/sst2",
        f"task.data_dir={tmp_path / 'SST-2'}",
        f"model.init={checkpoint}",
        "task.batch_size=16",
        "task.predict_test=true",
        "optimizer.lr=1e-3",
        "trainer.enable_model_summary=false",
        "~callbacks.progress_bar",
        run_dir=tmp_path / "fine",
    )
    train(cfg)
    results = json.loads((tmp_path / "fine" / "results.json").read_text())
    assert results["metrics"]["val/accuracy"] >= 0.9
    assert (tmp_path / "fine" / "SST-2.tsv").exists()
    fine_tuned = torch.load(results["last_checkpoint"], map_location="cpu", weights_only=True)[
        "state_dict"
    ]
    name = "model.bert.embeddings.position_embeddings.weight"  # starts from, then moves away from, pretraining
    assert fine_tuned[name].shape == pretrained[name].shape
    assert torch.allclose(fine_tuned[name], pretrained[name], atol=0.05)


@pytest.mark.parametrize("task", ["glue/rte", "glue/stsb", "custom"])
def test_the_generic_fine_tuning_recipe_keeps_the_chosen_task_and_model(task: str) -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=glue_finetune", f"task={task}", "model=mini"])
    assert (cfg.task.name, cfg.model.name) == (task, "mini")
    assert (cfg.optimizer._target_, cfg.optimizer.lr, cfg.optimizer.eps) == (
        "bertlab.optim.BertAdam",
        2e-5,
        1e-6,
    )
    assert (cfg.optimizer.warmup_ratio, cfg.task.batch_size, cfg.trainer.max_epochs) == (0.1, 32, 3)


CLASSIFICATION_TASKS = [f"glue/{task}" for task in sorted(GLUE_REPORTED)] + [
    "snli",
    "xnli",
    "imdb",
    "custom",
]


@pytest.mark.parametrize("task", CLASSIFICATION_TASKS)
def test_every_classification_task_brings_the_reference_fine_tuning_defaults(task: str) -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"task={task}"])
    assert (cfg.optimizer.lr, cfg.optimizer.eps, cfg.optimizer.warmup_ratio) == (2e-5, 1e-6, 0.1)
    assert (cfg.trainer.max_epochs, cfg.task.batch_size, cfg.task.max_seq_length) == (3, 32, 128)
    assert cfg.task.datamodule == "bertlab.data.classification.ClassificationDataModule"


def test_results_count_the_skipped_rows_on_every_run(tmp_path: Path) -> None:
    """QQP's malformed rows: counted in results.json by the run that reads them and by a rerun
    that takes the tokenized splits from the cache (issue 15)."""
    write_glue_task(tmp_path / "data", "qqp", train=24, dev=8, test=2)
    with open(tmp_path / "data" / "train.tsv", "a", encoding="utf-8") as out:
        out.write("363362\t493340\t493341\tHow do I ask a question\n")
    expected = {"examples": 24, "skipped_malformed_rows": 1, "dropped_rows_by_label": {}}
    for run in ("first", "cached"):
        results = run_task(tmp_path, "glue/qqp", tmp_path / "data", "trainer.max_steps=1")
        assert results["data"]["train"] == expected, run
        assert results["data"]["val"]["skipped_malformed_rows"] == 0, run
