"""SQuAD files in the official layout, for the tests of bertlab.qa and the SQuAD metric."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict
from tokenizers import Tokenizer

from bertlab.qa.datamodule import QuestionAnsweringDataModule
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


def squad_tokenizer() -> Tokenizer:
    """A WordPiece vocabulary of the generated words, accents and punctuation."""
    texts = [" ".join(WORDS)] * 3 + ["naïve café résumé, (1990s) U.S.A. code: what is the"] * 3
    return train_wordpiece(texts, vocab_size=200, min_frequency=1)


def squad_datamodule(
    tmp_path, tokenizer, version_2=False, write=True, **settings
) -> QuestionAnsweringDataModule:
    """A prepared data module on tmp_path/data (generated files unless `write` is false)."""
    suffix = "v2.0" if version_2 else "v1.1"
    if write:
        unanswerable = 0.5 if version_2 else 0.0
        write_squad(tmp_path / "data", f"train-{suffix}.json", generated_squad(30, 0, unanswerable))
        write_squad(tmp_path / "data", f"dev-{suffix}.json", generated_squad(12, 1, unanswerable))
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


def oracle_logits(eval_set, rows, width):
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
