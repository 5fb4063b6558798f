"""Properties that must hold for every input: padding invariance, causality, cache == recompute."""

from __future__ import annotations

from functools import cache

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyformers.core.models import (
    DecoderConfig,
    DecoderLM,
    Encoder,
    EncoderClassifier,
    EncoderConfig,
    EncoderDecoder,
    Seq2SeqConfig,
)

SMALL = {"d_model": 16, "n_heads": 4, "n_layers": 2, "d_ff": 32, "max_len": 32}
V = 17
PROPERTY = settings(max_examples=25, deadline=None, database=None)
POSITIONS = st.sampled_from(["learned", "sinusoidal", "rotary"])


def sharpen(model: torch.nn.Module) -> torch.nn.Module:
    """Larger query/key weights than GPT-2 init, so attention is peaked and every mask matters."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("in_proj.weight"):
                p.mul_(5)
    return model.eval()


@cache
def encoder(positions: str, norm_first: bool) -> Encoder:
    torch.manual_seed(1)
    return sharpen(Encoder(EncoderConfig(**SMALL, vocab_size=V, positions=positions, norm_first=norm_first)))


@cache
def classifier() -> EncoderClassifier:
    torch.manual_seed(2)
    return sharpen(EncoderClassifier(EncoderConfig(**SMALL, vocab_size=V), num_classes=3, pooling="mean"))


@cache
def decoder_lm(positions: str) -> DecoderLM:
    torch.manual_seed(3)
    return sharpen(DecoderLM(DecoderConfig(**SMALL, vocab_size=V, positions=positions)))


@cache
def seq2seq(positions: str) -> EncoderDecoder:
    torch.manual_seed(4)
    cfg = Seq2SeqConfig(**SMALL, src_vocab_size=V, tgt_vocab_size=V, positions=positions)
    return sharpen(EncoderDecoder(cfg))


def tokens(seed: int, *shape: int) -> torch.Tensor:
    return torch.randint(0, V, shape, generator=torch.Generator().manual_seed(seed))


@PROPERTY
@given(
    lengths=st.lists(st.integers(1, 10), min_size=1, max_size=3),
    extra=st.integers(1, 8),
    seed=st.integers(0, 2**31),
    positions=POSITIONS,
    norm_first=st.booleans(),
)
def test_padding_never_changes_real_positions(lengths, extra, seed, positions, norm_first) -> None:
    model = encoder(positions, norm_first)
    t = max(lengths)
    x = tokens(seed, len(lengths), t)
    mask = (torch.arange(t)[None] < torch.tensor(lengths)[:, None]).long()
    padded_x = torch.cat([x, tokens(seed + 1, len(lengths), extra)], 1)  # random junk at the pad positions
    padded_mask = torch.cat([mask, torch.zeros(len(lengths), extra, dtype=torch.long)], 1)
    with torch.no_grad():
        short = model(x, mask).last_hidden_state
        long = model(padded_x, padded_mask).last_hidden_state
        for i, n in enumerate(lengths):  # each row alone, no padding at all
            alone = model(x[i : i + 1, :n]).last_hidden_state[0]
            torch.testing.assert_close(long[i, :n], alone, atol=1e-5, rtol=0)
    real = mask.bool()
    torch.testing.assert_close(long[:, :t][real], short[real], atol=1e-5, rtol=0)


@PROPERTY
@given(length=st.integers(1, 8), extra=st.integers(1, 6), seed=st.integers(0, 2**31))
def test_padding_never_changes_classifier_logits(length, extra, seed) -> None:
    model = classifier()
    x = tokens(seed, 1, length + extra)
    mask = torch.ones(1, length + extra, dtype=torch.long)
    mask[:, length:] = 0
    with torch.no_grad():
        torch.testing.assert_close(model(x, mask).logits, model(x[:, :length]).logits, atol=1e-5, rtol=0)


@PROPERTY
@given(t=st.integers(2, 12), cut=st.integers(0, 11), seed=st.integers(0, 2**31), positions=POSITIONS)
def test_future_tokens_never_change_the_past_decoder_lm(t, cut, seed, positions) -> None:
    cut = cut % (t - 1)  # positions 0..cut keep their tokens; later ones change
    model = decoder_lm(positions)
    x = tokens(seed, 2, t)
    y = x.clone()
    y[:, cut + 1 :] = (x[:, cut + 1 :] + 1 + tokens(seed + 1, 2, t - cut - 1) % (V - 1)) % V
    with torch.no_grad():
        a, b = model(x).logits, model(y).logits
    torch.testing.assert_close(a[:, : cut + 1], b[:, : cut + 1], atol=1e-5, rtol=0)
    assert not torch.allclose(a[:, cut + 1 :], b[:, cut + 1 :], atol=1e-4)  # the future itself does change


@PROPERTY
@given(t=st.integers(2, 10), cut=st.integers(0, 9), seed=st.integers(0, 2**31), positions=POSITIONS)
def test_future_tokens_never_change_the_past_seq2seq(t, cut, seed, positions) -> None:
    cut = cut % (t - 1)
    model = seq2seq(positions)
    src, x = tokens(seed, 2, 6), tokens(seed + 1, 2, t)
    y = x.clone()
    y[:, cut + 1 :] = (x[:, cut + 1 :] + 1) % V
    with torch.no_grad():
        memory, _ = model.encode(src)
        a, b = model.decode(x, memory).logits, model.decode(y, memory).logits
    torch.testing.assert_close(a[:, : cut + 1], b[:, : cut + 1], atol=1e-5, rtol=0)


@PROPERTY
@given(
    chunks=st.lists(st.integers(1, 5), min_size=1, max_size=6),
    seed=st.integers(0, 2**31),
    positions=POSITIONS,
)
def test_cached_decoding_equals_recompute_decoder_lm(chunks, seed, positions) -> None:
    model = decoder_lm(positions)
    x = tokens(seed, 2, sum(chunks))
    cache_, parts, start = model.new_cache(), [], 0
    with torch.no_grad():
        full = model(x).logits
        for n in chunks:
            parts.append(model(x[:, start : start + n], cache=cache_).logits)
            start += n
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=0)


@PROPERTY
@given(
    chunks=st.lists(st.integers(1, 5), min_size=1, max_size=6),
    seed=st.integers(0, 2**31),
    positions=POSITIONS,
)
def test_cached_decoding_equals_recompute_seq2seq(chunks, seed, positions) -> None:
    model = seq2seq(positions)
    src, y = tokens(seed, 2, 5), tokens(seed + 1, 2, sum(chunks))
    src_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        memory, _ = model.encode(src, src_mask)
        full = model.decode(y, memory, src_mask).logits
        self_cache, cross_cache = model.new_caches()
        parts, start = [], 0
        for n in chunks:
            parts.append(model.decode(y[:, start : start + n], memory, src_mask, self_cache, cross_cache).logits)
            start += n
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=0)
