"""Every model family: shapes, attention maps, weight tying, init, positions and KV-cache decoding."""

from __future__ import annotations

import math

import pytest
import torch

from tinyformers.core.models import (
    ConvStem,
    DecoderConfig,
    DecoderLM,
    Encoder,
    EncoderClassifier,
    EncoderConfig,
    EncoderDecoder,
    EncoderTokenClassifier,
    PatchEmbedding,
    Seq2SeqConfig,
    VisionTransformer,
    ViTConfig,
    mean_pool,
    sentence_embedding,
    shift_right,
)

SMALL = {"d_model": 16, "n_heads": 4, "n_layers": 2, "d_ff": 32}
V = 23


def lm(**kw) -> DecoderLM:
    return DecoderLM(DecoderConfig(**{**SMALL, "vocab_size": V, "max_len": 64, **kw})).eval()


def encoder_cfg(**kw) -> EncoderConfig:
    return EncoderConfig(**{**SMALL, "vocab_size": V, "max_len": 32, **kw})


def seq2seq(**kw) -> EncoderDecoder:
    return EncoderDecoder(Seq2SeqConfig(**{**SMALL, "src_vocab_size": V, "tgt_vocab_size": V, **kw})).eval()


def vit(**kw) -> VisionTransformer:
    return VisionTransformer(ViTConfig(**{**SMALL, "image_size": 8, "patch_size": 4, "num_classes": 5, **kw})).eval()


def ids(b: int, t: int, low: int = 3) -> torch.Tensor:
    return torch.randint(low, V, (b, t))


def attention_mask(lengths: list[int], t: int) -> torch.Tensor:
    return (torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]).long()


def check_attentions(attns: list[torch.Tensor], n: int, shape: tuple, mask: torch.Tensor | None = None) -> None:
    """n tensors of ``shape``; each row a distribution over the real keys (zero weight on padding)."""
    assert len(attns) == n
    for w in attns:
        assert w.shape == shape
        assert (w >= 0).all()
        torch.testing.assert_close(w.sum(-1), torch.ones(shape[:-1]), atol=1e-5, rtol=0)
        if mask is not None:
            assert (w * (mask == 0)[:, None, None, :]).abs().max() == 0


# --- shapes and attention maps ------------------------------------------------------------------------------


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rotary", "none"])
def test_decoder_lm_shapes(positions: str) -> None:
    model = lm(positions=positions)
    out = model(ids(2, 9), labels=ids(2, 9), output_attentions=True)
    assert out.logits.shape == (2, 9, V) and out.last_hidden_state.shape == (2, 9, 16)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    check_attentions(out.attentions, 2, (2, 4, 9, 9))
    assert all((w.triu(1) == 0).all() for w in out.attentions)  # causal
    assert model(ids(2, 9)).attentions == [] and model.block_size == 64


def test_decoder_lm_attentions_with_padding() -> None:
    mask = attention_mask([7, 7], 7)
    mask[1, :2] = 0  # left padding
    out = lm()(ids(2, 7), attention_mask=mask, output_attentions=True)
    real_rows = [w[:, :, 2:] for w in out.attentions]
    check_attentions(real_rows, 2, (2, 4, 5, 7), mask)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_encoder_classifier_shapes(pooling: str) -> None:
    model = EncoderClassifier(encoder_cfg(), num_classes=3, pooling=pooling).eval()
    mask = attention_mask([6, 4], 6)
    out = model(ids(2, 6), mask, labels=torch.tensor([0, 2]), output_attentions=True)
    assert out.logits.shape == (2, 3) and out.last_hidden_state.shape == (2, 6, 16) and out.loss.ndim == 0
    check_attentions(out.attentions, 2, (2, 4, 6, 6), mask)
    with pytest.raises(ValueError):
        EncoderClassifier(encoder_cfg(), 3, pooling="max")


def test_pooling_uses_the_right_positions() -> None:
    model = EncoderClassifier(encoder_cfg(), num_classes=3, pooling="mean").eval()
    x, mask = ids(2, 6), attention_mask([6, 4], 6)
    h = model.encoder(x, mask).last_hidden_state
    expected = torch.stack([h[0].mean(0), h[1, :4].mean(0)])
    torch.testing.assert_close(mean_pool(h, mask), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(model(x, mask).logits, model.head(expected), atol=1e-5, rtol=0)
    model.pooling = "cls"
    torch.testing.assert_close(model(x, mask).logits, model.head(h[:, 0]), atol=1e-5, rtol=0)
    emb = sentence_embedding(model.encoder, x, mask)
    torch.testing.assert_close(emb, expected / expected.norm(dim=-1, keepdim=True), atol=1e-6, rtol=0)


def test_encoder_token_classifier_shapes() -> None:
    model = EncoderTokenClassifier(encoder_cfg(type_vocab_size=2, embed_norm=True), num_labels=4).eval()
    out = model(ids(3, 5), attention_mask([5, 3, 1], 5), labels=torch.randint(0, 4, (3, 5)), output_attentions=True)
    assert out.logits.shape == (3, 5, 4) and out.loss.ndim == 0
    check_attentions(out.attentions, 2, (3, 4, 5, 5), attention_mask([5, 3, 1], 5))


def test_encoder_token_types_matter() -> None:
    enc = Encoder(encoder_cfg(type_vocab_size=2)).eval()
    x = ids(1, 4)
    a = enc(x).last_hidden_state
    torch.testing.assert_close(enc(x, token_type_ids=torch.zeros(1, 4, dtype=torch.long)).last_hidden_state, a)
    assert not torch.allclose(enc(x, token_type_ids=torch.ones(1, 4, dtype=torch.long)).last_hidden_state, a)


def test_encoder_decoder_shapes() -> None:
    model = seq2seq()
    src, src_mask = ids(2, 8), attention_mask([8, 5], 8)
    labels = ids(2, 6)
    out = model(src, labels, src_mask, output_attentions=True)
    assert out.logits.shape == (2, 6, V) and out.loss.ndim == 0
    # encoder self-attention, then decoder self-attention; cross-attention separately
    check_attentions(out.attentions[:2], 2, (2, 4, 8, 8), src_mask)
    check_attentions(out.attentions[2:], 2, (2, 4, 6, 6))
    check_attentions(out.cross_attentions, 2, (2, 4, 6, 8), src_mask)
    memory, _ = model.encode(src, src_mask)
    assert memory.shape == (2, 8, 16)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_vision_transformer_shapes(pooling: str) -> None:
    model = vit(pooling=pooling)
    out = model(torch.randn(2, 1, 8, 8), labels=torch.tensor([1, 4]), output_attentions=True)
    assert out.logits.shape == (2, 5) and out.last_hidden_state.shape == (2, 5, 16) and out.loss.ndim == 0
    check_attentions(out.attentions, 2, (2, 4, 5, 5))
    h = out.last_hidden_state
    pooled = h[:, 0] if pooling == "cls" else h[:, 1:].mean(1)  # mean over the patches, not the class token
    torch.testing.assert_close(out.logits, model.head(pooled), atol=1e-6, rtol=0)
    assert vit(num_classes=0)(torch.randn(1, 1, 8, 8)).logits is None
    with pytest.raises(ValueError):
        ViTConfig(image_size=10, patch_size=4)


def test_patch_embedding_is_a_linear_map_of_each_patch() -> None:
    cfg = ViTConfig(**SMALL, image_size=8, patch_size=4, in_channels=3)
    pe = PatchEmbedding(cfg)
    pixels = torch.randn(1, 3, 8, 8)
    out = pe(pixels)
    w = pe.proj.weight.flatten(1)  # (d, C * P * P)
    for n, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):  # row-major patch order
        patch = pixels[0, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4].flatten()
        torch.testing.assert_close(out[0, n], w @ patch + pe.proj.bias, atol=1e-5, rtol=0)


def test_conv_stem_sees_the_neighbourhood_of_its_patch_only() -> None:
    """patch_embed='conv' (Xiao et al. 2021): the same (H/P)^2 tokens, but token n also sees the 2 pixels around
    its patch (two 3x3 convolutions), and nothing further; the convolutions keep PyTorch's init, not GPT-2's."""
    model = vit(patch_embed="conv", stem_channels=4, image_size=12, patch_size=4)
    stem = model.patch_embed
    assert isinstance(stem, ConvStem) and not isinstance(stem, PatchEmbedding)
    pixels = torch.randn(1, 1, 12, 12)
    base = stem(pixels)
    assert base.shape == (1, 9, 16)
    near, far = pixels.clone(), pixels.clone()
    near[0, 0, 5, 5] += 1.0  # in patch (1, 1), 2 pixels from patch (0, 0)
    far[0, 0, 6, 6] += 1.0  # 3 pixels away: outside patch (0, 0)'s receptive field
    assert not torch.allclose(stem(near)[0, 0], base[0, 0]) and torch.equal(stem(far)[0, 0], base[0, 0])
    assert stem.convs[0].weight.std() > 0.1  # Kaiming-uniform for 9 inputs: std ~ 0.19, not 0.02
    out = model(torch.randn(2, 1, 12, 12), labels=torch.tensor([0, 1]))
    assert out.logits.shape == (2, 5) and out.loss.ndim == 0
    with pytest.raises(ValueError, match="patch_embed"):
        ViTConfig(**SMALL, patch_embed="resnet")


def test_two_stage_conv_stem_keeps_the_patch_tokens_and_widens_their_view() -> None:
    """stem_stages=2: a 2x2 max-pool and two conv layers of twice the width after the first stage; the tokens are
    still the (H/P)^2 patches in row-major order, each now seeing 2 + 2*2 pixels (plus the pool) around its patch."""
    model = vit(patch_embed="conv", stem_channels=4, stem_stages=2, image_size=16, patch_size=4)
    stem = model.patch_embed
    assert [m.out_channels for m in stem.convs if isinstance(m, torch.nn.Conv2d)] == [4, 4, 8, 8]
    assert stem.proj.kernel_size == (2, 2) and stem.proj.in_channels == 8
    pixels = torch.randn(1, 1, 16, 16)
    base = stem(pixels)
    assert base.shape == (1, 16, 16)  # 4x4 patches of a 16x16 image
    near, far = pixels.clone(), pixels.clone()
    near[0, 0, 8, 8] += 1.0  # 5 pixels from patch (0, 0): seen by the second stage only
    far[0, 0, 12, 12] += 5.0  # 9 pixels away: beyond both stages' reach
    assert not torch.allclose(stem(near)[0, 0], base[0, 0]) and torch.equal(stem(far)[0, 0], base[0, 0])
    one_stage = vit(patch_embed="conv", stem_channels=4, image_size=16, patch_size=4).patch_embed
    assert torch.equal(one_stage(near)[0, 0], one_stage(pixels)[0, 0])  # two 3x3 convs reach 2 pixels only
    with pytest.raises(ValueError, match="stem_stages"):
        ViTConfig(**SMALL, image_size=12, patch_size=6, patch_embed="conv", stem_stages=3)


# --- weight tying and init ----------------------------------------------------------------------------------


def test_decoder_weight_tying_shares_storage() -> None:
    model = lm(tie_weights=True)
    assert model.lm_head.weight is model.embed.tokens.weight
    assert model.lm_head.weight.data_ptr() == model.embed.tokens.weight.data_ptr()
    with torch.no_grad():
        model.embed.tokens.weight[5, 0] = 123.0
    assert model.lm_head.weight[5, 0] == 123.0
    untied = lm(tie_weights=False)
    assert untied.lm_head.weight.data_ptr() != untied.embed.tokens.weight.data_ptr()


def test_seq2seq_shared_embeddings_share_storage() -> None:
    model = seq2seq(share_embeddings=True)
    ptr = model.src_embed.tokens.weight.data_ptr()
    assert model.tgt_embed.tokens.weight.data_ptr() == ptr and model.lm_head.weight.data_ptr() == ptr
    with pytest.raises(ValueError):
        EncoderDecoder(Seq2SeqConfig(**SMALL, src_vocab_size=10, tgt_vocab_size=11, share_embeddings=True))


def test_gpt2_init_stds() -> None:
    n_layers = 3
    model = DecoderLM(DecoderConfig(d_model=128, n_heads=4, n_layers=n_layers, d_ff=512, vocab_size=512))
    residual_std = 0.02 / math.sqrt(2 * n_layers)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert (p == 0).all(), name
        elif "norm" in name:
            assert (p == 1).all(), name
        else:
            expected = residual_std if name.endswith(("out_proj.weight", "fc2.weight")) else 0.02
            assert abs(p.std().item() - expected) < 0.05 * expected, (name, p.std().item(), expected)
            assert abs(p.mean().item()) < 0.1 * expected, name


# --- positions ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rotary"])
def test_encoder_knows_order(positions: str) -> None:
    enc = Encoder(encoder_cfg(positions=positions)).eval()
    x, perm = ids(1, 6), torch.tensor([3, 1, 5, 0, 2, 4])
    assert not torch.allclose(enc(x[:, perm]).last_hidden_state, enc(x).last_hidden_state[:, perm], atol=1e-4)


def test_encoder_without_positions_is_permutation_equivariant() -> None:
    enc = Encoder(encoder_cfg(positions="none")).eval()
    x, perm = ids(1, 6), torch.tensor([3, 1, 5, 0, 2, 4])
    torch.testing.assert_close(enc(x[:, perm]).last_hidden_state, enc(x).last_hidden_state[:, perm], atol=1e-5, rtol=0)


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rotary", "none"])
def test_seq2seq_knows_source_order(positions: str) -> None:
    """Cross-attention is order-blind: only positions inside the encoder can tell a permuted source apart."""
    model = seq2seq(positions=positions)
    with torch.no_grad():  # sharper attention than at init, so that where a key sits matters
        for name, p in model.named_parameters():
            if name.endswith("in_proj.weight"):
                p.mul_(10)
    src, y = ids(1, 6), ids(1, 4)
    a = model.decode(y, model.encode(src)[0]).logits
    b = model.decode(y, model.encode(src.flip(1))[0]).logits
    gap = (a - b).abs().max().item()  # float noise without positions
    assert gap < 1e-6 if positions == "none" else gap > 1e-5


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_longer_than_max_len_is_an_error(positions: str) -> None:
    model = lm(positions=positions, max_len=8)
    with pytest.raises(ValueError):
        model(ids(1, 9))
    cache = model.new_cache()
    model(ids(1, 7), cache=cache)
    with pytest.raises(ValueError):  # 2 new tokens at positions 7 and 8 of an 8-position context
        model(ids(1, 2), cache=cache)


# --- KV cache -----------------------------------------------------------------------------------------------


def run_chunks(step, x: torch.Tensor, chunks: list[int]) -> torch.Tensor:
    outs, start = [], 0
    for n in chunks:
        outs.append(step(x[:, start : start + n]))
        start += n
    return torch.cat(outs, 1)


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rotary"])
@pytest.mark.parametrize("chunks", [[3, 4, 1], [1] * 8, [8]])
def test_decoder_lm_cache_equals_full(positions: str, chunks: list[int]) -> None:
    model = lm(positions=positions)
    x = ids(2, 8)
    full = model(x).logits
    cache = model.new_cache()
    cached = run_chunks(lambda c: model(c, cache=cache).logits, x, chunks)
    assert cache.seq_len == 8
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)


def test_decoder_lm_cache_with_left_padding() -> None:
    model = lm()
    x, mask = ids(2, 8), torch.ones(2, 8, dtype=torch.long)
    mask[1, :3] = 0
    full = model(x, attention_mask=mask).logits
    cache = model.new_cache()
    parts, start = [], 0
    for n in (3, 4, 1):
        parts.append(model(x[:, start : start + n], attention_mask=mask[:, : start + n], cache=cache).logits)
        start += n
    torch.testing.assert_close(torch.cat(parts, 1)[mask.bool()], full[mask.bool()], atol=1e-5, rtol=0)


@pytest.mark.parametrize("positions", ["sinusoidal", "learned", "rotary"])
@pytest.mark.parametrize("norm_first", [True, False])
def test_encoder_decoder_cache_equals_full(positions: str, norm_first: bool) -> None:
    model = seq2seq(positions=positions, norm_first=norm_first)
    src, src_mask = ids(2, 7), attention_mask([7, 4], 7)
    memory, _ = model.encode(src, src_mask)
    y = ids(2, 8)
    full = model.decode(y, memory, src_mask).logits
    cache, cross = model.new_caches()
    cached = run_chunks(lambda c: model.decode(c, memory, src_mask, cache, cross).logits, y, [3, 4, 1])
    assert cache.seq_len == 8 and cross.seq_len == 7
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)


def test_teacher_forced_forward_equals_decode_of_shifted_labels() -> None:
    model = seq2seq()
    src, labels = ids(2, 5), ids(2, 6)
    out = model(src, labels)
    memory, _ = model.encode(src)
    expected = model.decode(shift_right(labels, 1, 0), memory).logits
    torch.testing.assert_close(out.logits, expected, atol=1e-6, rtol=0)
