"""Our GPT, BERT and ViT equal Hugging Face's to 1e-5 once weights cross over, in both directions."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch
from torch import nn

from tinyformers.core import interop
from tinyformers.core.models import DecoderConfig, DecoderLM, Encoder, EncoderConfig, VisionTransformer, ViTConfig

transformers = pytest.importorskip("transformers")

ATOL = 1e-5
VOCAB = 97


def perturb(model: nn.Module) -> nn.Module:
    """Move every parameter off its init (unit norms, zero biases) so no swap can hide. Eval mode."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def padded_batch(lengths: list[int], vocab: int = VOCAB) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids ``(B, max(lengths))`` and an attention mask with the padding at the end."""
    t = max(lengths)
    mask = (torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]).long()
    return torch.randint(0, vocab, (len(lengths), t)), mask


def assert_close_real(ours: torch.Tensor, theirs: torch.Tensor, mask: torch.Tensor) -> None:
    """Equal at the real (non-padding) positions: ``ours``, ``theirs`` (B, T, ...), ``mask`` (B, T)."""
    real = mask.bool()
    torch.testing.assert_close(ours[real], theirs[real], atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------------------------- GPT-2


def hf_gpt2(tie: bool = True, **kw: object) -> nn.Module:
    cfg = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=24, n_embd=48, n_layer=2, n_head=4, tie_word_embeddings=tie, **kw
    )
    return perturb(transformers.GPT2LMHeadModel(cfg))


def our_gpt2(tie: bool = True) -> DecoderLM:
    cfg = DecoderConfig(vocab_size=VOCAB, max_len=24, d_model=48, n_layers=2, n_heads=4, d_ff=96, tie_weights=tie)
    return perturb(DecoderLM(cfg))


def gpt2_from(hf: nn.Module) -> DecoderLM:
    ours = DecoderLM(interop.config_from_hf_gpt2(hf.config.to_dict()))
    ours.load_state_dict(interop.gpt2_state_dict_from_hf(hf.state_dict()))
    return ours.eval()


def hf_gpt2_from(ours: DecoderLM) -> nn.Module:
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**interop.config_to_hf_gpt2(ours.config)))
    hf.load_state_dict(interop.gpt2_state_dict_to_hf(ours.state_dict()))
    return hf.eval()


@pytest.mark.parametrize("tie", [True, False])
def test_gpt2_from_hf_logits(tie: bool) -> None:
    hf = hf_gpt2(tie)
    ours = gpt2_from(hf)
    ids, mask = padded_batch([12, 7, 3])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=ATOL, rtol=0)
        assert_close_real(ours(ids, attention_mask=mask).logits, hf(ids, attention_mask=mask).logits, mask)


@pytest.mark.parametrize("tie", [True, False])
def test_gpt2_to_hf_logits(tie: bool) -> None:
    ours = our_gpt2(tie)
    hf = hf_gpt2_from(ours)
    ids, mask = padded_batch([10, 4])
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, ours(ids).logits, atol=ATOL, rtol=0)
        assert_close_real(hf(ids, attention_mask=mask).logits, ours(ids, attention_mask=mask).logits, mask)


def test_gpt2_state_dict_round_trip_is_exact() -> None:
    ours = our_gpt2(tie=False)
    back = interop.gpt2_state_dict_from_hf(interop.gpt2_state_dict_to_hf(ours.state_dict()))
    assert back.keys() == ours.state_dict().keys()
    for k, v in ours.state_dict().items():
        assert torch.equal(back[k], v), k


def test_gpt2_attentions_equal_hf() -> None:
    hf = hf_gpt2(attn_implementation="eager")  # the fused kernels return no weights
    ours = gpt2_from(hf)
    ids, mask = padded_batch([9, 5])
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask, output_attentions=True).attentions
        mine = ours(ids, attention_mask=mask, output_attentions=True).attentions
    assert len(mine) == len(theirs) == 2
    for a, b in zip(mine, theirs, strict=True):
        assert a.shape == b.shape == (2, 4, 9, 9)
        real = mask.bool()
        torch.testing.assert_close(a.transpose(1, 2)[real], b.transpose(1, 2)[real], atol=ATOL, rtol=0)


@pytest.mark.parametrize("tie", [True, False])
def test_export_gpt2_loads_in_transformers_and_imports_back(tie: bool, tmp_path) -> None:
    ours = our_gpt2(tie)
    interop.export_gpt2(ours, tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    back = interop.import_gpt2(tmp_path)
    assert not back.training and back.config == ours.config
    ids = torch.randint(0, VOCAB, (2, 11))
    with torch.no_grad():
        expected = ours(ids).logits
        torch.testing.assert_close(hf(ids).logits, expected, atol=ATOL, rtol=0)
        torch.testing.assert_close(back(ids).logits, expected, atol=0, rtol=0)


def test_import_gpt2_reads_a_save_pretrained_checkpoint(tmp_path) -> None:
    hf = hf_gpt2()
    hf.save_pretrained(tmp_path)
    ours = interop.import_gpt2(tmp_path)
    ids = torch.randint(0, VOCAB, (2, 8))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=ATOL, rtol=0)


def test_gpt2_rejects_unknown_keys_and_configs() -> None:
    sd = hf_gpt2().state_dict()
    sd["transformer.h.0.attn.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="no counterpart"):
        interop.gpt2_state_dict_from_hf(sd)
    with pytest.raises(ValueError, match="norm_first"):
        interop.config_to_hf_gpt2(DecoderConfig(norm_first=False))
    with pytest.raises(ValueError, match="activation"):
        interop.config_to_hf_gpt2(DecoderConfig(activation="swiglu"))


# ------------------------------------------------------------------------------------------------ BERT


def hf_bert(**kw: object) -> nn.Module:
    cfg = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=40,
        **kw,
    )
    return perturb(transformers.BertModel(cfg, add_pooling_layer=False))


def bert_from(hf: nn.Module) -> Encoder:
    ours = Encoder(interop.config_from_hf_bert(hf.config.to_dict()))
    ours.load_state_dict(interop.bert_state_dict_from_hf(hf.state_dict()))
    return ours.eval()


def test_bert_from_hf_hidden_states() -> None:
    hf = hf_bert()
    ours = bert_from(hf)
    ids, mask = padded_batch([14, 9, 2])
    types = torch.randint(0, 2, ids.shape)
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        mine = ours(ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        assert_close_real(mine, theirs, mask)
        torch.testing.assert_close(ours(ids).last_hidden_state, hf(ids).last_hidden_state, atol=ATOL, rtol=0)


def test_bert_to_hf_hidden_states() -> None:
    cfg = EncoderConfig(
        vocab_size=VOCAB,
        d_model=32,
        n_heads=4,
        n_layers=2,
        d_ff=64,
        max_len=40,
        norm_first=False,
        activation="gelu",
        norm_eps=1e-12,
        type_vocab_size=2,
        embed_norm=True,
    )
    ours = perturb(Encoder(cfg))
    hf = transformers.BertModel(transformers.BertConfig(**interop.config_to_hf_bert(cfg)), add_pooling_layer=False)
    hf.load_state_dict(interop.bert_state_dict_to_hf(ours.state_dict()))
    hf.eval()
    ids, mask = padded_batch([11, 6])
    types = torch.randint(0, 2, ids.shape)
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        mine = ours(ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    assert_close_real(theirs, mine, mask)
    back = interop.bert_state_dict_from_hf(interop.bert_state_dict_to_hf(ours.state_dict()))
    assert all(torch.equal(back[k], v) for k, v in ours.state_dict().items())


def test_bert_attentions_equal_hf() -> None:
    hf = hf_bert(attn_implementation="eager")
    ours = bert_from(hf)
    ids, mask = padded_batch([10, 6])
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask, output_attentions=True).attentions
        mine = ours(ids, attention_mask=mask, output_attentions=True).attentions
    assert len(mine) == len(theirs) == 2
    real = mask.bool()
    for a, b in zip(mine, theirs, strict=True):
        assert a.shape == b.shape == (2, 4, 10, 10)
        torch.testing.assert_close(a.transpose(1, 2)[real], b.transpose(1, 2)[real], atol=ATOL, rtol=0)


def test_bert_accepts_prefixed_checkpoints_and_drops_heads() -> None:
    hf = hf_bert()
    sd = {f"bert.{k}": v for k, v in hf.state_dict().items()}
    sd["bert.pooler.dense.weight"] = torch.zeros(32, 32)
    sd["cls.predictions.bias"] = torch.zeros(VOCAB)
    assert interop.bert_state_dict_from_hf(sd).keys() == bert_from(hf).state_dict().keys()


# ------------------------------------------------------------------------------------------------- ViT


def hf_vit_config(**kw: object) -> object:
    return transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=16,
        patch_size=4,
        num_channels=3,
        **kw,
    )


def test_vit_from_hf_hidden_states() -> None:
    hf = perturb(transformers.ViTModel(hf_vit_config(), add_pooling_layer=False))
    ours = VisionTransformer(interop.config_from_hf_vit(hf.config.to_dict()))
    ours.load_state_dict(interop.vit_state_dict_from_hf(hf.state_dict()))
    ours.eval()
    pixels = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(
            ours(pixels).last_hidden_state, hf(pixel_values=pixels).last_hidden_state, atol=ATOL, rtol=0
        )


def test_vit_classifier_both_directions(tmp_path) -> None:
    hf = perturb(transformers.ViTForImageClassification(hf_vit_config(num_labels=3)))
    hf.save_pretrained(tmp_path / "hf")  # checkpoint names, which transformers 5 renames on load
    config, sd = interop.load_hf_checkpoint(tmp_path / "hf")
    ours = VisionTransformer(interop.config_from_hf_vit(config, num_classes=3))
    ours.load_state_dict(interop.vit_state_dict_from_hf(sd))
    ours.eval()
    pixels = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(pixels).logits, hf(pixel_values=pixels).logits, atol=ATOL, rtol=0)

    mine = perturb(
        VisionTransformer(
            ViTConfig(
                image_size=16,
                patch_size=4,
                in_channels=3,
                d_model=32,
                n_heads=4,
                n_layers=2,
                d_ff=64,
                num_classes=5,
                norm_eps=1e-12,
            )
        )
    )
    interop.save_hf_checkpoint(
        tmp_path / "ours",
        interop.config_to_hf_vit(mine.config),
        interop.vit_state_dict_to_hf(mine.state_dict()),
    )
    theirs = transformers.ViTForImageClassification.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        torch.testing.assert_close(theirs(pixel_values=pixels).logits, mine(pixels).logits, atol=ATOL, rtol=0)


def test_vit_to_hf_without_head(tmp_path) -> None:
    cfg = ViTConfig(
        image_size=16,
        patch_size=4,
        in_channels=3,
        d_model=32,
        n_heads=4,
        n_layers=2,
        d_ff=64,
        num_classes=0,
        norm_eps=1e-12,
    )
    ours = perturb(VisionTransformer(cfg))
    hf_sd = interop.vit_state_dict_to_hf(ours.state_dict())
    assert not any(k.startswith(("vit.", "classifier.")) for k in hf_sd)
    interop.save_hf_checkpoint(tmp_path, interop.config_to_hf_vit(cfg), hf_sd)
    hf = transformers.ViTModel.from_pretrained(tmp_path, add_pooling_layer=False).eval()
    pixels = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(
            hf(pixel_values=pixels).last_hidden_state, ours(pixels).last_hidden_state, atol=ATOL, rtol=0
        )
