import pytest
import torch

from bertlab.model import (
    BertConfig,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
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
