"""The chunked MLM loss equals cross_entropy(linear(...)) in value, gradients and argmax."""

import pytest
import torch
import torch.nn.functional as F

import bertlab.linear_cross_entropy as lce
from bertlab.linear_cross_entropy import first_argmax, linear_cross_entropy
from bertlab.model import BertConfig, BertForPreTraining
from bertlab.runtime.cpu import cpuinfo

ROWS, HIDDEN, VOCAB = 50, 16, 300


def inputs(seed: int = 0, bias: bool = True):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(ROWS, HIDDEN, generator=generator, requires_grad=True)
    weight = torch.randn(VOCAB, HIDDEN, generator=generator, requires_grad=True)
    b = torch.randn(VOCAB, generator=generator, requires_grad=True) if bias else None
    labels = torch.randint(0, VOCAB, (ROWS,), generator=generator)
    return hidden, weight, b, labels


def gradients(*tensors):
    return [None if t is None else t.grad for t in tensors]


@pytest.mark.parametrize("chunk_rows", [1, 7, 16, ROWS, 10 * ROWS])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("onednn", [True, False])
def test_loss_gradients_and_argmax_equal_the_unchunked_computation(
    monkeypatch, chunk_rows, bias, onednn
):
    monkeypatch.setitem(lce.CHUNK_ELEMENTS, "cpu", chunk_rows * VOCAB)
    if onednn and lce.ONEDNN_LINEAR is None:
        pytest.skip("no oneDNN")
    # oneDNN's path (AMD CPUs) or torch.mm's (Intel CPUs, builds without oneDNN)
    monkeypatch.setattr(lce, "DECODER_THROUGH_ONEDNN", onednn)
    hidden, weight, b, labels = inputs(bias=bias)
    logits = F.linear(hidden, weight, b)
    expected = F.cross_entropy(logits, labels)
    expected.backward()
    expected_grads = [t.grad.clone() for t in (hidden, weight, b) if t is not None]
    for t in (hidden, weight, b):
        if t is not None:
            t.grad = None

    loss, predictions = linear_cross_entropy(hidden, weight, b, labels)
    loss.backward()
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=1e-6)
    got = [g for g in gradients(hidden, weight, b) if g is not None]
    for g, e in zip(got, expected_grads, strict=True):
        torch.testing.assert_close(g, e, atol=1e-6, rtol=1e-5)
    assert torch.equal(predictions, logits.argmax(-1))


def test_the_upstream_gradient_scales_every_gradient():
    hidden, weight, b, labels = inputs()
    linear_cross_entropy(hidden, weight, b, labels)[0].backward()
    once = [g.clone() for g in gradients(hidden, weight, b)]
    for t in (hidden, weight, b):
        t.grad = None
    (3 * linear_cross_entropy(hidden, weight, b, labels)[0]).backward()
    for g, g1 in zip(gradients(hidden, weight, b), once, strict=True):
        torch.testing.assert_close(g, 3 * g1)


def test_without_gradients_it_only_scores():
    hidden, weight, b, labels = inputs()
    with torch.no_grad():
        loss, predictions = linear_cross_entropy(hidden, weight, b, labels)
        logits = F.linear(hidden, weight, b)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels))
    assert torch.equal(predictions, logits.argmax(-1))


def test_under_bf16_autocast_it_follows_autocast_cross_entropy():
    hidden, weight, b, labels = inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = F.cross_entropy(F.linear(hidden, weight, b).float(), labels)
        loss, _ = linear_cross_entropy(hidden, weight, b, labels)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, atol=2e-2, rtol=2e-2)
    loss.backward()
    assert [g.dtype for g in gradients(hidden, weight, b)] == [torch.float32] * 3


@pytest.mark.parametrize("chunk_rows", [1, 7, ROWS])
def test_under_bf16_autocast_the_gradients_are_autocasts(monkeypatch, chunk_rows):
    # bf16 keeps the chunks' numerators for one product into the weight's gradient.
    monkeypatch.setitem(lce.CHUNK_ELEMENTS, "cpu", chunk_rows * VOCAB)
    hidden, weight, b, labels = inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = F.cross_entropy(F.linear(hidden, weight, b).float(), labels)
    expected.backward()
    expected_grads = [g.clone() for g in gradients(hidden, weight, b)]
    for t in (hidden, weight, b):
        t.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, predictions = linear_cross_entropy(hidden, weight, b, labels)
    loss.backward()
    for g, e in zip(gradients(hidden, weight, b), expected_grads, strict=True):
        # bf16 keeps 8 bits of mantissa: errors of a few 1e-3 of the gradients' scale
        torch.testing.assert_close(g, e, atol=2e-2 * e.abs().max().item(), rtol=0)
    bf16_logits = F.linear(hidden.bfloat16(), weight.bfloat16()).float() + b
    assert (predictions == bf16_logits.argmax(-1)).float().mean() > 0.9


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_times_transposed_is_the_matrix_product(dtype, transposed, with_bias):
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(37, 64, generator=generator).to(dtype)
    weight = torch.randn(300, 64, generator=generator).to(dtype)
    if transposed:  # the decoder's second product passes w.T, a view
        x, weight = torch.randn(37, 300, generator=generator).to(dtype), weight.t()
    bias = torch.randn(weight.shape[0], generator=generator).to(dtype) if with_bias else None
    expected = x.double() @ weight.double().t()
    expected = (expected if bias is None else expected + bias.double()).to(dtype)
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    got = lce.times_transposed(x, weight, bias)
    assert got.dtype == dtype
    torch.testing.assert_close(got, expected, atol=tolerance * 10, rtol=tolerance)


def record_onednn_rows(monkeypatch) -> list[int]:
    """The row counts of the products oneDNN is asked for, from now on."""
    seen = []
    onednn = lce.ONEDNN_LINEAR

    def recording(x, weight, *args):
        seen.append(x.shape[0])
        return onednn(x, weight, *args)

    monkeypatch.setattr(lce, "ONEDNN_LINEAR", recording)
    return seen


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN")
def test_onednn_sees_row_counts_in_multiples_of_16_whatever_the_batch(monkeypatch):
    """oneDNN compiles a kernel per shape: a batch's masked-row count must not make one."""
    monkeypatch.setattr(lce, "DECODER_THROUGH_ONEDNN", True)
    seen = record_onednn_rows(monkeypatch)
    monkeypatch.setitem(lce.CHUNK_ELEMENTS, "cpu", 20 * VOCAB)  # chunks of 20 -> 32 rows
    hidden, weight, b, labels = inputs()  # 50 rows: 32 + 18 padded to 32
    loss, predictions = linear_cross_entropy(hidden, weight, b, labels)
    loss.backward()
    assert seen == [32, 32, 32, 32]  # logits and hidden gradient, two chunks
    logits = F.linear(hidden, weight, b)
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels))
    assert torch.equal(predictions, logits.argmax(-1))


def test_bf16_products_see_row_counts_in_multiples_of_16_whatever_the_batch(monkeypatch):
    """torch.mm's bf16 products on a CPU are oneDNN's, which compiles a kernel per shape."""
    shapes = []
    mm = torch.mm

    def recording_mm(a, b):
        shapes.append((tuple(a.shape), tuple(b.shape)))
        return mm(a, b)

    monkeypatch.setattr(torch, "mm", recording_mm)
    monkeypatch.setitem(lce.CHUNK_ELEMENTS, "cpu", 20 * VOCAB)  # chunks of 20 -> 32 rows
    hidden, weight, b, labels = inputs()  # 50 rows: 32 + 18 padded to 32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = linear_cross_entropy(hidden, weight, b, labels)
    loss.backward()
    rows = [a[0] for a, _ in shapes if a[1] in (HIDDEN, VOCAB)]  # logits, hidden gradient
    assert rows == [32, 32, 32, 32]
    assert shapes[-1] == ((HIDDEN, 64), (64, VOCAB))  # the weight's gradient, all rows


def test_float32_products_on_a_cpu_go_through_onednn_where_pytorch_has_it():
    assert (lce.ONEDNN_LINEAR is not None) == torch.backends.mkldnn.is_available()


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN")
def test_on_an_intel_cpu_the_decoder_stays_with_mkl(monkeypatch):
    monkeypatch.setattr(lce, "DECODER_THROUGH_ONEDNN", False)
    seen = record_onednn_rows(monkeypatch)
    hidden, weight, b, labels = inputs()
    loss, _ = linear_cross_entropy(hidden, weight, b, labels)
    loss.backward()
    assert seen == []
    torch.testing.assert_close(loss, F.cross_entropy(F.linear(hidden, weight, b), labels))


def test_the_decoder_library_follows_the_cpu_vendor():
    assert (cpuinfo("vendor_id") != "GenuineIntel") == lce.DECODER_THROUGH_ONEDNN


@pytest.mark.parametrize("width", [5, 128, 300, 384])
def test_first_argmax_is_argmax_with_ties_going_to_the_first_index(width):
    x = torch.randn(6, width, generator=torch.Generator().manual_seed(1))
    x[1, :] = 0.0  # all tied: index 0
    x[2, [width // 3, width - 1]] = 9.0  # a tie between a block and the tail
    x[3, width - 1] = 9.0  # the maximum in the last (partial) block
    x[4, [0, width // 2]] = 9.0
    index, maximum = first_argmax(x, block=128)
    assert torch.equal(index, x.argmax(-1))
    assert torch.equal(maximum, x.amax(-1))


def test_pretraining_model_returns_the_loss_of_its_own_logits():
    """masked_labels switches the MLM head to the chunked loss: same loss, same gradients
    for every parameter (the tied embedding too), the same predictions."""
    config = BertConfig(
        vocab_size=200, num_layers=2, hidden_size=32, num_heads=4, intermediate_size=64
    )
    torch.manual_seed(0)
    model = BertForPreTraining(config).eval()  # no dropout: both passes see the same network
    input_ids = torch.randint(5, 200, (3, 12))
    positions = torch.tensor([[1, 4, 7], [2, -1, -1], [0, 3, 11]])
    labels = torch.randint(5, 200, (3, 3))
    valid = positions >= 0

    logits, nsp = model(input_ids, masked_positions=positions)
    expected = F.cross_entropy(logits, labels[valid])
    (expected + nsp.sum()).backward()
    expected_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    loss, predictions, nsp_again = model(
        input_ids, masked_positions=positions, masked_labels=labels
    )
    (loss + nsp_again.sum()).backward()
    torch.testing.assert_close(loss, expected)
    assert torch.equal(predictions, logits.argmax(-1))
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, expected_grads[name], atol=1e-6, rtol=1e-5)
