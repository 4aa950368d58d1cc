"""The model's switch for tracing: the key mask on every batch, exact, kept by a traced graph."""

from __future__ import annotations

import torch

from bertlab.checkpoints.export import ServingModel
from bertlab.model import BertConfig, BertForSequenceClassification, _key_mask
from bertlab.tasks.classify import ClassificationModule

TINY = {"num_layers": 2, "hidden_size": 32, "num_heads": 4, "intermediate_size": 37}


def inputs(padded: bool) -> tuple[torch.Tensor, ...]:
    input_ids = torch.randint(5, 100, (2, 12), generator=torch.Generator().manual_seed(0))
    attention_mask = torch.ones_like(input_ids)
    if padded:
        attention_mask[1, 7:] = 0
    return input_ids, torch.zeros_like(input_ids), attention_mask


def test_always_mask_keys_applies_an_all_ones_mask() -> None:
    ones = torch.ones(2, 5, dtype=torch.int64)
    assert _key_mask(ones) is None  # the fast path for unpadded batches
    assert _key_mask(ones, always=True).shape == (2, 1, 1, 5)


def test_the_switch_changes_no_output() -> None:
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=100, **TINY), 3).eval()
    with torch.no_grad():
        expected = [model(*inputs(padded)) for padded in (False, True)]
        model.bert.always_mask_keys = True
        switched = [model(*inputs(padded)) for padded in (False, True)]
    for ours, theirs in zip(switched, expected, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_a_graph_traced_on_an_unpadded_batch_still_masks_padding() -> None:
    torch.manual_seed(0)
    module = ClassificationModule(model=TINY, optimizer={}, vocab_size=100, num_labels=3).eval()
    serving = ServingModel(module).eval()
    assert module.model.bert.always_mask_keys
    with torch.no_grad():
        traced = torch.jit.trace(serving, inputs(padded=False), check_trace=False)
        torch.testing.assert_close(
            traced(*inputs(padded=True)), serving(*inputs(padded=True)), atol=1e-6, rtol=0
        )
