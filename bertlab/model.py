"""BERT in one file: config, embeddings, attention, layer, encoder, pooler, heads.

Module and parameter names follow the standard BERT checkpoint layout
(`bert.encoder.layer.0.attention.self.query.weight`, `cls.predictions.bias`, ...),
so Hugging Face weights load by name. Shapes: B batch, T tokens, H hidden size,
nh heads, hs head size (H / nh), N masked positions in the whole batch, V vocabulary.

The encoder changes of the years since BERT are switches of `BertConfig`, each
defaulting to BERT: LayerNorm placement, gated feed-forward, biases, rotary positions,
local/global attention, embedding and final LayerNorms, tied decoder, pooling. Together
they make ModernBERT (`bertlab/checkpoints/modernbert.py` maps its Hugging Face names onto these).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from bertlab.dropout import Dropout, dropout
from bertlab.errors import ConfigError
from bertlab.linear_cross_entropy import linear_cross_entropy

CHOICES = {
    "layer_norm_position": ("post", "pre"),
    "feed_forward": ("mlp", "glu"),
    "position_embedding_type": ("absolute", "rotary"),
    "pooling": ("pooler", "cls", "mean"),
}


@dataclass
class BertConfig:
    vocab_size: int = 30522
    num_layers: int = 12
    hidden_size: int = 768
    num_heads: int = 12
    intermediate_size: int = 3072
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2  # 0: no token type embeddings (ModernBERT)
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    hidden_act: str = "gelu"
    # Switches since BERT; the defaults are BERT's.
    layer_norm_position: str = "post"  # post: x = LN(x + f(x)); pre: x = x + f(LN(x))
    feed_forward: str = "mlp"  # mlp: act(W1 x); glu: act(W1a x) * W1b x (GeGLU with gelu)
    bias: bool = True  # biases of the linear layers and LayerNorms (not of the MLM decoder)
    position_embedding_type: str = "absolute"  # absolute (learned) or rotary
    global_rope_theta: float = 10000.0  # rotary base of the global-attention layers
    local_attention: int | None = None  # window of local layers (tokens); None: all global
    global_attn_every_n_layers: int = 1  # with local_attention: layer i is global if i % n == 0
    local_rope_theta: float = 10000.0  # rotary base of the local-attention layers
    embedding_layer_norm: bool = True
    final_layer_norm: bool = False  # a LayerNorm after the last layer (pre-norm models)
    tie_word_embeddings: bool = True  # the MLM decoder is the word embedding matrix
    pooling: str = "pooler"  # pooler: BERT's dense+tanh on [CLS]; cls, mean: ModernBERT's head

    def __post_init__(self) -> None:
        for key, allowed in CHOICES.items():
            if getattr(self, key) not in allowed:
                _config_error(key, getattr(self, key), f"allowed values are {', '.join(allowed)}")
        if self.hidden_act not in ACTIVATIONS:
            _config_error("hidden_act", self.hidden_act, f"allowed: {', '.join(ACTIVATIONS)}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"model.hidden_size={self.hidden_size} is not divisible by "
                f"model.num_heads={self.num_heads}"
            )
        if self.type_vocab_size < 0:
            _config_error("type_vocab_size", self.type_vocab_size, "must be >= 0 (0: none)")
        if self.position_embedding_type == "rotary" and (self.hidden_size // self.num_heads) % 2:
            raise ConfigError(
                "model.position_embedding_type=rotary rotates pairs of dimensions: the head size "
                f"model.hidden_size / model.num_heads = {self.hidden_size}/{self.num_heads} "
                "must be even"
            )
        self._check_attention_span()

    def _check_attention_span(self) -> None:
        if self.global_attn_every_n_layers < 1:
            _config_error("global_attn_every_n_layers", self.global_attn_every_n_layers, ">= 1")
        if self.local_attention is None:
            return
        if self.local_attention < 2 or self.local_attention % 2:
            _config_error(
                "local_attention",
                self.local_attention,
                "must be an even window >= 2 (tokens within half of it on each side), or null",
            )
        if self.global_attn_every_n_layers == 1:
            raise ConfigError(
                f"model.local_attention={self.local_attention} with "
                "model.global_attn_every_n_layers=1 makes every layer global; set "
                "global_attn_every_n_layers >= 2 or local_attention=null"
            )

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    def is_global(self, layer_index: int) -> bool:
        """Whether a layer attends over the whole sequence (else within local_attention)."""
        return self.local_attention is None or layer_index % self.global_attn_every_n_layers == 0

    @classmethod
    def from_dict(cls, values: dict, **overrides) -> BertConfig:
        """Build from a config section, ignoring keys that are not architecture (init, name...)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in {**values, **overrides}.items() if k in names})


# The switches since BERT, each a `model.*` key that initial weights bring with them.
SWITCH_KEYS = (
    "layer_norm_position",
    "feed_forward",
    "bias",
    "position_embedding_type",
    "global_rope_theta",
    "local_attention",
    "global_attn_every_n_layers",
    "local_rope_theta",
    "embedding_layer_norm",
    "final_layer_norm",
    "tie_word_embeddings",
    "pooling",
)


def _config_error(key: str, value, allowed: str) -> None:
    raise ConfigError(f"model.{key}={value!r}: {allowed}")


ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "gelu_new": lambda x: F.gelu(x, approximate="tanh")}


def _layer_norm(config: BertConfig) -> nn.LayerNorm:
    return nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, bias=config.bias)


class BertEmbeddings(nn.Module):
    """Word (+ learned position) (+ token type) embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        if config.position_embedding_type == "absolute":
            self.position_embeddings = nn.Embedding(
                config.max_position_embeddings, config.hidden_size
            )
        if config.type_vocab_size:
            self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = _layer_norm(config) if config.embedding_layer_norm else nn.Identity()
        self.dropout = Dropout(config.hidden_dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        x = self.word_embeddings(input_ids)  # (B, T, H)
        if hasattr(self, "token_type_embeddings"):
            x = x + self.token_type_embeddings(token_type_ids)
        if hasattr(self, "position_embeddings"):
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            x = x + self.position_embeddings(positions)  # positions broadcast over B
        return self.dropout(self.LayerNorm(x))


def rotary_cos_sin(length: int, head_size: int, theta: float, device) -> tuple[torch.Tensor, ...]:
    """cos and sin (T, hs) of rotary positions, float32; frequencies theta^(-2i/hs)."""
    exponents = torch.arange(0, head_size, 2, dtype=torch.float, device=device) / head_size
    angles = torch.arange(length, dtype=torch.float, device=device)[:, None] / theta**exponents
    angles = torch.cat((angles, angles), dim=-1)  # (T, hs): the two halves rotate together
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, nh, T, hs) by position: pairs (x_i, x_{i+hs/2}) turn by angle_i, in float32."""
    first, second = x.float().chunk(2, dim=-1)
    rotated_half = torch.cat((-second, first), dim=-1)
    return (x.float() * cos + rotated_half * sin).to(x.dtype)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(hs), keys where `mask` is True) v, dropout on the weights.

    SDPA, except for attention dropout on a CPU: there SDPA runs its math path anyway
    (its fused CPU kernel takes no dropout), and written out the same way, the dropout
    can draw its mask with bertlab.dropout (the faster generator).
    """
    if dropout_p == 0.0 or q.device.type != "cpu" or torch.compiler.is_compiling():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    return math_attention(q, k, v, mask, dropout_p)


def math_attention(q, k, v, mask: torch.Tensor | None, dropout_p: float) -> torch.Tensor:
    """SDPA's math path: scaled scores, -inf at masked keys, softmax, dropout, weighted sum."""
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # (B, nh, Q, T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return dropout(scores.softmax(dim=-1), dropout_p) @ v


class BertSelfAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_heads = config.num_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size, bias=config.bias)
        self.key = nn.Linear(config.hidden_size, config.hidden_size, bias=config.bias)
        self.value = nn.Linear(config.hidden_size, config.hidden_size, bias=config.bias)
        self.dropout_p = config.attention_dropout
        # Query, key and value joined once for inference (join_projections): (the weights'
        # identities and versions then, (weight, bias)).
        self.joined: tuple[tuple, tuple[torch.Tensor, torch.Tensor | None]] | None = None

    def train(self, mode: bool = True) -> BertSelfAttention:
        if mode:
            self.joined = None  # training changes the weights: join them on every call again
        return super().train(mode)

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None,
        queries: torch.Tensor | None = None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Self-attention over x (B, T, H); with `queries` (B, Q, H), only those rows ask.

        `rotary` (cos, sin), each (T, hs), rotates queries and keys by their positions
        (not combined with `queries`: their positions would be unknown here).
        """
        # One matrix product for several projections: fewer, larger kernels. The Linear
        # layers keep their checkpoint names; concatenating their weights costs a few H^2
        # copies per step, small next to the B T H 3H product.
        if queries is None:
            q, k, v = self._heads(x, self.query, self.key, self.value)  # (B, nh, T, hs) each
        else:
            (q,) = self._heads(queries, self.query)  # (B, nh, Q, hs)
            k, v = self._heads(x, self.key, self.value)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        # attention_mask is (B, 1, 1, T), or (B, 1, T, T) for local attention, True where a
        # key may be attended; SDPA picks a fused kernel (flash / memory-efficient on GPU).
        y = attention(q, k, v, attention_mask, self.dropout_p if self.training else 0.0)
        B, _, Q, hs = y.shape
        return y.transpose(1, 2).reshape(B, Q, self.num_heads * hs)

    def _heads(self, x: torch.Tensor, *projections: nn.Linear) -> tuple[torch.Tensor, ...]:
        B, T, H = x.shape
        if self.joined is not None and self.joined[0] == self._weights_state():
            # The joined copy's rows for these projections (the query, or key and value,
            # of a layer that runs on [CLS] alone): a view, no copy.
            first = [self.query, self.key, self.value].index(projections[0])
            rows = slice(first * H, (first + len(projections)) * H)
            weight, bias = (t if t is None else t[rows] for t in self.joined[1])
        else:
            weight, bias = self.join(*projections)
        y = F.linear(x, weight, bias).view(B, T, len(projections), self.num_heads, -1)
        return tuple(y.permute(2, 0, 3, 1, 4).unbind(0))  # k x (B, nh, T, hs)

    def _weights_state(self) -> tuple:
        """Where the projections' tensors live and their versions: `load_state_dict`, `.to()`
        or an optimizer step change it, and a joined copy made before is then not used."""
        tensors = [t for p in (self.query, self.key, self.value) for t in (p.weight, p.bias)]
        return tuple((t.data_ptr(), t._version) for t in tensors if t is not None)

    @staticmethod
    def join(*projections: nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The projections' weights (kH, H) and biases (kH,) (or None) as one."""
        weight = torch.cat([p.weight for p in projections])
        bias = torch.cat([p.bias for p in projections]) if projections[0].bias is not None else None
        return weight, bias


class BertSelfOutput(nn.Module):
    """Projection + dropout + residual, then LayerNorm when post-LN (the original BERT)."""

    def __init__(self, config: BertConfig, input_size: int):
        super().__init__()
        self.dense = nn.Linear(input_size, config.hidden_size, bias=config.bias)
        if config.layer_norm_position == "post":
            self.LayerNorm = _layer_norm(config)
        self.dropout = Dropout(config.hidden_dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        y = residual + self.dropout(self.dense(x))
        return self.LayerNorm(y) if hasattr(self, "LayerNorm") else y


class BertAttention(nn.Module):
    """Self-attention with its residual; pre-LN normalises its input first (`LayerNorm`).

    A pre-LN first layer reads the embeddings' LayerNorm output as it is (ModernBERT).
    """

    def __init__(self, config: BertConfig, layer_index: int = 0):
        super().__init__()
        self.pre_norm = config.layer_norm_position == "pre"
        if self.pre_norm and not (layer_index == 0 and config.embedding_layer_norm):
            self.LayerNorm = _layer_norm(config)
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config, config.hidden_size)

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None,
        queries: torch.Tensor | None = None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        residual = x if queries is None else queries
        if hasattr(self, "LayerNorm"):
            x = self.LayerNorm(x)
            queries = None if queries is None else self.LayerNorm(queries)
        return self.output(self.self(x, attention_mask, queries, rotary), residual)


class BertIntermediate(nn.Module):
    """The feed-forward's first half: act(W x), or act(W_a x) * (W_b x) gated (GLU).

    Gated, `dense` holds both halves, (2 x intermediate, H), input half first.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        if config.layer_norm_position == "pre":
            self.LayerNorm = _layer_norm(config)
        self.gated = config.feed_forward == "glu"
        width = config.intermediate_size * (2 if self.gated else 1)
        self.dense = nn.Linear(config.hidden_size, width, bias=config.bias)
        self.activation = ACTIVATIONS[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "LayerNorm"):
            x = self.LayerNorm(x)
        if self.gated:
            inputs, gate = self.dense(x).chunk(2, dim=-1)
            return self.activation(inputs) * gate  # (B, T, I)
        return self.activation(self.dense(x))  # (B, T, I)


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig, layer_index: int = 0):
        super().__init__()
        self.is_global = config.is_global(layer_index)
        self.attention = BertAttention(config, layer_index)
        self.intermediate = BertIntermediate(config)
        self.output = BertSelfOutput(config, config.intermediate_size)

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None,
        queries: torch.Tensor | None = None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        x = self.attention(x, attention_mask, queries, rotary)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.layer = nn.ModuleList(BertLayer(config, i) for i in range(config.num_layers))
        if config.final_layer_norm:
            self.LayerNorm = _layer_norm(config)

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None,
        output_positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, T, H) -> (B, T, H), or (B, P, H) at `output_positions` (B, P) when given.

        Only the last layer's outputs leave the encoder, so when a head reads a few
        positions (pretraining: [CLS] and the masked tokens, ~16% of them) the last layer
        computes its queries, attention output and feed-forward for those rows only;
        keys and values still cover every token, so the result is exact. (Rotary
        positions and local windows depend on the query's position: there the last layer
        runs on every row and the positions are picked after it.)
        """
        spans = self._attention_spans(x, attention_mask)
        *lower, last = self.layer
        for layer in lower:
            mask, rotary = spans[layer.is_global]
            x = layer(x, mask, rotary=rotary)
        rows = torch.arange(x.shape[0], device=x.device)[:, None]
        mask, rotary = spans[last.is_global]
        if output_positions is None:
            x = last(x, mask, rotary=rotary)
        elif self.queries_only_in_last_layer:
            x = last(x, mask, queries=x[rows, output_positions])  # (B, P, H)
        else:
            x = last(x, mask, rotary=rotary)[rows, output_positions]  # (B, P, H)
        return self.LayerNorm(x) if hasattr(self, "LayerNorm") else x

    @property
    def queries_only_in_last_layer(self) -> bool:
        return self.config.position_embedding_type == "absolute" and not self.config.local_attention

    def _attention_spans(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> dict:
        """{is_global: (attention mask, rotary cos/sin or None)}, built once per forward."""
        config, T = self.config, x.shape[1]
        rotary = config.position_embedding_type == "rotary"
        spans = {
            True: (
                key_mask,
                rotary_cos_sin(T, config.head_size, config.global_rope_theta, x.device)
                if rotary
                else None,
            )
        }
        if config.local_attention:
            spans[False] = (
                _local_mask(key_mask, T, config.local_attention, x.device),
                rotary_cos_sin(T, config.head_size, config.local_rope_theta, x.device)
                if rotary
                else None,
            )
        return spans


def _local_mask(key_mask: torch.Tensor | None, length: int, window: int, device) -> torch.Tensor:
    """(T, T) or (B, 1, T, T): keys within window // 2 of the query, and not padding."""
    positions = torch.arange(length, device=device)
    band = (positions[:, None] - positions[None, :]).abs() <= window // 2  # (T, T)
    if key_mask is None:
        return band
    # Every row keeps its own token: a padding query far from any real token would
    # otherwise attend to nothing, and SDPA's NaN there would leak through the values.
    return (band & key_mask) | torch.eye(length, dtype=torch.bool, device=device)


class BertPooler(nn.Module):
    """BERT: dense + tanh on [CLS]. ModernBERT (`pooling` cls or mean): [CLS] or the mean of
    the real tokens, then dense + activation + LayerNorm."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.pooling = config.pooling
        bert = config.pooling == "pooler"
        self.dense = nn.Linear(config.hidden_size, config.hidden_size, bias=bert or config.bias)
        self.activation = torch.tanh if bert else ACTIVATIONS[config.hidden_act]
        if not bert:
            self.LayerNorm = _layer_norm(config)

    def forward(
        self, sequence_output: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.pooling == "mean":
            if attention_mask is None:
                attention_mask = torch.ones(
                    sequence_output.shape[:2], device=sequence_output.device
                )
            weights = attention_mask[..., None].to(sequence_output.dtype)  # (B, T, 1)
            pooled = (sequence_output * weights).sum(1) / weights.sum(1)
        else:
            pooled = sequence_output[:, 0]  # (B, H) from [CLS]
        pooled = self.activation(self.dense(pooled))
        return self.LayerNorm(pooled) if hasattr(self, "LayerNorm") else pooled


class BertModel(nn.Module):
    """The encoder: (input_ids, token_type_ids, attention_mask) -> (sequence (B, T, H), pooled (B,
    H)).
    """

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        # Export (ONNX, TorchScript) sets this: a traced graph must apply the key mask to
        # every batch, not freeze the unpadded-batch shortcut that `_key_mask` takes.
        self.always_mask_keys = False

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`output_positions` (B, P): return only those positions' states (B, P, H).

        The pooler reads the first returned position, so put 0 ([CLS]) first when
        it is needed (mean pooling reads every position).
        """
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        key_mask = _key_mask(attention_mask, self.always_mask_keys)
        if self.pooler is None or self.pooler.pooling != "mean" or output_positions is None:
            sequence_output = self.encoder(x, key_mask, output_positions)
            pooled = None if self.pooler is None else self.pooler(sequence_output, attention_mask)
            return sequence_output, pooled
        states = self.encoder(x, key_mask)
        rows = torch.arange(states.shape[0], device=states.device)[:, None]
        return states[rows, output_positions], self.pooler(states, attention_mask)


def _key_mask(attention_mask: torch.Tensor | None, always: bool = False) -> torch.Tensor | None:
    """(B, T) 1/0 padding mask -> (B, 1, 1, T) boolean key mask; None when nothing is padded
    (unless `always`: applying an all-ones mask is exact, only slower)."""
    if attention_mask is None:
        return None
    # Skipping an all-ones mask lets SDPA use its fastest unmasked kernel, but the test reads
    # tensor values: tracing (ONNX, TorchScript) and torch.export would freeze one branch,
    # and torch.compile would break its graph there on every step.
    if not always and not _capturing_graph() and bool(attention_mask.all()):
        return None
    return attention_mask.bool()[:, None, None, :]


def _capturing_graph() -> bool:
    """Tracing (ONNX, TorchScript), torch.export or torch.compile is recording a graph."""
    return torch.jit.is_tracing() or torch.compiler.is_exporting() or torch.compiler.is_compiling()


class BertPreTrainedModel(nn.Module):
    """Shared weight initialisation: N(0, initializer_range), zero biases, unit LayerNorms."""

    config: BertConfig

    def init_weights(self) -> None:
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)


class BertPredictionHeadTransform(nn.Module):
    """dense + activation + LayerNorm (ModernBERT's `head`)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size, bias=config.bias)
        self.activation = ACTIVATIONS[config.hidden_act]
        self.LayerNorm = _layer_norm(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.activation(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    """dense + GELU + LayerNorm, then a decoder (tied to the word embeddings by default), plus a
    bias.
    """

    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.decoder.weight = word_embeddings.weight  # tied: one (V, H) matrix
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The bias goes into the matrix product (addmm): a separate add would be one more
        # pass over the (N, V) logits, the largest tensor of a pretraining step.
        return F.linear(self.transform(x), self.decoder.weight, self.bias)  # (N, V)

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy against `labels` (N,) and the argmax of each row (N,), from the
        same logits as forward, computed in cache-sized chunks (bertlab.linear_cross_entropy)."""
        return linear_cross_entropy(self.transform(x), self.decoder.weight, self.bias, labels)


class BertPreTrainingHeads(nn.Module):
    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding, next_sentence: bool):
        super().__init__()
        self.predictions = BertLMPredictionHead(config, word_embeddings)
        if next_sentence:
            self.seq_relationship = nn.Linear(config.hidden_size, 2)


class BertForPreTraining(BertPreTrainedModel):
    """Masked LM (+ next sentence prediction). The MLM head runs on masked positions only.

    `next_sentence=False` (RoBERTa, ModernBERT): masked LM alone, no pooler or NSP head.
    """

    def __init__(self, config: BertConfig, next_sentence: bool = True):
        super().__init__()
        self.config = config
        self.next_sentence = next_sentence
        self.bert = BertModel(config, add_pooling_layer=next_sentence)
        self.cls = BertPreTrainingHeads(config, self.bert.embeddings.word_embeddings, next_sentence)
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        masked_positions: torch.Tensor | None = None,
        masked_labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Returns MLM logits (N, V) and NSP logits (B, 2) (None without NSP).

        `masked_positions` is (B, P) token indices, -1 where a row has fewer than P
        predictions; the logits follow the row-major order of the valid entries.
        Without it the MLM head runs on every position and returns (B, T, V).

        With `masked_labels` (B, P) as well (the labels at those positions), the MLM head
        returns its loss and predictions instead of the logits, without ever holding the
        (N, V) logits whole: (mlm_loss, mlm_predictions (N,), nsp_logits). Training uses this.
        """
        if masked_positions is None:
            sequence_output, pooled = self.bert(input_ids, token_type_ids, attention_mask)
            return self.cls.predictions(sequence_output), self._next_sentence(pooled)
        valid = masked_positions >= 0
        positions = masked_positions.clamp(min=0)  # -1 padding reads position 0, dropped below
        if self.next_sentence:
            positions = F.pad(positions, (1, 0))  # (B, 1 + P): [CLS] first, for the pooler
        states, pooled = self.bert(input_ids, token_type_ids, attention_mask, positions)
        if self.next_sentence:
            states = states[:, 1:]
        masked_hidden = states[valid]  # (N, H), row-major like the labels
        if masked_labels is not None:
            loss, predictions = self.cls.predictions.loss(masked_hidden, masked_labels[valid])
            return loss, predictions, self._next_sentence(pooled)
        return self.cls.predictions(masked_hidden), self._next_sentence(pooled)

    def _next_sentence(self, pooled: torch.Tensor | None) -> torch.Tensor | None:
        return self.cls.seq_relationship(pooled) if self.next_sentence else None


class BertForSequenceClassification(BertPreTrainedModel):
    """Dropout + linear layer on the pooled output; num_labels=1 is regression."""

    def __init__(
        self, config: BertConfig, num_labels: int, classifier_dropout: float | None = None
    ):
        super().__init__()
        self.config = config
        self.num_labels = num_labels
        self.bert = BertModel(config)
        p = config.hidden_dropout if classifier_dropout is None else classifier_dropout
        self.dropout = Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # The head reads [CLS] alone (BERT's pooler, ModernBERT's cls pooling), so the last
        # layer computes that row only; its keys and values still cover every token (exact).
        # At model=mini (4 layers) that is about a sixth of the encoder's products.
        cls = None if self.bert.pooler.pooling == "mean" else torch.zeros_like(input_ids[:, :1])
        _, pooled = self.bert(input_ids, token_type_ids, attention_mask, output_positions=cls)
        return self.classifier(self.dropout(pooled))  # (B, num_labels)


class BertForQuestionAnswering(BertPreTrainedModel):
    """Span head: a start and an end logit per token.

    With ModernBERT's heads (`pooling` cls or mean), every token first goes through
    dense + activation + LayerNorm (`qa_transform`), as in ModernBertForQuestionAnswering.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False)
        if config.pooling != "pooler":
            self.qa_transform = BertPredictionHeadTransform(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        sequence_output, _ = self.bert(input_ids, token_type_ids, attention_mask)
        if hasattr(self, "qa_transform"):
            sequence_output = self.qa_transform(sequence_output)
        start_logits, end_logits = self.qa_outputs(sequence_output).unbind(-1)
        return start_logits, end_logits  # (B, T) each


def join_projections(model: nn.Module) -> nn.Module:
    """`model` in eval mode, each attention's query, key and value weights joined once.

    For inference: the joined copy is made now instead of on every forward (7% of an eager
    forward of model=base at batch 1), and `model.train()` drops it.
    """
    model.eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, BertSelfAttention):
                joined = module.join(module.query, module.key, module.value)
                module.joined = (module._weights_state(), joined)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_token(config: BertConfig, seq_len: int) -> float:
    """Forward + backward FLOPs per token of the encoder (6 x params + attention), for MFU."""
    H, L = config.hidden_size, config.num_layers
    feed_forward = (3 if config.feed_forward == "glu" else 2) * H * config.intermediate_size
    matmul_params = L * (4 * H * H + feed_forward)
    attended = [
        seq_len if config.is_global(i) else min(seq_len, config.local_attention + 1)
        for i in range(L)
    ]
    return 6 * matmul_params + 12 * H * sum(attended)
