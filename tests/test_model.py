import pytest
import torch

from bertlab.errors import ConfigError
from bertlab.model import (
    SWITCH_KEYS,
    BertConfig,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertSelfAttention,
    count_parameters,
    join_projections,
)

SMALL = BertConfig(vocab_size=120, num_layers=2, hidden_size=32, num_heads=4, intermediate_size=64)


def batch(lengths: list[int], width: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, SMALL.vocab_size, (len(lengths), width), generator=generator)
    attention_mask = torch.zeros_like(input_ids)
    token_type_ids = torch.zeros_like(input_ids)
    for row, length in enumerate(lengths):
        attention_mask[row, :length] = 1
        token_type_ids[row, length // 2 : length] = 1  # two segments
        input_ids[row, length:] = 0
    return input_ids, token_type_ids, attention_mask


@pytest.fixture
def model():
    torch.manual_seed(0)
    return BertForPreTraining(SMALL).eval()


def test_padding_does_not_change_outputs_at_real_positions(model):
    input_ids, token_type_ids, attention_mask = batch([7, 5], width=7)
    padded = [
        torch.nn.functional.pad(t, (0, 9)) for t in (input_ids, token_type_ids, attention_mask)
    ]
    with torch.no_grad():
        short_seq, short_pooled = model.bert(input_ids, token_type_ids, attention_mask)
        long_seq, long_pooled = model.bert(*padded)
    real = attention_mask.bool()
    torch.testing.assert_close(long_seq[:, :7][real], short_seq[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(long_pooled, short_pooled, atol=1e-5, rtol=1e-5)


def test_padding_changes_outputs_if_mask_is_dropped(model):
    """Guards the test above: without the mask, padding tokens do leak into real positions."""
    input_ids, token_type_ids, attention_mask = batch([4], width=10)
    with torch.no_grad():
        masked, _ = model.bert(input_ids, token_type_ids, attention_mask)
        unmasked, _ = model.bert(input_ids, token_type_ids, torch.ones_like(attention_mask))
    assert (masked[0, :4] - unmasked[0, :4]).abs().max() > 1e-3


def test_the_encoder_compiles_as_one_graph_when_nothing_is_padded(model):
    # An unpadded batch skips the key mask in eager mode (a test of the mask's values);
    # under torch.compile that test would break the graph on every step, so the mask is
    # applied there (exact: every key may be attended).
    input_ids, token_type_ids, attention_mask = batch([7, 7], width=7)
    torch._dynamo.reset()
    compiled = torch.compile(model.bert, backend="eager", fullgraph=True)
    states, pooled = compiled(input_ids, token_type_ids, attention_mask)
    eager_states, eager_pooled = model.bert(input_ids, token_type_ids, attention_mask)
    torch.testing.assert_close(states, eager_states)
    torch.testing.assert_close(pooled, eager_pooled)


def test_mlm_head_on_masked_positions_equals_full_head(model):
    input_ids, token_type_ids, attention_mask = batch([9, 6, 8], width=9)
    masked_positions = torch.tensor([[1, 4, 7], [2, -1, -1], [0, 3, -1]])
    with torch.no_grad():
        full, nsp_full = model(input_ids, token_type_ids, attention_mask)
        gathered, nsp = model(input_ids, token_type_ids, attention_mask, masked_positions)
    expected = torch.stack([full[0, 1], full[0, 4], full[0, 7], full[1, 2], full[2, 0], full[2, 3]])
    assert gathered.shape == (6, SMALL.vocab_size)
    torch.testing.assert_close(gathered, expected)
    torch.testing.assert_close(nsp, nsp_full)


def test_classifier_runs_its_last_layer_on_cls_alone_with_the_same_logits():
    torch.manual_seed(0)
    classifier = BertForSequenceClassification(SMALL, num_labels=3).eval()
    input_ids, token_type_ids, attention_mask = batch([9, 6, 8], width=9)
    rows = []
    last = classifier.bert.encoder.layer[-1]
    last.register_forward_hook(lambda module, args, output: rows.append(output.shape[1]))
    with torch.no_grad():
        logits = classifier(input_ids, token_type_ids, attention_mask)
        # every row through the last layer, then the pooler on [CLS]
        sequence, _ = classifier.bert(input_ids, token_type_ids, attention_mask)
        expected = classifier.classifier(classifier.bert.pooler(sequence))
    assert rows == [1, 9]
    torch.testing.assert_close(logits, expected)
    # mean pooling reads every row, so there the last layer runs on all of them
    mean = BertForSequenceClassification(BertConfig(**{**vars(SMALL), "pooling": "mean"}), 3)
    rows.clear()
    mean.bert.encoder.layer[-1].register_forward_hook(
        lambda module, args, output: rows.append(output.shape[1])
    )
    mean.eval()(input_ids, token_type_ids, attention_mask)
    assert rows == [9]


def test_decoder_is_tied_to_word_embeddings(model):
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight


def test_heads_have_expected_shapes():
    input_ids, token_type_ids, attention_mask = batch([6, 4], width=6)
    classifier = BertForSequenceClassification(SMALL, num_labels=3)
    start, end = BertForQuestionAnswering(SMALL)(input_ids, token_type_ids, attention_mask)
    assert classifier(input_ids, token_type_ids, attention_mask).shape == (2, 3)
    assert start.shape == end.shape == (2, 6)


def test_hidden_size_must_divide_into_heads():
    with pytest.raises(
        ValueError, match="model.hidden_size=30 is not divisible by model.num_heads=4"
    ):
        BertConfig.from_dict({"hidden_size": 30, "num_heads": 4})


def test_parameter_names_and_outputs_match_transformers(model):
    transformers = pytest.importorskip("transformers")
    reference = transformers.BertForPreTraining(
        transformers.BertConfig(
            vocab_size=SMALL.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
    ).eval()
    ours = model.state_dict()
    theirs = reference.state_dict()
    # transformers also lists the decoder bias, an alias of cls.predictions.bias
    assert set(ours) == set(theirs) - {"cls.predictions.decoder.bias"}
    reference.load_state_dict(ours, strict=False)
    input_ids, token_type_ids, attention_mask = batch([8, 5], width=8)
    with torch.no_grad():
        mlm, nsp = model(input_ids, token_type_ids, attention_mask)
        out = reference(
            input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask
        )
    real = attention_mask.bool()
    torch.testing.assert_close(mlm[real], out.prediction_logits[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(nsp, out.seq_relationship_logits, atol=1e-5, rtol=1e-5)


# ---- switches since BERT -------------------------------------------------------------------

MODERN = BertConfig(
    vocab_size=120,
    num_layers=4,
    hidden_size=32,
    num_heads=4,
    intermediate_size=48,
    type_vocab_size=0,
    layer_norm_position="pre",
    feed_forward="glu",
    bias=False,
    position_embedding_type="rotary",
    local_attention=4,
    global_attn_every_n_layers=2,
    final_layer_norm=True,
    pooling="mean",
)


def test_switched_model_ignores_padding_with_windows_shorter_than_the_text():
    torch.manual_seed(0)
    model = BertForSequenceClassification(MODERN, num_labels=2).eval()
    input_ids, token_type_ids, attention_mask = batch([11, 6], width=11)
    padded = [
        torch.nn.functional.pad(t, (0, 13)) for t in (input_ids, token_type_ids, attention_mask)
    ]
    with torch.no_grad():
        short = model(input_ids, token_type_ids, attention_mask)
        long = model(*padded)
        seq, _ = model.bert(input_ids, None, attention_mask)
        seq_long, _ = model.bert(*padded)
    torch.testing.assert_close(long, short, atol=1e-5, rtol=1e-5)
    real = attention_mask.bool()
    torch.testing.assert_close(seq_long[:, :11][real], seq[real], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(seq_long).all()  # padding queries far from every real token


def test_local_window_limits_what_a_token_sees():
    """With every layer local (window 4: 2 each side, 2 layers), token 0 cannot see token 9."""
    config = BertConfig(**{**vars(MODERN), "num_layers": 2, "global_attn_every_n_layers": 3})
    torch.manual_seed(0)
    model = BertForPreTraining(config, next_sentence=False).eval()
    model.bert.encoder.layer[0].is_global = False  # make the first layer local too
    input_ids = torch.randint(5, 120, (1, 10))
    changed = input_ids.clone()
    changed[0, 9] = 4
    with torch.no_grad():
        before, _ = model.bert(input_ids)
        after, _ = model.bert(changed)
    torch.testing.assert_close(before[0, :5], after[0, :5])
    assert (before[0, 8] - after[0, 8]).abs().max() > 1e-4


def test_switches_shape_the_parameters():
    names = set(BertForPreTraining(MODERN, next_sentence=False).state_dict())
    assert "bert.embeddings.position_embeddings.weight" not in names  # rotary
    assert "bert.embeddings.token_type_embeddings.weight" not in names
    assert "bert.encoder.layer.0.attention.LayerNorm.weight" not in names  # embeddings' LN serves
    assert "bert.encoder.layer.1.attention.LayerNorm.weight" in names
    assert "bert.encoder.layer.1.attention.output.LayerNorm.weight" not in names  # pre-LN
    assert "bert.encoder.LayerNorm.weight" in names
    assert not any(name.endswith(".bias") for name in names - {"cls.predictions.bias"})
    assert "cls.seq_relationship.weight" not in names and "bert.pooler.dense.weight" not in names
    gated = BertForPreTraining(MODERN).bert.encoder.layer[0].intermediate.dense
    assert gated.weight.shape == (2 * 48, 32)
    untied = BertForPreTraining(BertConfig(**{**vars(SMALL), "tie_word_embeddings": False}))
    assert (
        untied.cls.predictions.decoder.weight is not untied.bert.embeddings.word_embeddings.weight
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"layer_norm_position": "middle"}, "model.layer_norm_position='middle': allowed values"),
        (
            {"local_attention": 128},
            "model.local_attention=128 with model.global_attn_every_n_layers=1",
        ),
        (
            {"local_attention": 7, "global_attn_every_n_layers": 3},
            "model.local_attention=7: must be an even window",
        ),
        (
            {"position_embedding_type": "rotary", "hidden_size": 30, "num_heads": 2},
            "model.position_embedding_type=rotary .* model.hidden_size / model.num_heads = 30/2",
        ),
        ({"pooling": "max"}, "model.pooling='max': allowed values are pooler, cls, mean"),
    ],
)
def test_combinations_that_cannot_work_name_their_keys(values, message):
    with pytest.raises(ConfigError, match=message):
        BertConfig.from_dict(values)


def test_presets_bert_keeps_bert_and_modernbert_builds(make_config):
    defaults = BertConfig()
    for preset in ("tiny", "mini", "small", "medium", "base", "large"):
        model = make_config(f"model={preset}").model
        assert {k: model[k] for k in SWITCH_KEYS} == {k: getattr(defaults, k) for k in SWITCH_KEYS}
    base = BertConfig.from_dict(make_config("model=modernbert_base").model, vocab_size=50368)
    with torch.device("meta"):  # the sizes, without the memory
        parameters = count_parameters(BertForPreTraining(base, next_sentence=False))
    assert 149e6 < parameters - 50368 < 150e6  # the paper's 149M (the decoder bias aside)
    tiny = BertConfig.from_dict(make_config("model=modernbert_tiny").model, vocab_size=200)
    assert [tiny.is_global(i) for i in range(tiny.num_layers)] == [True, False, False]


def test_validation_names_the_keys_before_any_work(make_config):
    from bertlab.validation import validate_config

    with pytest.raises(ConfigError, match="model.global_attn_every_n_layers=1"):
        validate_config(make_config("model.local_attention=64"))


def record_joins(monkeypatch) -> list[tuple]:
    """The projections BertSelfAttention.join is called with, from now on."""
    joins = []
    original = BertSelfAttention.join
    monkeypatch.setattr(
        BertSelfAttention, "join", staticmethod(lambda *p: joins.append(p) or original(*p))
    )
    return joins


def test_joined_projections_are_made_once_and_never_outlive_the_weights(model, monkeypatch):
    inputs = batch([10, 7], 10)
    with torch.no_grad():
        expected = model(*inputs)[0]
    join_projections(model)
    joins = record_joins(monkeypatch)
    with torch.inference_mode():
        torch.testing.assert_close(model(*inputs)[0], expected, rtol=0, atol=0)
    assert joins == []  # every layer used the copy joined once

    # New weights (as load_state_dict writes them): the old copy is not used.
    torch.manual_seed(1)
    other = BertForPreTraining(SMALL).eval()
    model.load_state_dict(other.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(model(*inputs)[0], other(*inputs)[0], rtol=0, atol=0)
    assert joins  # joined on the call again

    join_projections(model)
    model.train()  # training drops the copy
    assert all(m.joined is None for m in model.modules() if isinstance(m, BertSelfAttention))


def test_the_cls_only_last_layer_slices_the_joined_copy(monkeypatch):
    torch.manual_seed(0)
    classifier = BertForSequenceClassification(SMALL, num_labels=3).eval()
    inputs = batch([10, 7], 10)
    with torch.no_grad():
        expected = classifier(*inputs)
    join_projections(classifier)
    joins = record_joins(monkeypatch)
    with torch.inference_mode():
        torch.testing.assert_close(classifier(*inputs), expected, rtol=0, atol=1e-6)
    assert joins == []  # the query alone and key + value came from the joined copy
