"""The CPU dropout keeps F.dropout's semantics; written-out attention equals SDPA."""

import pytest
import torch
import torch.nn.functional as F

from bertlab.dropout import Dropout, dropout
from bertlab.model import attention, math_attention


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_drops_each_element_with_probability_p_and_scales_the_rest(p):
    torch.manual_seed(0)
    x = torch.full((1000, 1000), 2.0)
    y = dropout(x, p)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - p) < 5 * (p * (1 - p) / x.numel()) ** 0.5  # five standard errors
    assert torch.allclose(y[y != 0], torch.tensor(2.0 / (1 - p)))
    rows = (y == 0).float().mean(1)  # no structure: every row near p too
    assert rows.min() > p - 0.06 and rows.max() < p + 0.06


def test_the_mask_follows_torch_seed_and_the_gradient_follows_the_mask():
    x = torch.randn(64, 32, requires_grad=True)
    torch.manual_seed(1)
    first = dropout(x, 0.3)
    torch.manual_seed(1)
    again = dropout(x, 0.3)
    assert torch.equal(first, again)
    assert not torch.equal(first, dropout(x, 0.3))  # the generator moved on
    first.sum().backward()
    assert torch.equal(x.grad, (first != 0).float() / 0.7)


def test_eval_mode_p_zero_and_p_one_behave_as_f_dropout():
    x = torch.randn(8, 8)
    module = Dropout(0.4).eval()
    assert torch.equal(module(x), x)
    assert torch.equal(dropout(x, 0.0), x)
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    assert module.train()(x).eq(0).any()


@pytest.mark.parametrize("masked", [False, True])
def test_written_out_attention_equals_sdpa(masked):
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 7, 8, generator=generator) for _ in range(3))
    mask = None
    if masked:
        mask = torch.ones(3, 1, 1, 7, dtype=torch.bool)
        mask[0, ..., 5:] = False
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(math_attention(q, k, v, mask, 0.0), expected)
    torch.testing.assert_close(attention(q, k, v, mask), expected)


def test_attention_dropout_zeroes_weights_and_keeps_the_expectation():
    """With dropout, the CPU path drops attention weights (rescaled): averaged over many
    draws it approaches the output without dropout."""
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, 4, 8, generator=generator) for _ in range(3))
    exact = attention(q, k, v, None)
    torch.manual_seed(0)
    draws = torch.stack([attention(q, k, v, None, dropout_p=0.5) for _ in range(4000)])
    assert not torch.allclose(draws[0], exact, atol=1e-3)
    torch.testing.assert_close(draws.mean(0), exact, atol=0.06, rtol=0)
