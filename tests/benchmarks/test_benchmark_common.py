"""benchmarks/common.py: useful-FLOP counts, the measured matmul rate, transformers' settings."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
TINY = {"hidden_size": 128, "num_layers": 2, "intermediate_size": 512}


@pytest.fixture
def common(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import it as `common`
    return importlib.import_module("common")


def standard_estimate(settings: dict, tokens: int) -> float:
    """6 x matrix weights x tokens + 12 L H T^2 (the PaLM / nanoGPT MFU formula)."""
    hidden, layers = settings["hidden_size"], settings["num_layers"]
    weights = layers * (4 * hidden * hidden + 2 * hidden * settings["intermediate_size"])
    return 6 * weights * tokens + 12 * layers * hidden * tokens**2


def test_every_row_read_is_the_standard_estimate(common):
    # SQuAD reads every position: the encoder part is the standard formula, plus the span head.
    tokens = 384
    flops = common.question_answering_flops(TINY, tokens)
    assert flops == pytest.approx(standard_estimate(TINY, tokens) + 6 * tokens * 2 * 128)


def test_rows_not_read_by_a_head_are_not_useful_work(common):
    hidden, intermediate, tokens = 128, 512, 128
    # Only [CLS]: the last layer's keys and values cover all tokens, the rest one row.
    unread = tokens - 1
    saved = 6 * unread * (2 * hidden * hidden + 2 * hidden * intermediate + 2 * hidden * tokens)
    head = 6 * (hidden * hidden + hidden * 2)
    assert common.classification_flops(TINY, tokens, num_labels=2) == pytest.approx(
        standard_estimate(TINY, tokens) - saved + head
    )


def test_pretraining_counts_the_mlm_decoder_at_masked_positions_only(common):
    vocab, tokens = 30522, 128
    few = common.pretraining_flops(TINY, tokens, masked=19, vocab_size=vocab)
    more = common.pretraining_flops(TINY, tokens, masked=20, vocab_size=vocab)
    # one more masked position: its last-layer row (query, output, feed-forward, attention
    # over all tokens), its MLM transform and decoder row
    last_row = 2 * 128 * 128 + 2 * 128 * 512 + 2 * 128 * tokens
    assert more - few == pytest.approx(6 * (last_row + 128 * 128 + 128 * vocab))


def test_padding_is_not_counted_and_arrays_of_short_ints_do_not_overflow(common):
    lengths = np.array([10, 300], dtype=np.int16)
    flops = common.classification_flops(TINY, lengths, num_labels=2)
    assert flops[0] == pytest.approx(common.classification_flops(TINY, 10, 2))
    assert flops[1] == pytest.approx(common.classification_flops(TINY, 300, 2))
    assert flops[1] > 0


def test_matmul_rate_is_a_positive_flop_rate(common):
    assert 1e6 < common.matmul_rate("cpu", "fp32", size=128, timings=1) < 1e15


def test_the_limit_takes_the_faster_library_and_both_compute_the_square_product(common):
    import torch

    a, b = torch.randn(64, 64), torch.randn(64, 64)
    products = common.square_products(a, b)
    assert set(products) == {"torch.mm"} | (
        {"oneDNN"} if torch.backends.mkldnn.is_available() else set()
    )
    torch.testing.assert_close(products["torch.mm"](), a @ b)
    if "oneDNN" in products:
        torch.testing.assert_close(products["oneDNN"](), a @ b.t(), rtol=1e-5, atol=1e-4)


def test_the_limit_is_measured_in_every_repetition_and_the_shares_use_its_best_reading(
    common, monkeypatch, capsys
):
    readings = iter([100e9, 180e9, 90e9, 150e9])  # a slow first reading, as on a shared VM
    monkeypatch.setattr(common, "matmul_rate", lambda *args, **kwargs: next(readings))
    limit = common.MatmulLimit()
    order = []
    sides = {"a": lambda: order.append("a") or 1, "b": lambda: order.append("b") or 1}
    original_measure = limit.measure
    monkeypatch.setattr(limit, "measure", lambda: order.append("limit") or original_measure())
    common.interleaved_samples(sides, repetitions=3, warmup=1, limit=limit)
    # warm-up a, b; then every repetition measures the limit before its sides
    assert order == ["a", "b", "limit", "a", "b", "limit", "b", "a", "limit", "a", "b"]
    assert limit.rate == 180e9
    assert "180.0 GFLOP/s, the best of 4 readings" in str(limit) and "lowest 90.0" in str(limit)
    # A product at 120 GFLOP/s reads as 67% of the best reading, not 120% of the first.
    assert "66.7% of the matmul rate" in common.share_line(1.0, 120e9, limit.rate)


def test_transformers_runs_length_grouped_with_fused_adamw(common, tmp_path):
    from transformers import BertConfig, BertForSequenceClassification, Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    arguments = common.fast_training_arguments(
        str(tmp_path), "bf16", "cpu", per_device_train_batch_size=4
    )
    assert arguments.optim == "adamw_torch_fused"
    assert arguments.bf16 and arguments.use_cpu
    config = BertConfig(
        vocab_size=50,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        attn_implementation="sdpa",
    )
    dataset = [{"input_ids": list(range(1, 2 + i)), "labels": i % 2} for i in range(16)]
    trainer = Trainer(
        model=BertForSequenceClassification(config), args=arguments, train_dataset=dataset
    )
    assert isinstance(trainer._get_train_sampler(), LengthGroupedSampler)


def test_step_breakdown_counts_each_products_flops_once(common, monkeypatch):
    import torch

    from bertlab import linear_cross_entropy

    monkeypatch.setattr(linear_cross_entropy, "DECODER_THROUGH_ONEDNN", True)  # as on AMD CPUs

    a, b = torch.randn(64, 32), torch.randn(32, 48)
    batched = torch.randn(3, 16, 8), torch.randn(3, 8, 4)
    layer = torch.nn.Linear(32, 10)  # addmm: bias + (64, 32) @ (32, 10)

    def step():
        torch.mm(a, b)
        torch.bmm(*batched)
        layer(a)
        torch.relu(a)  # not a product
        # the MLM decoder's oneDNN product: (64, 32) by a (10, 32) weight
        linear_cross_entropy.times_transposed(a, layer.weight.detach())

    expected = 2 * 64 * 32 * 48 + 2 * 3 * 16 * 8 * 4 + 2 * 64 * 32 * 10
    expected += 2 * 64 * 32 * 10
    breakdown = common.step_breakdown(step, steps=2)
    assert breakdown["product_flops"] == expected
    assert 0 < breakdown["product_seconds"] < breakdown["step_seconds"]
    lines = common.breakdown_lines("side", breakdown, limit=1e11)
    assert "matrix products" in lines and "of the matmul rate" in lines


# training_step outside a Trainer: self.log only warns
@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_the_raw_loops_loss_is_the_training_steps_loss(common):
    """lightning_overhead.py and default_job_step.py time common.pretraining_loss as the
    module's step: if the module's loss changes (a new head, another loss term), they must
    follow, or the raw loop times different work from the Lightning side."""
    from bertlab.tasks.pretrain import PretrainingModule

    from support.data import pretraining_batch
    from support.models import BERTLAB_MODEL

    vocab = 50
    data = pretraining_batch(torch.Generator().manual_seed(0), vocab, 4, 16, predictions=3)
    data["masked_positions"][0, 2] = -1  # a padded prediction slot
    data["attention_mask"][1, 12:] = 0
    model = dict(BERTLAB_MODEL, hidden_dropout=0.0, attention_dropout=0.0)
    module = PretrainingModule(model=model, optimizer={"lr": 1e-4}, vocab_size=vocab)
    with torch.no_grad():
        expected = module.training_step(data, 0)
        assert common.pretraining_loss(module.network, data).item() == pytest.approx(
            expected.item(), rel=1e-6
        )


def test_the_bf16_limit_is_torch_mm_s_alone(common):
    """bertlab sends only float32 to oneDNN, whose bf16 kernels need AVX-512 (this failed
    on AVX2 machines)."""
    import torch

    a = torch.randn(32, 32, dtype=torch.bfloat16)
    assert set(common.square_products(a, a)) == {"torch.mm"}
    assert common.matmul_rate("cpu", "bf16", size=64, timings=1) > 0
