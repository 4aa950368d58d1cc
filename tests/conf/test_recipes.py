"""Recipes (conf/experiment) and task files compose to the reference settings
(shared/ANCHORS.md).
"""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from support.data import GLUE_LABELS
from support.runs import CONF_DIR, compose_train_config

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


CLASSIFICATION_TASKS = [f"glue/{task}" for task in sorted(GLUE_LABELS)] + [
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


@pytest.fixture
def squad_config(tmp_path):
    return lambda *overrides: compose_train_config(list(overrides), tmp_path)


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


def test_mask_split_must_leave_a_share_to_keep(make_config) -> None:
    from bertlab.validation import validate_config

    cfg = make_config("task.mask_token_prob=0.8", "task.random_token_prob=0.3")
    with pytest.raises(ValueError, match="task.random_token_prob=0.3: task.mask_token_prob=0.8"):
        validate_config(cfg)
