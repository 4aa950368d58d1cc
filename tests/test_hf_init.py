import json
from pathlib import Path

import pytest
from test_hf import BERTLAB_MODEL, save_hf_model, tiny_tokenizer
from test_readers import write_glue_task

from bertlab.checkpoints.restore import load_module
from bertlab.cli.train import train

FAST_FINE_TUNE = [
    "task=glue/sst2",
    "task.batch_size=8",
    "task.max_seq_length=32",
    "trainer.max_steps=2",
    "trainer.max_epochs=1",
    "trainer.enable_model_summary=false",
    "~callbacks.progress_bar",
]


def test_model_init_hf_directory_brings_its_architecture(make_config, tmp_path: Path) -> None:
    save_hf_model(tmp_path / "hf", "BertForPreTraining", tiny_tokenizer())
    write_glue_task(tmp_path / "SST-2", "sst2", train=16, dev=8, test=4)
    overrides = [
        *FAST_FINE_TUNE,
        f"task.data_dir={tmp_path / 'SST-2'}",
        f"model.init={tmp_path / 'hf'}",
    ]
    train(make_config(*overrides), overrides=overrides)  # model=tiny by default: not chosen
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    module, _ = load_module(results["last_checkpoint"])
    assert {k: module.hparams.model[k] for k in BERTLAB_MODEL} == BERTLAB_MODEL

    chosen = [*overrides, "model=tiny"]
    with pytest.raises(
        ValueError, match=r"model.hidden_size=128 but model.init=.* has hidden_size=32"
    ):
        train(make_config(*chosen, run_dir=tmp_path / "chosen"), overrides=chosen)
