"""SQuAD data, windows, decoding and the metric; end to end on a generated, learnable set."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from bertlab.cli.train import train
from bertlab.errors import DataError
from bertlab.data.squad import (
    NOT_CONTEXT,
    QuestionAnsweringDataModule,
    SquadEvalSet,
    SquadExample,
    SquadSplit,
    WindowSettings,
    build_features,
    max_context_flags,
    read_squad_file,
    window_starts,
)
from bertlab.metrics_squad import SquadMetric
from bertlab.qa_postprocess import DecodingSettings, Window, decode_question, write_answer_files
from bertlab.squad_eval import evaluate_file
from bertlab.tasks.qa import QuestionAnsweringModule
from bertlab.tokenizer import train_wordpiece

WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "green",
    "table",
    "music",
    "paper",
    "light",
    "window",
    "garden",
    "silver",
    "orange",
    "forest",
    "bridge",
    "candle",
    "planet",
    "ocean",
    "thunder",
    "violet",
]
QUESTION = "what is the code?"


def generated_squad(num_questions: int, seed: int, unanswerable: float = 0.0) -> dict:
    """A SQuAD file whose answer is always the word after "code:" (absent when unanswerable)."""
    rng = random.Random(seed)
    version_2 = unanswerable > 0
    paragraphs = []
    for number in range(num_questions):
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 40))]
        impossible = rng.random() < unanswerable
        answer = rng.choice(WORDS).capitalize() + "é"
        if not impossible:
            position = rng.randrange(len(words))
            words[position:position] = ["code:", answer]
        context = " ".join(words)
        answers = (
            [] if impossible else [{"text": answer, "answer_start": context.index("code: ") + 6}]
        )
        qa = {"id": f"q{number}", "question": QUESTION, "answers": answers}
        if version_2:
            qa["is_impossible"] = impossible
        paragraphs.append({"context": context, "qas": [qa]})
    return {
        "version": "v2.0" if version_2 else "1.1",
        "data": [{"title": "generated", "paragraphs": paragraphs}],
    }


def write_squad(directory: Path, name: str, content: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
    return path


def one_paragraph(context: str, qas: list[dict]) -> dict:
    return {
        "version": "1.1",
        "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}],
    }


def qa(qid: str, question: str, context: str, *answers: str) -> dict:
    return {
        "id": qid,
        "question": question,
        "answers": [{"text": text, "answer_start": context.index(text)} for text in answers],
    }


def compose_train_config(overrides: list[str], work_dir: Path) -> DictConfig:
    """The composed `train` config with overrides, writing into work_dir/run and work_dir/cache."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="bertlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.run_dir, cfg.cache_dir = str(work_dir / "run"), str(work_dir / "cache")
    return cfg


@pytest.fixture
def squad_config(tmp_path):
    return lambda *overrides: compose_train_config(list(overrides), tmp_path)


@pytest.fixture(scope="module")
def tokenizer():
    texts = [" ".join(WORDS)] * 3 + ["naïve café résumé, (1990s) U.S.A. code: what is the"] * 3
    return train_wordpiece(texts, vocab_size=200, min_frequency=1)


# ---------------------------------------------------------------- reading


def test_answer_start_that_misses_its_text_names_the_question(tmp_path):
    content = one_paragraph(
        "Paris is in France.",
        [{"id": "bad-1", "question": "?", "answers": [{"text": "France", "answer_start": 3}]}],
    )
    path = write_squad(tmp_path, "train-v1.1.json", content)
    with pytest.raises(
        DataError, match=r"train-v1\.1\.json: question 'bad-1': answer 'France' does not match"
    ):
        read_squad_file(path)


def test_broken_json_names_file_and_line(tmp_path):
    path = tmp_path / "dev-v1.1.json"
    path.write_text('{"data": [\n  oops]}')
    with pytest.raises(DataError, match=r"dev-v1\.1\.json:2: not valid JSON"):
        read_squad_file(path)


def test_missing_local_file_names_task_data_dir(tmp_path):
    write_squad(tmp_path, "train-v1.1.json", generated_squad(2, 0))
    with pytest.raises(FileNotFoundError, match=r"task\.data_dir=.*no dev-v1\.1\.json"):
        QuestionAnsweringDataModule(data_dir=str(tmp_path))


def test_no_local_data_and_no_hub_names_task_data_dir(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed (or offline)
    datamodule = QuestionAnsweringDataModule(cache_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"set task\.data_dir=DIR"):
        datamodule.read_split("validation")


def test_hub_rows_share_paragraphs_and_are_checked(tmp_path, monkeypatch):
    context = "Paris is in France."
    rows = [
        {
            "id": "a",
            "question": "where?",
            "context": context,
            "answers": {"text": ["France"], "answer_start": [12]},
        },
        {
            "id": "b",
            "question": "who?",
            "context": context,
            "answers": {"text": [], "answer_start": []},
        },
    ]
    fake_datasets = types.SimpleNamespace(load_dataset=lambda name, split: rows)
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets)
    datamodule = QuestionAnsweringDataModule(
        hub_dataset="rajpurkar/squad_v2", cache_dir=str(tmp_path)
    )
    split = datamodule.read_split("validation")
    assert split.contexts == [context] and [e.is_impossible for e in split.examples] == [
        False,
        True,
    ]
    rows[0]["answers"]["answer_start"] = [0]
    with pytest.raises(DataError, match=r"rajpurkar/squad_v2:train: question 'a'"):
        datamodule.read_split("train")


# ---------------------------------------------------------------- windows


def test_window_starts_step_by_doc_stride_and_end_at_the_end():
    assert window_starts(10, 4, 3) == [(0, 4), (3, 4), (6, 4)]
    assert window_starts(3, 4, 3) == [(0, 3)]
    assert window_starts(0, 4, 3) == []


def test_each_token_has_max_context_in_exactly_one_window():
    spans = window_starts(25, 8, 3)
    counts = np.zeros(25, dtype=int)
    for span_index, (start, length) in enumerate(spans):
        counts[start : start + length] += max_context_flags(spans, span_index)
    assert (counts == 1).all()
    # token 4 sits in windows (0,8), (3,8): left/right context min(4,3)=3 vs min(1,6)=1.
    assert max_context_flags(spans, 0)[4] and not max_context_flags(spans, 1)[1]


def _features(tokenizer, content: dict, tmp_path, settings: WindowSettings, name="train-v1.1.json"):
    split = read_squad_file(write_squad(tmp_path, name, content))
    return split, build_features(split, tokenizer, settings, with_labels=True, with_offsets=True)


def _labelled_text(split, arrays, row: int) -> str:
    start, end = arrays["start_positions"][row], arrays["end_positions"][row]
    offsets = arrays["offsets"][row]
    context = split.contexts[split.examples[arrays["example_index"][row]].context_index]
    return context[offsets[start, 0] : offsets[end, 1]]


def test_long_context_windows_round_trip_the_answer(tokenizer, tmp_path):
    words = [WORDS[i % len(WORDS)] for i in range(60)]
    words[29:29] = ["code:", "naïve", "café"]  # crosses the boundary of some windows
    context = " ".join(words)
    split, arrays = _features(
        tokenizer,
        one_paragraph(context, [qa("a", QUESTION, context, "naïve café")]),
        tmp_path,
        WindowSettings(24, 6, 8),
    )
    max_context_tokens = 24 - len(tokenizer.encode(QUESTION, add_special_tokens=False).ids) - 3
    num_context_tokens = len(tokenizer.encode(context, add_special_tokens=False).ids)
    assert (
        len(arrays["lengths"]) == len(window_starts(num_context_tokens, max_context_tokens, 6)) > 5
    )
    labelled = arrays["start_positions"] > 0
    assert labelled.any() and (~labelled).any()  # windows with and without the whole answer
    for row in np.nonzero(labelled)[0]:
        assert _labelled_text(split, arrays, row) == "naïve café"
    # every window is [CLS] question [SEP] context [SEP] with segment ids to match
    row_length = arrays["lengths"][0]
    assert row_length == 24 and arrays["token_type_ids"][0, row_length - 1] == 1
    assert arrays["offsets"][0, 0, 0] == NOT_CONTEXT


def test_window_that_holds_part_of_the_answer_is_labelled_cls(tokenizer, tmp_path):
    context = "apple river stone cloud green table music paper light window garden silver"
    split, arrays = _features(
        tokenizer,
        one_paragraph(context, [qa("a", QUESTION, context, "cloud green table")]),
        tmp_path,
        WindowSettings(12, 2, 4),
    )
    # 12 - 4 question tokens - 3 = 5 context tokens a window, stride 2: 0-4, 2-6, 4-8, ...;
    # the answer is tokens 3-5.
    texts = [
        _labelled_text(split, arrays, row) if arrays["start_positions"][row] else ""
        for row in range(len(arrays["lengths"]))
    ]
    assert texts[:3] == ["", "cloud green table", ""]


def test_accents_and_punctuation_round_trip_through_offsets(tokenizer, tmp_path):
    context = "In the (1990s), a naïve café—U.S.A.—served résumé-style menus."
    answers = ["(1990s)", "naïve café", "U.S.A.", "résumé"]
    qas = [qa(f"q{i}", QUESTION, context, text) for i, text in enumerate(answers)]
    split, arrays = _features(
        tokenizer, one_paragraph(context, qas), tmp_path, WindowSettings(64, 16, 8)
    )
    assert [_labelled_text(split, arrays, row) for row in range(4)] == answers


def test_question_longer_than_max_query_length_is_cut(tokenizer, tmp_path):
    context = "apple river code: stone"
    question = " ".join(WORDS)  # 20 tokens
    _, arrays = _features(
        tokenizer,
        one_paragraph(context, [qa("a", question, context, "stone")]),
        tmp_path,
        WindowSettings(32, 8, 5),
    )
    assert list(arrays["token_type_ids"][0, :7]) == [0] * 7  # [CLS] + 5 question tokens + [SEP]
    assert arrays["token_type_ids"][0, 7] == 1
    assert (
        arrays["start_positions"][0] == arrays["end_positions"][0] == 7 + 4
    )  # apple river code : stone


# ---------------------------------------------------------------- decoding


def _window(start_logits, end_logits, offsets, max_context=None) -> Window:
    length = len(start_logits)
    return Window(
        start_logits=np.asarray(start_logits, dtype=float),
        end_logits=np.asarray(end_logits, dtype=float),
        offsets=np.asarray(offsets),
        token_is_max_context=np.ones(length, bool)
        if max_context is None
        else np.asarray(max_context),
        length=length,
    )


# [CLS] q [SEP] red fox jumps [SEP]; context "red fox jumps"
CONTEXT = "red fox jumps"
OFFSETS = [[-1, -1], [-1, -1], [-1, -1], [0, 3], [4, 7], [8, 13], [-1, -1]]


def test_decoding_skips_question_tokens_reversed_and_too_long_spans():
    # The best raw pair is start 1 (question) ...; then end < start; then too long.
    start = [0, 9, 0, 1, 5, 8, 0]
    end = [0, 0, 9, 6, 1, 2, 0]
    settings = DecodingSettings(n_best_size=20, max_answer_length=2)
    prediction, nbest, null_odds = decode_question(
        CONTEXT, [_window(start, end, OFFSETS)], settings
    )
    # start 5 (jumps) + end 5 (jumps) = 10; start 4 + end 4 = 6; start 3 + end 4 = 7 ...
    assert prediction == "jumps" and null_odds is None
    assert nbest[0] == {
        "text": "jumps",
        "probability": pytest.approx(nbest[0]["probability"]),
        "start_logit": 8.0,
        "end_logit": 2.0,
    }
    assert "red fox jumps" not in [entry["text"] for entry in nbest]  # 3 tokens > max_answer_length
    assert sum(entry["probability"] for entry in nbest) == pytest.approx(1.0)


def test_decoding_keeps_only_max_context_starts():
    start = [0, 0, 0, 1, 9, 2, 0]
    end = [
        0,
        0,
        0,
        1,
        0,
        2,
        0,
    ]  # "fox" (9 + 0) and "fox jumps" (11) start where fox lacks max context
    not_max_at_fox = [True, True, True, True, False, True, True]
    prediction, _, _ = decode_question(
        CONTEXT, [_window(start, end, OFFSETS, not_max_at_fox)], DecodingSettings()
    )
    assert prediction == "jumps"


def test_v2_null_score_is_the_min_over_windows_against_the_threshold():
    windows = [
        _window([4, 0, 0, 3, 0, 0, 0], [4, 0, 0, 3, 0, 0, 0], OFFSETS),  # null 8, "red" 6
        _window([1, 0, 0, 0, 0, 2, 0], [2, 0, 0, 0, 0, 2, 0], OFFSETS),  # null 3, "jumps" 4
    ]
    answer = decode_question(CONTEXT, windows, DecodingSettings(version_2_with_negative=True))
    prediction, nbest, null_odds = answer
    assert null_odds == pytest.approx(3 - 6)  # min null (3) - best span (6)
    assert prediction == "red"
    assert "" in [entry["text"] for entry in nbest]
    strict = DecodingSettings(version_2_with_negative=True, null_score_diff_threshold=-4.0)
    assert decode_question(CONTEXT, windows, strict)[0] == ""


def test_answer_files_in_the_official_formats(tmp_path):
    windows = [_window([1, 0, 0, 0, 0, 2, 0], [2, 0, 0, 0, 0, 2, 0], OFFSETS)]
    from bertlab.qa_postprocess import decode_answers

    answers = decode_answers(
        ["q"], [CONTEXT], [windows], DecodingSettings(version_2_with_negative=True)
    )
    write_answer_files(answers, tmp_path, version_2_with_negative=True)
    assert json.loads((tmp_path / "predictions.json").read_text()) == {"q": "jumps"}
    assert json.loads((tmp_path / "null_odds.json").read_text()) == {"q": pytest.approx(-1.0)}
    nbest = json.loads((tmp_path / "nbest_predictions.json").read_text())["q"]
    assert set(nbest[0]) == {"text", "probability", "start_logit", "end_logit"}


# ---------------------------------------------------------------- data module and metric


def _datamodule(tmp_path, tokenizer, version_2=False, **settings) -> QuestionAnsweringDataModule:
    suffix = "v2.0" if version_2 else "v1.1"
    write_squad(
        tmp_path / "data", f"train-{suffix}.json", generated_squad(30, 0, 0.5 if version_2 else 0.0)
    )
    write_squad(
        tmp_path / "data", f"dev-{suffix}.json", generated_squad(12, 1, 0.5 if version_2 else 0.0)
    )
    datamodule = QuestionAnsweringDataModule(
        data_dir=str(tmp_path / "data"),
        train_file=f"train-{suffix}.json",
        dev_file=f"dev-{suffix}.json",
        version_2_with_negative=version_2,
        cache_dir=str(tmp_path / "cache"),
        **{
            "max_seq_length": 32,
            "doc_stride": 8,
            "max_query_length": 8,
            "batch_size": 4,
            **settings,
        },
    )
    datamodule.set_tokenizer(tokenizer)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def test_batches_are_int64_dicts_and_features_are_cached(tmp_path, tokenizer):
    datamodule = _datamodule(tmp_path, tokenizer)
    train = next(iter(datamodule.train_dataloader()))
    assert set(train) == {
        "input_ids",
        "token_type_ids",
        "attention_mask",
        "start_positions",
        "end_positions",
    }
    assert all(value.dtype == torch.int64 for value in train.values())
    validation = next(iter(datamodule.val_dataloader()))
    assert "feature_index" in validation and "start_positions" not in validation
    assert (
        validation["attention_mask"].sum(1)
        == torch.from_numpy(datamodule.eval_set().lengths[validation["feature_index"].numpy()])
    ).all()
    entries = sorted((tmp_path / "cache" / "squad-features").glob("*/complete.json"))
    assert len(entries) == 2
    again = _datamodule(tmp_path, tokenizer)  # same files, tokenizer, settings: cache hit
    assert len(again.eval_set().lengths) == len(datamodule.eval_set().lengths)
    assert sorted((tmp_path / "cache" / "squad-features").glob("*/complete.json")) == entries


def _oracle_logits(eval_set, rows, width):
    """Logits that point at each window's gold answer (or [CLS] when it has none)."""
    start = torch.full((len(rows), width), -5.0)
    end = torch.full((len(rows), width), -5.0)
    for position, row in enumerate(rows):
        example = eval_set.split.examples[eval_set.example_index[row]]
        offsets = eval_set.offsets[row]
        token_start, token_end = 0, 0
        if example.answer_texts:
            answer_start = example.answer_starts[0]
            answer_end = answer_start + len(example.answer_texts[0])
            inside = np.nonzero(
                (offsets[:, 0] >= answer_start)
                & (offsets[:, 1] <= answer_end)
                & (offsets[:, 0] >= 0)
            )[0]
            whole = (
                len(inside)
                and offsets[inside[0], 0] == answer_start
                and offsets[inside[-1], 1] == answer_end
            )
            if whole:
                token_start, token_end = inside[0], inside[-1]
        start[position, token_start] = 5.0
        end[position, token_end] = 5.0
    return start, end


@pytest.mark.parametrize("version_2", [False, True])
def test_metric_scores_each_question_once_whatever_the_order(tmp_path, tokenizer, version_2):
    datamodule = _datamodule(tmp_path, tokenizer, version_2=version_2)
    eval_set = datamodule.eval_set()
    rows = np.arange(len(eval_set.lengths))
    metric = SquadMetric(32, version_2_with_negative=version_2)
    metric.eval_set = eval_set
    # As two ranks would send them: interleaved, out of order, one window twice.
    for shard in (rows[1::2], rows[::2], rows[:1]):
        start, end = _oracle_logits(eval_set, shard, 32)
        width = int(eval_set.lengths[shard].max())  # batches are cut to their longest window
        metric.update(torch.as_tensor(shard), start[:, :width], end[:, :width])
    figures = metric.compute()
    assert figures["exact_match"] == 100.0 and figures["f1"] == 100.0
    assert len(metric.answers.predictions) == len(eval_set.split.examples)
    if version_2:
        assert figures["HasAns_exact"] == 100.0 and figures["NoAns_exact"] == 100.0
        assert set(metric.answers.null_odds) == set(metric.answers.predictions)


def test_question_without_windows_gets_an_empty_answer(tokenizer):
    split = SquadSplit(
        contexts=["apple code: river", ""],
        examples=[
            SquadExample("has", QUESTION, 0, ("river",), (12,), False),
            SquadExample("empty", QUESTION, 1, (), (), True),
        ],
        source="memory",
    )
    arrays = build_features(
        split, tokenizer, WindowSettings(32, 8, 8), with_labels=False, with_offsets=True
    )
    assert list(arrays["example_index"]) == [0]  # no window for the empty context
    eval_set = SquadEvalSet(
        split,
        arrays["example_index"],
        arrays["offsets"],
        arrays["token_is_max_context"],
        arrays["lengths"],
    )
    metric = SquadMetric(32, version_2_with_negative=True)
    metric.eval_set = eval_set
    start, end = _oracle_logits(eval_set, [0], 32)
    metric.update(torch.tensor([0]), start, end)
    figures = metric.compute()
    assert metric.answers.predictions == {"has": "river", "empty": ""}
    assert figures["exact_match"] == 100.0 and figures["NoAns_exact"] == 100.0


# ---------------------------------------------------------------- end to end


def _train(tmp_path: Path, version_2: bool, extra: list[str], sizes=(800, 100)) -> dict:
    """`bertlab-train task=squad/v1|v2` in-process on a generated set; returns results.json metrics."""
    suffix = "v2.0" if version_2 else "v1.1"
    unanswerable = 0.4 if version_2 else 0.0
    data_dir = tmp_path / "data"
    write_squad(data_dir, f"train-{suffix}.json", generated_squad(sizes[0], 0, unanswerable))
    write_squad(data_dir, f"dev-{suffix}.json", generated_squad(sizes[1], 1, unanswerable))
    overrides = [
        f"task=squad/{'v2' if version_2 else 'v1'}", f"task.data_dir={data_dir}",
        "task.max_seq_length=48", "task.doc_stride=16", "task.max_query_length=8",
        "task.batch_size=32", "tokenizer.vocab_size=200", "trainer.max_epochs=2",
        "optimizer.lr=1e-3",  # a tiny model on a toy rule: the reference 3e-5 is far too low
        "~callbacks.progress_bar", "trainer.enable_model_summary=false", *extra,
    ]  # fmt: skip
    train(compose_train_config(overrides, tmp_path))
    run_dir = tmp_path / "run"
    results = json.loads((run_dir / "results.json").read_text())
    official_files = ["predictions.json", "nbest_predictions.json", "squad_eval.json"]
    official_files += ["null_odds.json"] if version_2 else []
    assert all((run_dir / name).exists() for name in official_files)
    print(f"{tmp_path.name}: {results['metrics']} in {results['wall_seconds']} s")  # pytest -s
    return results["metrics"]


@pytest.fixture(scope="module")
def pretrained_tiny(tmp_path_factory) -> Path:
    """BERT-tiny pretrained by bertlab (MLM + NSP, a few seconds) on text like the contexts."""
    work_dir = tmp_path_factory.mktemp("pretrain")
    lines = []
    for paragraph in generated_squad(400, seed=7)["data"][0]["paragraphs"]:
        words = paragraph["context"].split()
        lines += [" ".join(words[i : i + 8]) + "." for i in range(0, len(words), 8)] + [""]
    corpus = work_dir / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    overrides = [
        f"task.corpus={corpus}", "trainer.max_steps=60", "task.batch_size=16", "task.max_seq_length=64",
        "task.dupe_factor=2", "task.num_workers=0", "task.val_fraction=0.2", "tokenizer.vocab_size=300",
        "tokenizer.min_frequency=1", "~callbacks.progress_bar", "trainer.enable_model_summary=false",
    ]  # fmt: skip
    train(compose_train_config(overrides, work_dir))
    return work_dir / "run" / "checkpoints" / "last.ckpt"


def test_task_files_bring_the_reference_recipe(squad_config):
    cfg = squad_config("task=squad/v2")
    assert (cfg.optimizer.lr, cfg.trainer.max_epochs, cfg.task.batch_size) == (3e-5, 2, 12)
    assert (cfg.task.max_seq_length, cfg.task.doc_stride, cfg.task.max_query_length) == (
        384,
        128,
        64,
    )
    large = squad_config("experiment=squad_v2_large")
    assert (large.task.batch_size, large.trainer.accumulate_grad_batches) == (4, 8)
    assert large.task.null_score_diff_threshold == -2.0 and large.model.num_layers == 24


def _dev_answers(tmp_path: Path) -> list[list]:
    dev = json.loads((tmp_path / "data" / "dev-v2.0.json").read_text())
    return [qa["answers"] for paragraph in dev["data"][0]["paragraphs"] for qa in paragraph["qas"]]


def test_bertlab_train_squad_v2_writes_scores_and_official_files(tmp_path):
    metrics = _train(tmp_path, version_2=True, extra=["trainer.max_steps=2"], sizes=(24, 12))
    assert {"val/exact_match", "val/f1", "val/HasAns_exact", "val/NoAns_f1", "val/best_f1"} <= set(
        metrics
    )
    no_answer_share = 100 * sum(1 for answer in _dev_answers(tmp_path) if not answer) / 12
    assert metrics["val/no_answer_exact_match"] == pytest.approx(no_answer_share)
    run_dir = tmp_path / "run"
    predictions = json.loads((run_dir / "predictions.json").read_text())
    null_odds = json.loads((run_dir / "null_odds.json").read_text())
    assert len(predictions) == len(null_odds) == 12
    # The logged scores are the official script's on the written files.
    dev = json.loads((tmp_path / "data" / "dev-v2.0.json").read_text())
    official = evaluate_file(dev, predictions, null_odds)
    assert json.loads((run_dir / "squad_eval.json").read_text()) == official
    assert metrics["val/f1"] == pytest.approx(official["f1"]) and metrics[
        "val/best_f1"
    ] == pytest.approx(official["best_f1"])
    # The checkpoint rebuilds the module without Hydra or the data.
    module = QuestionAnsweringModule.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    ids = torch.tensor([[2, 7, 3, 9, 3]])
    start_logits, end_logits = module.model.eval()(ids, torch.zeros_like(ids), torch.ones_like(ids))
    assert (
        start_logits.shape == end_logits.shape == (1, 5) and module.hparams.version_2_with_negative
    )


@pytest.mark.slow
def test_pretrained_tiny_learns_squad_v1_rule(pretrained_tiny, tmp_path):
    metrics = _train(tmp_path, version_2=False, extra=[f"model.init={pretrained_tiny}"])
    assert metrics["val/exact_match"] >= 90.0


@pytest.mark.slow
def test_pretrained_tiny_learns_squad_v2_rule_with_unanswerable_questions(
    pretrained_tiny, tmp_path
):
    metrics = _train(
        tmp_path, version_2=True, extra=[f"model.init={pretrained_tiny}", "trainer.max_epochs=3"]
    )
    assert metrics["val/HasAns_exact"] > 80.0 and metrics["val/NoAns_exact"] > 80.0


@pytest.mark.slow
def test_ddp_on_two_ranks_scores_each_question_once(tmp_path):
    """Two CPU ranks (gloo): the figures equal the official script's on rank 0's files."""
    write_squad(tmp_path / "data", "train-v1.1.json", generated_squad(64, 0))
    dev = write_squad(tmp_path / "data", "dev-v1.1.json", generated_squad(31, 1))  # uneven ranks
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "bertlab.cli.train", "task=squad/v1", f"task.data_dir={tmp_path / 'data'}",
        "task.max_seq_length=48", "task.doc_stride=16", "task.max_query_length=8", "task.eval_batch_size=4",
        "tokenizer.vocab_size=200", "optimizer.lr=1e-3", "trainer=ddp", "trainer.accelerator=cpu",
        "trainer.devices=2", "trainer.precision=32-true", "trainer.max_steps=2",
        "~callbacks.progress_bar", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    env = {**os.environ, "BERTLAB_CACHE": str(tmp_path / "cache")}
    subprocess.run(command, check=True, env=env, cwd=tmp_path, capture_output=True, timeout=300)
    predictions = json.loads((run_dir / "predictions.json").read_text())
    assert len(predictions) == 31
    official = evaluate_file(json.loads(dev.read_text()), predictions)
    metrics = json.loads((run_dir / "results.json").read_text())["metrics"]
    assert metrics["val/exact_match"] == pytest.approx(official["exact_match"])
    assert metrics["val/f1"] == pytest.approx(official["f1"])
