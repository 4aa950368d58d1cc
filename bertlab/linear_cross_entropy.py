"""Cross-entropy of a linear layer's logits without holding the logits: the MLM decoder's loss.

The masked-LM decoder maps N masked positions onto the whole vocabulary: N x V logits
(608 x 30,522 floats, 74 MB, at batch 32), the largest tensor of a pretraining step. Written
as `F.cross_entropy(F.linear(h, W, b), y)`, the step makes about ten passes over it in
memory (bias broadcast, matrix product, log-softmax and its backward, the zero-filled
gradient of the negative log-likelihood, ...); on a CPU that cost more than the encoder.

Here the rows go through in chunks small enough to stay in the CPU's cache: each chunk's
logits are computed, turned into softmax - one-hot (the gradient of the loss with respect
to them) in place, and immediately multiplied into the gradients of the hidden states, the
weight and the bias. The loss is the final scalar of the step, so its gradient can be
computed in the forward pass; backward only scales the stored gradients. The result is
the same function (equal to `F.cross_entropy` up to float rounding, test_linear_cross_entropy),
with the same gradients (Liger Kernel's "fused linear cross entropy" does this on GPUs).
Under bf16 autocast the softmax numerators are kept, in bf16 (N x V x 2 bytes, 37 MB at
batch 32, half the float32 logits), for one product into the weight's gradient (see _chunks).
"""

from __future__ import annotations

import torch

from bertlab.runtime.cpu import cpuinfo

# Logit elements per chunk. On a CPU, 4M floats (16 MB; about 128 rows at V = 30,522) stay
# in the last-level cache and keep the products large enough to run near the machine's
# matmul rate (64 to 256 rows measured within 10% of each other); a GPU wants chunks
# large enough to fill it, and chunking saves memory there.
CHUNK_ELEMENTS = {"cpu": 1 << 22}
GPU_CHUNK_ELEMENTS = 1 << 26
# argmax over the vocabulary goes through blocks of this many logits (see first_argmax).
ARGMAX_BLOCK = 128
# Row counts of the oneDNN products are multiples of this (see _chunks).
ALIGNED_ROWS = 16

# oneDNN's float32 matrix product as a linear layer (the op torch.compile's CPU backend
# emits), or None where PyTorch is built without oneDNN; the benchmarks' limit uses it too.
ONEDNN_LINEAR = (
    getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if torch.backends.mkldnn.is_available()
    else None
)


# Which library multiplies by the decoder weight (see times_transposed). MKL, behind
# torch.mm, is Intel's: on AMD CPUs oneDNN ran the loss 1.36x faster than MKL (EPYC VMs,
# AVX2 and AVX-512 kernels), on Intel's MKL ran it 1.06x faster than oneDNN (a Sapphire
# Rapids VM; benchmarks/decoder_products.py compares the two on the machine at hand).
DECODER_THROUGH_ONEDNN = cpuinfo("vendor_id") != "GenuineIntel"


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy of softmax(hidden @ weight.T + bias) against `labels`, and argmax.

    hidden (N, H), weight (V, H), bias (V,) or None, labels (N,) in [0, V): returns the
    loss (a scalar, float32) and the predicted class of each row (N,), the first index of
    the largest logit, as `logits.argmax(-1)`. Under autocast the products run in the
    autocast dtype and the softmax in float32, as autocast does for `F.cross_entropy`.
    """
    if bias is None:
        bias = hidden.new_zeros(weight.shape[0])
    return _LinearCrossEntropy.apply(hidden, weight, bias, labels)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, labels):
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        dtype = dtype or weight.dtype
        wants_grad = any(ctx.needs_input_grad[:3])
        with torch.autocast(device, enabled=False):
            # The bias stays float32: it is added to the float32 logits.
            h, w, b = hidden.to(dtype), weight.to(dtype), bias.float()
            total, predictions, grads = _chunks(h, w, b, labels, wants_grad)
        ctx.rows = hidden.shape[0]
        ctx.dtypes = (hidden.dtype, weight.dtype, bias.dtype)
        ctx.save_for_backward(*grads)
        ctx.mark_non_differentiable(predictions)
        return total / max(ctx.rows, 1), predictions

    @staticmethod
    def backward(ctx, grad_loss, _grad_predictions):
        scale = grad_loss / max(ctx.rows, 1)
        grads = [
            (g * scale).to(dtype) if needed else None
            for g, dtype, needed in zip(
                ctx.saved_tensors, ctx.dtypes, ctx.needs_input_grad[:3], strict=True
            )
        ]
        return *grads, None


def _chunks(h, w, b, labels, wants_grad):
    """Sum of the losses, argmax per row, and the unscaled gradients (h, w, b) if wanted."""
    rows, vocab = h.shape[0], w.shape[0]
    per_chunk = CHUNK_ELEMENTS.get(h.device.type, GPU_CHUNK_ELEMENTS) // vocab
    chunk = max(1, min(rows, per_chunk))
    onednn = _uses_onednn(h)
    if onednn or (h.device.type == "cpu" and h.dtype != torch.float32):
        # oneDNN compiles a kernel for every new shape (about 4 ms each, 13 ms for a bf16
        # (N, V) x (V, H) product; cached up to 1,024 shapes), and the number of masked rows
        # changes from batch to batch; so the rows go in multiples of ALIGNED_ROWS, the last
        # chunk padded with zero rows. torch.mm's bf16 products on a CPU are oneDNN's too.
        chunk = -(-chunk // ALIGNED_ROWS) * ALIGNED_ROWS
        if padding := (-rows) % ALIGNED_ROWS:
            h = torch.cat([h, h.new_zeros(padding, h.shape[1])])
    # Under autocast (bf16) the weight's gradient is one product over all rows after the
    # loop, from the numerators kept in bf16, as autocast's own backward computes it: a bf16
    # product cannot add into a float32 accumulator, and adding each chunk's rounded (V, H)
    # product into one took three passes over it a chunk, besides a copy of the chunk's
    # numerators transposed; the bf16 loss ran 1.3x faster without them (an AMX CPU).
    keeps_numerators = wants_grad and h.dtype != torch.float32
    total = torch.zeros((), device=h.device, dtype=torch.float32)
    predictions = torch.empty(rows, dtype=torch.long, device=h.device)
    grad_h = h.new_empty(rows, h.shape[1]) if wants_grad else None
    # Gradients of the weight and bias in float32, accumulated over chunks in float32.
    new_grad = torch.empty_like if keeps_numerators else torch.zeros_like
    grad_w = new_grad(w, dtype=torch.float32) if wants_grad else None
    grad_b = torch.zeros_like(b, dtype=torch.float32) if wants_grad else None
    # Padding rows keep zero numerators and a zero scale: they add nothing to the gradients.
    kept = h.new_empty(len(h), vocab) if keeps_numerators else None
    inverses = torch.zeros(len(h), device=h.device) if keeps_numerators else None
    if keeps_numerators:
        kept[rows:].zero_()
    for start in range(0, rows, chunk):
        valid = slice(start, min(start + chunk, rows))
        h_c, y_c = h[start : start + chunk], labels[valid]
        # (c, V) products, float32 for the softmax. oneDNN adds the bias as it writes the
        # product; torch.mm's is added in place (addmm would first copy it into every row,
        # one more pass). Padding rows hold the bias alone and stay out of the softmax.
        products = times_transposed(h_c, w, b if onednn else None).float()
        logits = products[: len(y_c)] if onednn else products[: len(y_c)].add_(b)
        predictions[valid], row_max = first_argmax(logits)
        target = logits.gather(1, y_c[:, None]).squeeze(1)
        # exp(logits - max) in place: the softmax numerators, summed for the loss.
        numerators = logits.sub_(row_max[:, None]).exp_()
        sums = numerators.sum(-1)
        total += (row_max + sums.log() - target).sum()
        if keeps_numerators:
            inverses[valid] = sums.reciprocal()
            _add_bias_gradient(grad_b, numerators, inverses[valid], y_c)
            kept[valid] = numerators
            sum_e_w = torch.mm(kept[start : start + chunk], w)[: len(y_c)]  # sum_v e_v w_v
            grad_h[valid] = sum_e_w.mul_(inverses[valid, None].to(h.dtype)).sub_(w[y_c])
        elif wants_grad:
            _add_gradients(products, sums, h_c, y_c, w, grad_h[valid], grad_w, grad_b)
    if keeps_numerators:
        # (H, N) x (N, V): the numerators untransposed (mm copies a transposed bf16 operand).
        scaled = (h * inverses[:, None].to(h.dtype)).t().contiguous()
        grad_w.copy_(torch.mm(scaled, kept).t())
        grad_w.index_add_(0, labels, h[:rows].float(), alpha=-1)
    return total, predictions, (grad_h, grad_w, grad_b) if wants_grad else ()


def _add_gradients(products, sums, h_c, y_c, w, grad_h, grad_w, grad_b) -> None:
    """The chunk's gradients: d loss / d logits = softmax - one-hot = numerators / sums - onehot.

    `products` holds the chunk's numerators in its first len(y_c) rows and padding in the
    rest (a row of a product depends on that row alone: the padding's rows are cut off).
    The division and the one-hot never touch it: 1 / sums scales the small operand of each
    product, and the one-hot part is a gather or scatter of rows.
    """
    rows = len(y_c)
    inverse = sums.reciprocal()  # (c,)
    numerators, h_c = products[:rows], h_c[:rows]
    grad_h.copy_(times_transposed(products, w.t())[:rows])  # sum_v e_v w_v
    grad_h.mul_(inverse[:, None]).sub_(w[y_c])  # softmax @ w - w_y
    grad_w.addmm_(numerators.t(), h_c * inverse[:, None])
    grad_w.index_add_(0, y_c, h_c, alpha=-1)
    _add_bias_gradient(grad_b, numerators, inverse, y_c)


def _add_bias_gradient(grad_b, numerators, inverse, y_c) -> None:
    """grad_b += sum over the chunk's rows of softmax - one-hot (numerators float32)."""
    grad_b.addmv_(numerators.t(), inverse)
    grad_b.index_add_(0, y_c, torch.ones_like(inverse), alpha=-1)


def _uses_onednn(x: torch.Tensor) -> bool:
    return (
        DECODER_THROUGH_ONEDNN
        and ONEDNN_LINEAR is not None
        and x.device.type == "cpu"
        and x.dtype == torch.float32
    )


def times_transposed(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """x @ weight.T (+ bias), on a CPU in float32 through oneDNN (DECODER_THROUGH_ONEDNN).

    The decoder's two products by the (V, H) weight, (c, H) x (H, V) and (c, V) x (V, H),
    are few rows by a long side; on AMD CPUs MKL's sgemm, which torch.mm calls, runs the
    first at under half of its square-matrix rate, oneDNN 1.4 to 1.9 times faster (the
    second 1.1 to 1.25 times; on AVX2 and AVX-512 kernels), which made the loss 1.36x and
    a `model=tiny` pretraining step about 1.1x faster (benchmarks/decoder_products.py).
    On Intel's, MKL runs the first 1.2x faster than oneDNN, and the loss stays with MKL.
    MKL stays for the weight's gradient, whose transposed operand oneDNN runs at half
    MKL's rate.
    """
    if _uses_onednn(x):
        # The bias in oneDNN's epilogue saves a pass over the (c, V) logits (1.08x here).
        return ONEDNN_LINEAR(x, weight, bias, "none", [], "")
    product = torch.mm(x, weight.t())
    return product if bias is None else product.add_(bias)


def first_argmax(x: torch.Tensor, block: int = ARGMAX_BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """`x.max(-1)` of a (rows, V) tensor: the maximum and its first index, several times faster.

    PyTorch's CPU argmax over a long row runs element by element (3.5 ms for 64 x 30,522),
    while its max-reduction is vectorised (0.4 ms). So: the maximum of each block of
    `block` logits, the first block holding the row's maximum, the first index within it.
    The first block holding the maximum holds its first index, so the index is argmax's.
    """
    rows, width = x.shape
    whole = width - width % block
    if whole == 0:
        maximum, index = x.max(-1)
        return index, maximum
    blocks = x[:, :whole].view(rows, whole // block, block)
    block_max = blocks.amax(-1)  # (rows, blocks)
    maximum, best_block = block_max.max(-1)  # first block holding the maximum
    row_index = torch.arange(rows, device=x.device)
    index = best_block * block + blocks[row_index, best_block].argmax(-1)
    if whole < width:  # the last, partial block
        tail_max, tail_index = x[:, whole:].max(-1)
        beats = tail_max > maximum  # a tie goes to the earlier index
        index = torch.where(beats, whole + tail_index, index)
        maximum = torch.maximum(maximum, tail_max)
    return index, maximum
