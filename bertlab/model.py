"""BERT in one file: config, embeddings, attention, layer, encoder, pooler, heads.

Module and parameter names follow the standard BERT checkpoint layout
(`bert.encoder.layer.0.attention.self.query.weight`, `cls.predictions.bias`, ...),
so Hugging Face weights load by name. Shapes: B batch, T tokens, H hidden size,
nh heads, hs head size (H / nh), N masked positions in the whole batch, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn


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
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    hidden_act: str = "gelu"

    @classmethod
    def from_dict(cls, values: dict, **overrides) -> BertConfig:
        """Build from a config section, ignoring keys that are not architecture (init, name...)."""
        names = {f.name for f in fields(cls)}
        config = cls(**{k: v for k, v in {**values, **overrides}.items() if k in names})
        if config.hidden_size % config.num_heads:
            raise ValueError(
                f"model.hidden_size={config.hidden_size} is not divisible by model.num_heads={config.num_heads}"
            )
        return config


ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "gelu_new": lambda x: F.gelu(x, approximate="tanh")}


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(positions)  # (B, T, H), positions broadcast over B
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_heads = config.num_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_dropout

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None,
        queries: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Self-attention over x (B, T, H); with `queries` (B, Q, H), only those rows ask."""
        # One matrix product for several projections: fewer, larger kernels. The Linear
        # layers keep their checkpoint names; concatenating their weights costs a few H^2
        # copies per step, small next to the B T H 3H product.
        if queries is None:
            q, k, v = self._heads(x, self.query, self.key, self.value)  # (B, nh, T, hs) each
        else:
            (q,) = self._heads(queries, self.query)  # (B, nh, Q, hs)
            k, v = self._heads(x, self.key, self.value)
        # attention_mask is (B, 1, 1, T), True where a key may be attended; SDPA picks a
        # fused kernel (flash / memory-efficient on GPU) for it.
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attention_mask, dropout_p=self.dropout_p if self.training else 0.0
        )
        B, _, Q, hs = y.shape
        return y.transpose(1, 2).reshape(B, Q, self.num_heads * hs)

    def _heads(self, x: torch.Tensor, *projections: nn.Linear) -> tuple[torch.Tensor, ...]:
        B, T, H = x.shape
        weight = torch.cat([p.weight for p in projections])  # (kH, H)
        bias = torch.cat([p.bias for p in projections])
        y = F.linear(x, weight, bias).view(B, T, len(projections), self.num_heads, -1)
        return tuple(y.permute(2, 0, 3, 1, 4).unbind(0))  # k x (B, nh, T, hs)


class BertSelfOutput(nn.Module):
    """Projection + dropout + residual + LayerNorm (post-LN, as in the original BERT)."""

    def __init__(self, config: BertConfig, input_size: int):
        super().__init__()
        self.dense = nn.Linear(input_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(residual + self.dropout(self.dense(x)))


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config, config.hidden_size)

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None,
        queries: torch.Tensor | None = None,
    ) -> torch.Tensor:
        residual = x if queries is None else queries
        return self.output(self.self(x, attention_mask, queries), residual)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACTIVATIONS[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(x))  # (B, T, 4H)


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertSelfOutput(config, config.intermediate_size)

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None,
        queries: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.attention(x, attention_mask, queries)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_layers))

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
        keys and values still cover every token, so the result is exact.
        """
        *lower, last = self.layer
        for layer in lower:
            x = layer(x, attention_mask)
        if output_positions is None:
            return last(x, attention_mask)
        rows = torch.arange(x.shape[0], device=x.device)[:, None]
        return last(x, attention_mask, queries=x[rows, output_positions])  # (B, P, H)


class BertPooler(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(sequence_output[:, 0]))  # (B, H) from [CLS]


class BertModel(nn.Module):
    """The encoder: (input_ids, token_type_ids, attention_mask) -> (sequence (B, T, H), pooled (B, H))."""

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
        it is needed.
        """
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        key_mask = _key_mask(attention_mask, self.always_mask_keys)
        sequence_output = self.encoder(x, key_mask, output_positions)
        pooled = self.pooler(sequence_output) if self.pooler is not None else None
        return sequence_output, pooled


def _key_mask(attention_mask: torch.Tensor | None, always: bool = False) -> torch.Tensor | None:
    """(B, T) 1/0 padding mask -> (B, 1, 1, T) boolean key mask; None when nothing is padded
    (unless `always`: applying an all-ones mask is exact, only slower)."""
    if attention_mask is None:
        return None
    # Skipping an all-ones mask lets SDPA use its fastest unmasked kernel, but the test reads
    # tensor values: tracing (ONNX, TorchScript) and torch.export would freeze one branch.
    if not always and not _tracing() and bool(attention_mask.all()):
        return None
    return attention_mask.bool()[:, None, None, :]


def _tracing() -> bool:
    return torch.jit.is_tracing() or torch.compiler.is_exporting()


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
                nn.init.zeros_(module.bias)


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = ACTIVATIONS[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.activation(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    """dense + GELU + LayerNorm, then a decoder tied to the word embeddings, plus a bias."""

    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.decoder.weight = word_embeddings.weight  # tied: one (V, H) matrix
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The bias goes into the matrix product (addmm): a separate add would be one more
        # pass over the (N, V) logits, the largest tensor of a pretraining step.
        return F.linear(self.transform(x), self.decoder.weight, self.bias)  # (N, V)


class BertPreTrainingHeads(nn.Module):
    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.predictions = BertLMPredictionHead(config, word_embeddings)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)


class BertForPreTraining(BertPreTrainedModel):
    """Masked LM + next sentence prediction. The MLM head runs on masked positions only."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.cls = BertPreTrainingHeads(config, self.bert.embeddings.word_embeddings)
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        masked_positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns MLM logits (N, V) and NSP logits (B, 2).

        `masked_positions` is (B, P) token indices, -1 where a row has fewer than P
        predictions; the logits follow the row-major order of the valid entries.
        Without it the MLM head runs on every position and returns (B, T, V).
        """
        if masked_positions is None:
            sequence_output, pooled = self.bert(input_ids, token_type_ids, attention_mask)
            return self.cls.predictions(sequence_output), self.cls.seq_relationship(pooled)
        # [CLS] (for NSP) then the masked positions; -1 padding reads [CLS] and is dropped.
        valid = masked_positions >= 0
        cls_first = F.pad(masked_positions.clamp(min=0), (1, 0))  # (B, 1 + P)
        states, pooled = self.bert(input_ids, token_type_ids, attention_mask, cls_first)
        masked_hidden = states[:, 1:][valid]  # (N, H), row-major like the labels
        return self.cls.predictions(masked_hidden), self.cls.seq_relationship(pooled)


class BertForSequenceClassification(BertPreTrainedModel):
    """Dropout + linear layer on the pooled [CLS]; num_labels=1 is regression."""

    def __init__(
        self, config: BertConfig, num_labels: int, classifier_dropout: float | None = None
    ):
        super().__init__()
        self.config = config
        self.num_labels = num_labels
        self.bert = BertModel(config)
        p = config.hidden_dropout if classifier_dropout is None else classifier_dropout
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        _, pooled = self.bert(input_ids, token_type_ids, attention_mask)
        return self.classifier(self.dropout(pooled))  # (B, num_labels)


class BertForQuestionAnswering(BertPreTrainedModel):
    """Span head: a start and an end logit per token."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        sequence_output, _ = self.bert(input_ids, token_type_ids, attention_mask)
        start_logits, end_logits = self.qa_outputs(sequence_output).unbind(-1)
        return start_logits, end_logits  # (B, T) each


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_token(config: BertConfig, seq_len: int) -> float:
    """Forward + backward FLOPs per token of the encoder (6 x params + attention), for MFU."""
    H, L = config.hidden_size, config.num_layers
    matmul_params = L * (4 * H * H + 2 * H * config.intermediate_size)
    return 6 * matmul_params + 12 * L * H * seq_len
