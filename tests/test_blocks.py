"""Blocks, norms, feed-forward and positions, checked against torch.nn and the papers' formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinyformers.core.attention import KVCache
from tinyformers.core.blocks import (
    CoreConfig,
    DecoderBlock,
    DecoderStack,
    EncoderBlock,
    EncoderStack,
    FeedForward,
    RMSNorm,
    make_norm,
)
from tinyformers.core.dropout import fast_dropout
from tinyformers.core.positions import (
    LearnedPositions,
    RotaryEmbedding,
    SinusoidalPositions,
    make_positions,
    sinusoidal_table,
)

D, H, FF = 16, 4, 32

# our parameter name fragment -> torch.nn's, per block kind
ENC_NAMES = {
    "self_attn.in_proj.weight": "self_attn.in_proj_weight",
    "self_attn.in_proj.bias": "self_attn.in_proj_bias",
    "ff.fc1": "linear1",
    "ff.fc2": "linear2",
    "norm_attn": "norm1",
    "norm_ff": "norm2",
}
DEC_NAMES = {
    **ENC_NAMES,
    "cross_attn.in_proj.weight": "multihead_attn.in_proj_weight",
    "cross_attn.in_proj.bias": "multihead_attn.in_proj_bias",
    "cross_attn.out_proj": "multihead_attn.out_proj",
    "norm_cross": "norm2",
    "norm_ff": "norm3",
}


def cfg(**kw) -> CoreConfig:
    return CoreConfig(**{"d_model": D, "n_heads": H, "d_ff": FF, "n_layers": 2, **kw})


def randomize(module: nn.Module) -> None:
    """Random weights everywhere, norms included, so a mis-mapped parameter cannot go unnoticed."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if p.dim() == 1 and p.numel() == D else 0.0))


def translate(name: str, names: dict[str, str]) -> str:
    for ours, theirs in names.items():
        if f".{ours}" in f".{name}":
            return name.replace(ours, theirs, 1)
    return name


def copy_into(ours: nn.Module, ref: nn.Module, names: dict[str, str]) -> None:
    ref_params = dict(ref.named_parameters())
    ours_params = dict(ours.named_parameters())
    mapped = {translate(n, names): p for n, p in ours_params.items()}
    assert set(mapped) == set(ref_params), set(mapped) ^ set(ref_params)
    with torch.no_grad():
        for n, p in mapped.items():
            ref_params[n].copy_(p)


def padding_mask(b: int, s: int, lengths: list[int]) -> torch.Tensor:
    return torch.arange(s)[None, :] >= torch.tensor(lengths)[:, None]  # True = padding


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_block_vs_torch(norm_first: bool, activation: str) -> None:
    block = EncoderBlock(cfg(norm_first=norm_first, activation=activation)).eval()
    ref = nn.TransformerEncoderLayer(
        D, H, FF, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first
    ).eval()
    randomize(block)
    copy_into(block, ref, ENC_NAMES)
    x = torch.randn(3, 7, D)
    kpm = padding_mask(3, 7, [7, 4, 2])
    out, _ = block(x, key_padding_mask=kpm)
    with torch.no_grad():
        expected = ref(x, src_key_padding_mask=kpm)
    real = ~kpm
    torch.testing.assert_close(out[real], expected[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(block(x)[0], ref(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm_first", [True, False])
def test_decoder_block_vs_torch(norm_first: bool) -> None:
    block = DecoderBlock(cfg(norm_first=norm_first, activation="relu")).eval()
    ref = nn.TransformerDecoderLayer(
        D, H, FF, dropout=0.0, activation="relu", batch_first=True, norm_first=norm_first
    ).eval()
    randomize(block)
    copy_into(block, ref, DEC_NAMES)
    y, mem = torch.randn(2, 6, D), torch.randn(2, 9, D)
    mkpm = padding_mask(2, 9, [9, 5])
    out, _, _ = block(y, mem, memory_key_padding_mask=mkpm)
    causal = nn.Transformer.generate_square_subsequent_mask(6)
    expected = ref(y, mem, tgt_mask=causal, memory_key_padding_mask=mkpm, tgt_is_causal=True)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore::UserWarning")  # nested-tensor notices from torch.nn.Transformer
@pytest.mark.parametrize("norm_first", [True, False])
def test_stacks_vs_torch_transformer(norm_first: bool) -> None:
    c = cfg(norm_first=norm_first, activation="gelu")
    enc, dec = EncoderStack(c, final_norm=True).eval(), DecoderStack(c, final_norm=True).eval()
    ref = nn.Transformer(D, H, 2, 2, FF, dropout=0.0, activation="gelu", batch_first=True, norm_first=norm_first).eval()
    randomize(enc)
    randomize(dec)
    copy_into(enc, ref.encoder, ENC_NAMES)
    copy_into(dec, ref.decoder, DEC_NAMES)
    src, tgt = torch.randn(2, 8, D), torch.randn(2, 5, D)
    skpm = padding_mask(2, 8, [8, 3])
    memory, _ = enc(src, key_padding_mask=skpm)
    out, _, _ = dec(tgt, memory, memory_key_padding_mask=skpm)
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    with torch.no_grad():
        ref_memory = ref.encoder(src, src_key_padding_mask=skpm)
        expected = ref(src, tgt, tgt_mask=causal, src_key_padding_mask=skpm, memory_key_padding_mask=skpm)
    torch.testing.assert_close(memory[~skpm], ref_memory[~skpm], atol=1e-5, rtol=0)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_final_norm_default_follows_norm_first() -> None:
    assert EncoderStack(cfg(norm_first=True)).norm is not None
    assert EncoderStack(cfg(norm_first=False)).norm is None
    assert DecoderStack(cfg(norm_first=False), final_norm=True).norm is not None


def test_decoder_block_cache_equals_full() -> None:
    block = DecoderBlock(cfg()).eval()
    y, mem = torch.randn(2, 7, D), torch.randn(2, 5, D)
    full, _, _ = block(y, mem)
    cache, cross = KVCache(1), KVCache(1)
    parts = [block(y[:, a:b], mem, cache=cache, cross_cache=cross)[0] for a, b in [(0, 3), (3, 6), (6, 7)]]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=0)


# --- norms and feed-forward ---------------------------------------------------------------------------------


def test_rmsnorm_vs_torch() -> None:
    ours, ref = RMSNorm(D, eps=1e-5), nn.RMSNorm(D, eps=1e-5)
    with torch.no_grad():
        ours.weight.normal_()
        ref.weight.copy_(ours.weight)
    x = torch.randn(3, 5, D) * 4
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=0)
    by_hand = x / torch.sqrt((x**2).mean(-1, keepdim=True) + 1e-5) * ours.weight
    torch.testing.assert_close(ours(x), by_hand, atol=1e-5, rtol=0)


def test_make_norm() -> None:
    norm = make_norm(cfg(norm="rmsnorm", norm_eps=1e-3))
    assert isinstance(norm, RMSNorm) and norm.eps == 1e-3
    ln = make_norm(cfg(bias=False))
    assert isinstance(ln, nn.LayerNorm) and ln.bias is None


def test_swiglu_vs_hand_formula() -> None:
    ff = FeedForward(cfg(activation="swiglu")).eval()
    randomize(ff)
    x = torch.randn(2, 3, D)
    g = x @ ff.gate.weight.T + ff.gate.bias
    up = x @ ff.fc1.weight.T + ff.fc1.bias
    h = g * (1 / (1 + torch.exp(-g))) * up  # SiLU(x W_g) * (x W_1)
    expected = h @ ff.fc2.weight.T + ff.fc2.bias
    torch.testing.assert_close(ff(x), expected, atol=1e-5, rtol=0)
    assert FeedForward(cfg(activation="gelu")).gate is None


def test_feed_forward_dropout_sits_between_the_layers() -> None:
    ff = FeedForward(cfg(activation="relu", dropout=0.5)).train()
    x = torch.randn(2, 3, D)
    torch.manual_seed(5)
    out = ff(x)
    torch.manual_seed(5)
    expected = fast_dropout(F.relu(ff.fc1(x)), 0.5, training=True) @ ff.fc2.weight.T + ff.fc2.bias
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh"])
def test_feed_forward_vs_hand_formula(activation: str) -> None:
    ff = FeedForward(cfg(activation=activation)).eval()
    x = torch.randn(2, 3, D)
    a = x @ ff.fc1.weight.T + ff.fc1.bias
    act = {
        "relu": lambda z: z.clamp(min=0),
        "gelu": lambda z: 0.5 * z * (1 + torch.erf(z / math.sqrt(2))),
        "gelu_tanh": lambda z: 0.5 * z * (1 + torch.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3))),
    }[activation]
    torch.testing.assert_close(ff(x), act(a) @ ff.fc2.weight.T + ff.fc2.bias, atol=1e-5, rtol=0)


@pytest.mark.parametrize("bad", [{"n_heads": 3}, {"activation": "tanh"}, {"norm": "batchnorm"}, {"positions": "alibi"}])
def test_core_config_validation(bad: dict) -> None:
    with pytest.raises(ValueError):
        cfg(**bad)


# --- positions ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d_model", [16, 7])
def test_sinusoidal_table_vs_paper_formula(d_model: int) -> None:
    table = sinusoidal_table(50, d_model)
    expected = torch.zeros(50, d_model, dtype=torch.float64)
    for pos in range(50):
        for j in range(d_model):
            i = j // 2  # dimension pair index: PE(pos, 2i) = sin, PE(pos, 2i+1) = cos
            angle = pos / 10000 ** (2 * i / d_model)
            expected[pos, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    torch.testing.assert_close(table.double(), expected, atol=1e-5, rtol=0)


def test_position_modules() -> None:
    sin = SinusoidalPositions(20, D)
    assert "table" not in sin.state_dict() and torch.equal(sin(torch.tensor([3, 4])), sinusoidal_table(20, D)[3:5])
    learned = LearnedPositions(20, D)
    assert torch.equal(learned(torch.arange(2)), learned.embedding.weight[:2])
    assert make_positions("rotary", 20, D) is None and make_positions("none", 20, D) is None
    assert isinstance(make_positions("learned", 20, D), LearnedPositions)
    with pytest.raises(ValueError):
        make_positions("alibi", 20, D)
    with pytest.raises(ValueError):
        RotaryEmbedding(7)


def rotate_by_hand(x: torch.Tensor, pos: int, base: float = 10000.0) -> torch.Tensor:
    """RoPE, half-split pairing: features i and i + d/2 rotate by angle pos * base^(-2i/d)."""
    d = x.size(-1)
    out = x.clone()
    for i in range(d // 2):
        theta = pos * base ** (-2 * i / d)
        a, b = x[..., i], x[..., i + d // 2]
        out[..., i] = a * math.cos(theta) - b * math.sin(theta)
        out[..., i + d // 2] = a * math.sin(theta) + b * math.cos(theta)
    return out


def test_rotary_vs_hand_rotation() -> None:
    rope = RotaryEmbedding(8, max_len=64)
    x = torch.randn(2, 3, 5, 8)
    out = rope(x, offset=11)
    for t in range(5):
        torch.testing.assert_close(out[:, :, t], rotate_by_hand(x[:, :, t], 11 + t), atol=1e-5, rtol=0)
    torch.testing.assert_close(out, rope(torch.cat([torch.zeros(2, 3, 11, 8), x], 2))[:, :, 11:], atol=1e-6, rtol=0)


def test_rotary_heads_last_layout_is_the_same_rotation() -> None:
    """``seq_dim=-3`` rotates ``(B, T, heads, d)`` as attention keeps queries and keys before moving the heads
    forward: the same numbers as ``(B, heads, T, d)``; gradients too. Any other seq_dim is refused."""
    rope = RotaryEmbedding(8, max_len=32)
    x = torch.randn(2, 6, 3, 8, requires_grad=True)  # (B, T, heads, d)
    a = rope(x, offset=5, seq_dim=-3)
    b = rope(x.transpose(1, 2), offset=5).transpose(1, 2)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    w = torch.randn_like(a)
    (ga,) = torch.autograd.grad((a * w).sum(), x)
    (gb,) = torch.autograd.grad((b * w).sum(), x)
    torch.testing.assert_close(ga, gb, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="seq_dim"):
        rope(x, seq_dim=1)


def test_rotary_dot_product_depends_only_on_relative_position() -> None:
    rope = RotaryEmbedding(8, max_len=128)
    q, k = torch.randn(8), torch.randn(8)

    def score(m: int, n: int) -> torch.Tensor:
        return rope(q.view(1, 1, 1, 8), m).flatten() @ rope(k.view(1, 1, 1, 8), n).flatten()

    for m, n in [(3, 1), (0, 5), (7, 7)]:
        for shift in (1, 13, 60):
            torch.testing.assert_close(score(m + shift, n + shift), score(m, n), atol=1e-4, rtol=0)
    assert not torch.allclose(score(3, 1), score(3, 2), atol=1e-3)  # but it does depend on the distance
    torch.testing.assert_close(rope(q.view(1, 1, 1, 8), 9).norm(), q.norm())  # a rotation keeps the norm
