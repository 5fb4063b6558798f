"""One test class per bug our source projects shipped, so that none of them can come back."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinyformers.core.models import (
    DecoderConfig,
    DecoderLM,
    EncoderClassifier,
    EncoderConfig,
    EncoderDecoder,
    EncoderTokenClassifier,
    Seq2SeqConfig,
    VisionTransformer,
    ViTConfig,
    shift_right,
)

SMALL = {"d_model": 16, "n_heads": 4, "n_layers": 2, "d_ff": 32}
V = 19
PAD, BOS = 0, 1


def build(family: str, seed: int = 0, **kw) -> nn.Module:
    torch.manual_seed(seed)
    if family == "decoder":
        return DecoderLM(DecoderConfig(**SMALL, vocab_size=V, max_len=64, **kw))
    if family == "decoder_rotary_untied":
        return DecoderLM(DecoderConfig(**SMALL, vocab_size=V, positions="rotary", tie_weights=False, **kw))
    if family == "classifier":
        return EncoderClassifier(EncoderConfig(**SMALL, vocab_size=V, type_vocab_size=2, embed_norm=True, **kw), 3)
    if family == "token_classifier":
        return EncoderTokenClassifier(EncoderConfig(**SMALL, vocab_size=V, norm="rmsnorm", **kw), 4)
    if family == "seq2seq":
        return EncoderDecoder(Seq2SeqConfig(**SMALL, src_vocab_size=V, tgt_vocab_size=V, **kw))
    if family == "seq2seq_shared":
        cfg = Seq2SeqConfig(**SMALL, src_vocab_size=V, tgt_vocab_size=V, share_embeddings=True, norm_first=False, **kw)
        return EncoderDecoder(cfg)
    if family == "vit":
        return VisionTransformer(ViTConfig(**SMALL, image_size=8, patch_size=4, num_classes=5, **kw))
    raise ValueError(family)


FAMILIES = [
    "decoder",
    "decoder_rotary_untied",
    "classifier",
    "token_classifier",
    "seq2seq",
    "seq2seq_shared",
    "vit",
]


def tokens(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(3, V, shape, generator=torch.Generator().manual_seed(seed))


def run(model: nn.Module, seed: int = 0) -> torch.Tensor:
    """Logits of one fixed batch for any family."""
    if isinstance(model, VisionTransformer):
        return model(torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(seed))).logits
    if isinstance(model, EncoderDecoder):
        return model(tokens(2, 6, seed=seed), tokens(2, 5, seed=seed + 1)).logits
    if isinstance(model, DecoderLM):
        return model(tokens(2, 7, seed=seed)).logits
    return model(tokens(2, 7, seed=seed), torch.tensor([[1] * 7, [1] * 4 + [0] * 3])).logits


# --- (a) unregistered submodules ----------------------------------------------------------------------------


def hidden_modules(model: nn.Module) -> list[str]:
    """Modules/parameters in plain attributes, lists or dicts: invisible to .parameters() and state_dict."""
    found = []
    for mod_name, module in model.named_modules():
        for attr, value in vars(module).items():
            if attr.startswith("_"):
                continue
            values = list(value.values()) if isinstance(value, dict) else value
            values = values if isinstance(values, (list, tuple)) else [values]
            if any(isinstance(v, (nn.Module, nn.Parameter)) for v in values):
                found.append(f"{mod_name}.{attr}")
    return found


@pytest.mark.parametrize("family", FAMILIES)
def test_every_parameter_is_registered(family: str) -> None:
    model = build(family)
    assert hidden_modules(model) == []
    state = model.state_dict()
    names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    persistent_buffers = {n for n, _ in model.named_buffers()} & set(state)
    assert set(state) == names | persistent_buffers
    unique = {t.data_ptr(): t.numel() for t in state.values()}  # tied weights: one storage, several keys
    assert sum(p.numel() for p in model.parameters()) == sum(unique.values())


@pytest.mark.parametrize("family", FAMILIES)
def test_state_dict_round_trip_reproduces_outputs(family: str) -> None:
    model, fresh = build(family, seed=0).eval(), build(family, seed=1).eval()
    with torch.no_grad():
        expected = run(model)
        assert not torch.allclose(run(fresh), expected)  # a different seed really is a different model
        missing = fresh.load_state_dict(model.state_dict(), strict=True)
        assert not missing.missing_keys and not missing.unexpected_keys
        assert torch.equal(run(fresh), expected)


def test_tied_weights_stay_tied_after_loading() -> None:
    model, fresh = build("seq2seq_shared", seed=0), build("seq2seq_shared", seed=1)
    fresh.load_state_dict(model.state_dict())
    ptr = fresh.src_embed.tokens.weight.data_ptr()
    assert fresh.tgt_embed.tokens.weight.data_ptr() == ptr == fresh.lm_head.weight.data_ptr()


# --- (b) unshifted decoder input ----------------------------------------------------------------------------


def test_shift_right() -> None:
    labels = torch.tensor([[5, 6, 7, 2], [8, 2, -100, -100]])
    shifted = shift_right(labels, BOS, PAD)
    assert shifted.tolist() == [[BOS, 5, 6, 7], [BOS, 8, 2, PAD]]
    assert labels.tolist() == [[5, 6, 7, 2], [8, 2, -100, -100]]  # not modified in place


def test_forward_feeds_the_shifted_labels() -> None:
    model = build("seq2seq").eval()
    labels = torch.tensor([[5, 6, 7, 8, 2], [9, 10, 2, PAD, PAD]])
    seen = []
    original = model.decode

    def spy(decoder_input_ids, *args, **kwargs):
        seen.append(decoder_input_ids.clone())
        return original(decoder_input_ids, *args, **kwargs)

    model.decode = spy
    model(tokens(2, 4), labels)
    (dec_in,) = seen
    assert dec_in.tolist() == [[BOS, 5, 6, 7, 8], [BOS, 9, 10, 2, PAD]]
    assert (dec_in[:, 0] == BOS).all() and torch.equal(dec_in[:, 1:3], labels[:, :2])
    assert not (dec_in == labels)[labels != PAD].any()  # position t never reads the label it must predict


def copying_seq2seq() -> EncoderDecoder:
    """A model whose logits at position t point at its own decoder input token at t: the perfect cheater."""
    d = 32
    model = EncoderDecoder(
        Seq2SeqConfig(
            d_model=d,
            n_heads=4,
            n_layers=1,
            d_ff=8,
            src_vocab_size=V,
            tgt_vocab_size=V,
            share_embeddings=True,
            positions="none",
            norm_first=True,
        )
    ).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("out_proj.weight", "out_proj.bias", "fc2.weight", "fc2.bias")):
                p.zero_()  # every sublayer adds nothing: the hidden state is the (normalised) input embedding
        e = torch.linalg.qr(torch.randn(d, d))[0][:V]  # orthonormal rows
        e = e - e.mean(-1, keepdim=True)  # zero-mean rows, so LayerNorm only rescales them
        model.src_embed.tokens.weight.copy_(3 * e / e.norm(dim=-1, keepdim=True))
    return model


def test_decoder_cannot_cheat_by_copying_its_input() -> None:
    model = copying_seq2seq()
    src = tokens(2, 5)
    labels = torch.tensor([[5, 6, 7, 8, 9, 2], [10, 11, 12, 13, 14, 2]])
    memory, _ = model.encode(src)
    copied = model.decode(labels, memory).logits  # what an unshifted decoder input would give
    cheat_loss = F.cross_entropy(copied.flatten(0, 1), labels.flatten())
    assert cheat_loss < 1e-3  # the cheater really does copy
    assert model(src, labels).loss > 3.0  # ...but the shifted input gives it nothing to copy


# --- (c) no double softmax ----------------------------------------------------------------------------------


def not_a_simplex(logits: torch.Tensor) -> bool:
    return bool((logits < 0).any()) or not torch.allclose(logits.sum(-1), torch.ones(logits.shape[:-1]))


def test_classifier_heads_return_raw_logits() -> None:
    x, mask = tokens(3, 6), torch.tensor([[1] * 6, [1] * 3 + [0] * 3, [1] * 6])
    clf = build("classifier").eval()
    labels = torch.tensor([0, 2, 1])
    out = clf(x, mask, labels=labels)
    assert not_a_simplex(out.logits)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels), atol=1e-6, rtol=0)

    tok = build("token_classifier").eval()
    tags = torch.randint(0, 4, (3, 6))
    out = tok(x, labels=tags)
    assert not_a_simplex(out.logits)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits.flatten(0, 1), tags.flatten()), atol=1e-6, rtol=0)

    vit = build("vit").eval()
    out = vit(torch.randn(3, 1, 8, 8), labels=labels)
    assert not_a_simplex(out.logits)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels), atol=1e-6, rtol=0)


def test_language_model_losses_use_raw_logits() -> None:
    lm = build("decoder").eval()
    x, y = tokens(2, 6), tokens(2, 6, seed=1)
    out = lm(x, labels=y)
    assert not_a_simplex(out.logits)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits.flatten(0, 1), y.flatten()), atol=1e-6, rtol=0)
    s2s = build("seq2seq").eval()
    out = s2s(x, y)
    assert not_a_simplex(out.logits)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits.flatten(0, 1), y.flatten()), atol=1e-6, rtol=0)


# --- (d) padding excluded from the loss ---------------------------------------------------------------------


def test_seq2seq_loss_ignores_appended_padding() -> None:
    model = build("seq2seq").eval()
    src, labels = tokens(2, 5), torch.tensor([[5, 6, 7, 2], [8, 9, 2, PAD]])
    loss = model(src, labels).loss
    longer = torch.cat([labels, torch.full((2, 3), PAD)], 1)
    torch.testing.assert_close(model(src, longer).loss, loss, atol=1e-6, rtol=0)
    logits = model(src, labels).logits
    real = labels != PAD
    torch.testing.assert_close(loss, F.cross_entropy(logits[real], labels[real]), atol=1e-6, rtol=0)


def test_token_classifier_ignores_masked_positions() -> None:
    model = build("token_classifier").eval()
    x, mask = tokens(2, 6), torch.tensor([[1] * 6, [1] * 2 + [0] * 4])
    tags = torch.randint(0, 4, (2, 6))
    out = model(x, mask, labels=tags)
    other = tags.clone()
    other[1, 2:] = (other[1, 2:] + 1) % 4
    torch.testing.assert_close(model(x, mask, labels=other).loss, out.loss, atol=1e-6, rtol=0)
    real = mask.bool()
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits[real], tags[real]), atol=1e-6, rtol=0)
    with_ignore = tags.masked_fill(torch.tensor([[0, 1, 0, 0, 0, 0], [0] * 6]).bool(), -100)
    real[0, 1] = False
    expected = F.cross_entropy(out.logits[real], tags[real])
    torch.testing.assert_close(model(x, mask, labels=with_ignore).loss, expected, atol=1e-6, rtol=0)


def test_decoder_lm_ignores_minus_100_labels() -> None:
    model = build("decoder").eval()
    x, y = tokens(2, 6), tokens(2, 6, seed=1)
    y[0, :2] = -100
    y[1, 5] = -100
    out = model(x, labels=y)
    keep = y != -100
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits[keep], y[keep]), atol=1e-6, rtol=0)


# --- (e) eval mode disables dropout -------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_dropout_only_in_train_mode(family: str) -> None:
    model = build(family, dropout=0.5, attn_dropout=0.5)
    model.train()
    torch.manual_seed(10)
    a = run(model)
    torch.manual_seed(11)
    assert not torch.allclose(run(model), a)
    model.eval()
    torch.manual_seed(10)
    a = run(model)
    torch.manual_seed(11)
    assert torch.equal(run(model), a)


# --- (f) causal leakage -------------------------------------------------------------------------------------


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_no_gradient_flows_from_the_future(positions: str) -> None:
    model = build("decoder", positions=positions).eval()
    emb = model.embed(tokens(1, 6)).detach().requires_grad_(True)
    hidden, _ = model.stack(emb, is_causal=True)
    probe = torch.randn(hidden.size(-1))  # not .sum(): a LayerNorm output sums to a constant
    for t in range(6):
        (grad,) = torch.autograd.grad(hidden[0, t] @ probe, emb, retain_graph=True)
        assert (grad[0, t + 1 :] == 0).all(), t  # nothing after t influences position t
        assert (grad[0, : t + 1].abs().sum(-1) > 0).all(), t  # while everything up to t does


def test_changing_the_last_token_changes_only_the_last_logits() -> None:
    model = build("decoder").eval()
    x = tokens(1, 8)
    y = x.clone()
    y[0, -1] = (x[0, -1] + 1) % V
    a, b = model(x).logits, model(y).logits
    torch.testing.assert_close(a[:, :-1], b[:, :-1], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, -1], b[:, -1])


# --- (g) KV-cache drift -------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["decoder", "decoder_rotary_untied"])
def test_fifty_cached_steps_equal_recompute(family: str) -> None:
    model = build(family).eval()
    x = tokens(2, 51)
    cache = model.new_cache()
    with torch.no_grad():
        full = model(x).logits
        steps = [model(x[:, t : t + 1], cache=cache).logits for t in range(51)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)


def test_fifty_cached_seq2seq_steps_equal_recompute() -> None:
    model = build("seq2seq").eval()
    src, y = tokens(2, 9), tokens(2, 51, seed=1)
    src_mask = torch.tensor([[1] * 9, [1] * 5 + [0] * 4])
    with torch.no_grad():
        memory, _ = model.encode(src, src_mask)
        full = model.decode(y, memory, src_mask).logits
        self_cache, cross_cache = model.new_caches()
        steps = [model.decode(y[:, t : t + 1], memory, src_mask, self_cache, cross_cache).logits for t in range(51)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)
