"""The GLUE suite's settings (bertlab/glue_suite.py): each task reads its folder with its reference
settings, the command line wins, a missing folder is named before any training.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from bertlab.errors import ConfigError
from bertlab.glue import GLUE_TASKS
from bertlab.glue_suite import check_task_dirs

from support.data import write_glue_download
from support.runs import CONF_DIR

TASKS = [key.split("/")[1] for key in GLUE_TASKS]


@pytest.mark.parametrize("name", TASKS)
def test_each_task_reads_its_folder_with_its_reference_settings(name: str) -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train", overrides=["experiment=glue_suite", f"glue_task={name}", "glue_dir=/g"]
        )
    task = GLUE_TASKS[f"glue/{name}"]
    assert (cfg.task.name, cfg.task.data_dir) == (f"glue/{name}", f"/g/{task.directory}")
    assert (cfg.optimizer._target_, cfg.optimizer.lr, cfg.optimizer.warmup_ratio) == (
        "bertlab.optim.BertAdam",
        2e-5,
        0.1,
    )
    reference = {"sst2": (16, 128, 4, 1e-6), "mnli": (32, 80, 3, 1e-8), "wnli": (32, 128, 5, 1e-6)}
    expected = reference.get(name, (32, 128, 3, 1e-6))
    found = (
        cfg.task.batch_size,
        cfg.task.max_seq_length,
        cfg.trainer.max_epochs,
        cfg.optimizer.eps,
    )
    assert found == expected


def test_command_line_overrides_win_over_the_suite_settings() -> None:
    overrides = [
        "experiment=glue_suite",
        "glue_task=sst2",
        "optimizer.lr=1e-5",
        "task.batch_size=8",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "trainer.max_epochs=1", "glue_dir=/g"])
    assert (cfg.optimizer.lr, cfg.task.batch_size, cfg.trainer.max_epochs) == (1e-5, 8, 1)


def test_a_missing_task_folder_names_glue_dir_and_the_folder(tmp_path: Path) -> None:
    write_glue_download(tmp_path / "glue", diagnostic=False)
    (tmp_path / "glue" / "QNLI" / "train.tsv").unlink()
    (tmp_path / "glue" / "QNLI" / "dev.tsv").unlink()
    (tmp_path / "glue" / "QNLI" / "test.tsv").unlink()
    (tmp_path / "glue" / "QNLI").rmdir()
    with pytest.raises(ConfigError, match=r"glue_dir=.*glue: no QNLI/ folder for glue_task=qnli"):
        check_task_dirs(str(tmp_path / "glue"), TASKS, predict_test=False)
    check_task_dirs(str(tmp_path / "glue"), ["rte", "mrpc"], predict_test=False)
    with pytest.raises(ConfigError, match="diagnostic/diagnostic.tsv"):
        check_task_dirs(str(tmp_path / "glue"), ["mnli"], predict_test=True)
    with pytest.raises(ConfigError, match="glue_dir is not set"):
        check_task_dirs(None, TASKS, predict_test=False)
