"""Fine-tuning: bertlab (Lightning) vs the transformers Trainer at its fastest settings.

Both sides: `model=mini` (random init), the same WordPiece tokenizer and the very same
token ids of generated single-sentence data with SST-2-like lengths (median ~10 words, a
long tail to ~55), batch 32, max length 128, AdamW lr 2e-5 with 10% warmup, gradient
clipping 1.0, dropout on, one epoch per repetition, no evaluation or checkpoints; fp32 by
default, `--precision bf16` runs both under bf16 autocast (the transformers docs' advice
for CPUs with bf16 instructions).

Both sides batch sentences of similar length and pad each batch to its own longest
sentence: bertlab draws each batch from one length bucket (`task.num_buckets`), the
Trainer runs with `train_sampling_strategy="group_by_length"` (its LengthGroupedSampler),
`DataCollatorWithPadding`, SDPA attention and the fused AdamW kernel (common.
fast_training_arguments).

Each side's useful model FLOP/s (common.classification_flops over the real tokens of the
sentences, the same figure for both) is printed as a share of the matrix-multiply rate
the script measures at the same precision and thread count.

    python benchmarks/finetune.py
    python benchmarks/finetune.py --examples 4096 --repetitions 7
    python benchmarks/finetune.py --examples 64 --repetitions 1     # a smoke run
"""

from __future__ import annotations

import argparse
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch
from common import (
    MatmulLimit,
    bertlab_allocator,
    classification_flops,
    fast_training_arguments,
    hf_config,
    interleaved_rates,
    load,
    machine,
    model_settings,
    report,
)
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict

from bertlab import pipeline

WORDS = [
    "the",
    "a",
    "film",
    "movie",
    "story",
    "acting",
    "plot",
    "performance",
    "director",
    "script",
    "scene",
    "moment",
    "character",
    "funny",
    "boring",
    "brilliant",
    "dull",
    "charming",
    "painful",
    "sharp",
    "clumsy",
    "warm",
    "cold",
    "honest",
    "hollow",
    "never",
    "always",
    "quite",
    "rather",
    "too",
    "very",
    "almost",
    "barely",
    "truly",
    "simply",
    "often",
    "rarely",
    "love",
    "hate",
    "enjoy",
    "waste",
    "admire",
    "miss",
    "feel",
    "watch",
    "remember",
    "forget",
    "laugh",
    "cry",
    "and",
    "but",
    "or",
    "yet",
    "so",
    "because",
    "while",
    "though",
    "if",
    "when",
]


def sst2_like_length(rng: random.Random) -> int:
    """Words per sentence: log-normal around 10 words, clipped to 1..55 like SST-2's."""
    return max(1, min(55, round(rng.lognormvariate(2.3, 0.6))))


def write_data(directory: Path, examples: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for name, count in (("train.tsv", examples), ("dev.tsv", 64)):
        rows = ["sentence\tlabel"]
        for _ in range(count):
            words = rng.choices(WORDS, k=sst2_like_length(rng))
            rows.append(f"{' '.join(words)}\t{rng.randint(0, 1)}")
        (directory / name).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return directory


def bertlab_config(data_dir: Path, work: Path, model: str):
    conf_dir = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "task=custom",
                f"task.data_dir={data_dir}",
                "task.train_file=train.tsv",
                "task.val_files.val=dev.tsv",
                "task.text_columns=[sentence]",
                "task.batch_size=32",
                "task.max_seq_length=128",
                f"model={model}",
                "tokenizer.vocab_size=2000",
                "tokenizer.min_frequency=1",
            ],
        )
    with open_dict(cfg):
        cfg.run_dir = str(work / "run")
        cfg.cache_dir = str(work / "cache")
    return cfg


def bertlab_epoch(cfg, precision: str) -> tuple[Callable[[], int], object, object]:
    """One epoch of bertlab fine-tuning per call; also returns the tokenizer and the data."""
    pl.seed_everything(0)
    datamodule = pipeline.build_datamodule(cfg)
    tokenizer = pipeline.resolve_tokenizer(cfg, datamodule, init=None)
    datamodule.set_tokenizer(tokenizer)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = pipeline.build_module(cfg, datamodule, tokenizer, init=None)

    def run() -> int:
        trainer = instantiate(
            cfg.trainer,
            max_epochs=1,
            precision="bf16-mixed" if precision == "bf16" else cfg.trainer.precision,
            limit_val_batches=0,
            logger=False,
            callbacks=[],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(module, datamodule=datamodule)
        return len(datamodule.splits["train"])

    return run, tokenizer, datamodule


def transformers_epoch(
    settings: dict, tokenizer, datamodule, work: Path, precision: str
) -> Callable[[], int]:
    from transformers import (
        BertForSequenceClassification,
        DataCollatorWithPadding,
        PreTrainedTokenizerFast,
        Trainer,
    )

    hf_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    split = datamodule.splits["train"]
    # The very token ids bertlab trains on, so both sides see identical inputs.
    dataset = [
        {
            "input_ids": split.input_ids[split.offsets[i] : split.offsets[i + 1]].tolist(),
            "labels": int(split.labels[i]),
        }
        for i in range(len(split))
    ]
    torch.manual_seed(0)
    model = BertForSequenceClassification(
        hf_config(
            settings,
            tokenizer.get_vocab_size(),
            num_labels=2,
            attn_implementation="sdpa",
        )
    )
    arguments = trainer_arguments(work, precision)
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=dataset,
        data_collator=DataCollatorWithPadding(hf_tokenizer),
    )

    def run() -> int:
        trainer.train()
        return len(dataset)

    return run


def trainer_arguments(work: Path, precision: str):
    """The Trainer's settings: the bertlab side's regime, transformers' fastest mechanics."""
    return fast_training_arguments(
        str(work / "hf"),
        precision,
        "cpu",
        per_device_train_batch_size=32,
        num_train_epochs=1,
        learning_rate=2e-5,
        warmup_steps=0.1,  # a float below 1 is a ratio of the total steps
        weight_decay=0.01,
        adam_epsilon=1e-6,
        max_grad_norm=1.0,
        lr_scheduler_type="linear",
    )


def padding_share(datamodule) -> str:
    split = datamodule.splits["train"]
    lengths = split.lengths
    return f"tokens per sentence: mean {lengths.mean():.1f}, max {lengths.max()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2048, help="training sentences")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--model", default="mini")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    args = parser.parse_args()
    print(f"machine: {machine()}; {bertlab_allocator()}; {load()}")
    limit = MatmulLimit("cpu", args.precision)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cfg = bertlab_config(write_data(work / "data", args.examples), work, args.model)
        bertlab_run, tokenizer, datamodule = bertlab_epoch(cfg, args.precision)
        print(padding_share(datamodule))
        settings = model_settings(args.model)
        lengths = datamodule.splits["train"].lengths
        flops = classification_flops(settings, lengths, num_labels=2).mean()
        sides = {
            "transformers Trainer": transformers_epoch(
                settings, tokenizer, datamodule, work, args.precision
            ),
            "bertlab": bertlab_run,
        }
        rates = interleaved_rates(sides, args.repetitions, limit=limit)
    print(limit)
    report(
        f"fine-tuning, model={args.model}, batch 32, max length 128, {args.examples} "
        f"SST-2-like sentences, {args.precision}",
        rates,
        baseline="transformers Trainer",
        candidate="bertlab",
        flops_per_sample=float(flops),
        limit=limit.rate,
    )


if __name__ == "__main__":
    main()
