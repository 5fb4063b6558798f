"""The CPU dropout (tinyformers.core.dropout): nn.Dropout's behaviour with a cheaper mask."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tinyformers.core.dropout import LEVELS, Dropout, dropout_mask, fast_dropout


@pytest.mark.parametrize("p", [0.05, 0.1, 0.3, 0.5, 0.9])
def test_keep_rate_and_unbiased_expectation(p: float) -> None:
    """Keep rate within 5 standard errors of 1 - p; the scaled output keeps the input's mean."""
    torch.manual_seed(0)
    n = 400_000
    x = torch.ones(n)
    out = fast_dropout(x, p)
    kept = (out != 0).float().mean().item()
    se = math.sqrt(p * (1 - p) / n)
    assert abs(kept - (1 - p)) < 5 * se
    assert abs(out.mean().item() - 1.0) < 5 * se / (1 - p)
    survivors = out[out != 0]
    torch.testing.assert_close(survivors, torch.full_like(survivors, LEVELS / (LEVELS - round(p * LEVELS))))


def test_mask_elements_are_independent_of_their_neighbours() -> None:
    """The 16-bit pieces of one 64-bit word are not correlated (the four of a word, and word to word)."""
    torch.manual_seed(1)
    m = dropout_mask((1_000_000,), 0.5).float()
    for piece in range(4):  # each 16-bit piece of a word (the top one holds the word's sign bit) is fair
        assert abs(m[piece::4].mean().item() - 0.5) < 5 * 0.5 / math.sqrt(m.numel() / 4), piece
    for lag in (1, 2, 3, 4, 5):
        corr = torch.corrcoef(torch.stack([m[:-lag], m[lag:]]))[0, 1].item()
        assert abs(corr) < 5 / math.sqrt(m.numel()), lag


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=4), p=st.floats(0.0, 1.0))
def test_any_shape_and_rate(shape: list[int], p: float) -> None:
    x = torch.randn(*shape)
    out = fast_dropout(x, p)
    assert out.shape == x.shape and out.dtype == x.dtype
    if p >= 1.0:
        assert (out == 0).all()
    nonzero = out != 0
    torch.testing.assert_close(out[nonzero] * (1 - round(p * LEVELS) / LEVELS), x[nonzero])


def test_a_rate_that_rounds_to_one_drops_everything() -> None:
    # regression: p = 0.9999999999999999 rounded to 65536/65536 and divided by zero (found by hypothesis)
    x = torch.randn(3, 5)
    for p in (0.9999999999999999, 1 - 1 / (4 * LEVELS)):
        assert (fast_dropout(x, p) == 0).all()
    kept = fast_dropout(torch.ones(4096), 1 - 2 / LEVELS)  # just below: a real dropout, survivors scaled up
    assert torch.isin(kept, torch.tensor([0.0, LEVELS / 2])).all()


def test_reproducible_with_the_global_seed_and_eval_is_identity() -> None:
    layer = Dropout(0.3)
    x = torch.randn(4, 8, 16)
    torch.manual_seed(7)
    a = layer(x)
    torch.manual_seed(7)
    assert torch.equal(a, layer(x))
    assert torch.equal(layer.eval()(x), x)
    assert isinstance(layer, nn.Dropout)  # same state, same eval switch, same repr as torch's


def test_gradient_is_the_mask_times_the_scale() -> None:
    x = torch.randn(64, 32, requires_grad=True)
    torch.manual_seed(3)
    out = fast_dropout(x, 0.25)
    out.sum().backward()
    assert x.grad is not None
    scale = LEVELS / (LEVELS - round(0.25 * LEVELS))
    torch.testing.assert_close(x.grad, (out != 0).float() * scale)


def test_bf16_input_stays_bf16() -> None:
    x = torch.randn(16, 16, dtype=torch.bfloat16)
    assert fast_dropout(x, 0.1).dtype == torch.bfloat16


def test_compiling_a_model_with_dropout_gives_one_graph() -> None:
    """Dynamo cannot trace ``random_``: the CPU mask broke the graph at every dropout (a dozen graphs and
    recompiles for a small encoder-decoder, slower than eager). Inside ``torch.compile`` it is ``F.dropout``."""
    from tinyformers.core.models import EncoderDecoder, Seq2SeqConfig

    torch.manual_seed(0)
    cfg = Seq2SeqConfig(
        d_model=16,
        n_heads=2,
        n_layers=2,
        d_ff=32,
        dropout=0.1,
        max_len=8,
        src_vocab_size=11,
        tgt_vocab_size=11,
        pad_id=0,
        bos_id=1,
        eos_id=2,
    )
    model = EncoderDecoder(cfg).train()
    src, labels = torch.randint(3, 11, (2, 6)), torch.randint(3, 11, (2, 5))

    def step(src: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return model(src_ids=src, labels=labels).loss

    torch._dynamo.reset()
    explained = torch._dynamo.explain(step)(src, labels)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1
