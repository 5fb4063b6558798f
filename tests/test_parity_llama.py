"""Our decoder configured as a Llama equals Hugging Face's ``LlamaForCausalLM`` and ``Qwen2ForCausalLM``.

Compared: logits to ``ATOL`` = 1e-5 (absolute, float32) both ways, on tiny random models of several shapes
(multi-head, grouped-query and multi-query attention, tied and untied heads, rotary bases and linear / llama3
scaling); greedy and beam-search generation token for token equal to HF ``generate``; an export that
``from_pretrained`` loads back, and a ``save_pretrained`` folder that we load.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch
from torch import nn

from tinyformers.core import interop
from tinyformers.core.models import DecoderConfig, DecoderLM

transformers = pytest.importorskip("transformers")

ATOL = 1e-5
VOCAB = 61

LLAMA3 = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8,
}
LINEAR = {"type": "linear", "factor": 2.0}  # the older key name, "type"
# (HF class, config kwargs): the shapes compared
SHAPES = {
    "llama-mha-untied": ("llama", dict(num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False)),
    "llama-gqa-tied": ("llama", dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)),
    "llama-mqa-3layers": ("llama", dict(num_attention_heads=4, num_key_value_heads=1, num_hidden_layers=3)),
    "llama-theta-linear": (
        "llama",
        dict(num_attention_heads=2, num_key_value_heads=1, rope_theta=500.0, rope_scaling=LINEAR),
    ),
    "llama-llama3-scaling": (
        "llama",
        dict(num_attention_heads=4, num_key_value_heads=2, rope_theta=50000.0, rope_scaling=LLAMA3),
    ),
    "qwen2-gqa-untied": ("qwen2", dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)),
    "qwen2-mqa-tied": ("qwen2", dict(num_attention_heads=4, num_key_value_heads=1, tie_word_embeddings=True)),
}
HF_CLASSES = {"llama": ("LlamaConfig", "LlamaForCausalLM"), "qwen2": ("Qwen2Config", "Qwen2ForCausalLM")}


def perturb(model: nn.Module) -> nn.Module:
    """Move every parameter off its init (unit norms, zero biases) so no swap can hide. Eval mode."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def hf_model(shape: str) -> nn.Module:
    family, kw = SHAPES[shape]
    config_cls, model_cls = (getattr(transformers, n) for n in HF_CLASSES[family])
    base = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=56,
        num_hidden_layers=2,
        max_position_embeddings=40,
        rms_norm_eps=1e-6,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    torch.manual_seed(len(shape))
    return perturb(model_cls(config_cls(**{**base, **kw})))


def ours_from(hf: nn.Module) -> DecoderLM:
    ours = DecoderLM(interop.config_from_hf_llama(hf.config.to_dict()))
    ours.load_state_dict(interop.llama_state_dict_from_hf(hf.state_dict()))
    return ours.eval()


def hf_from(ours: DecoderLM) -> nn.Module:
    config = interop.config_to_hf_llama(ours.config)
    config_cls, model_cls = (getattr(transformers, n) for n in HF_CLASSES[config["model_type"]])
    hf = model_cls(config_cls(**config))
    hf.load_state_dict(interop.llama_state_dict_to_hf(ours.state_dict()), strict=not ours.config.tie_weights)
    return hf.eval()


def our_llama(n_kv_heads: int, qkv_bias: bool | None, tie: bool) -> DecoderLM:
    cfg = DecoderConfig(
        vocab_size=VOCAB,
        max_len=40,
        d_model=32,
        n_heads=4,
        n_kv_heads=n_kv_heads,
        n_layers=2,
        d_ff=56,
        activation="swiglu",
        norm="rmsnorm",
        norm_eps=1e-6,
        bias=False,
        qkv_bias=qkv_bias,
        positions="rotary",
        rope_base=1000.0,
        tie_weights=tie,
    )
    torch.manual_seed(n_kv_heads)
    return perturb(DecoderLM(cfg))


@pytest.mark.parametrize("shape", SHAPES)
def test_from_hf_logits(shape: str) -> None:
    hf = hf_model(shape)
    ours = ours_from(hf)
    assert ours.config.n_kv_heads == hf.config.num_key_value_heads
    ids = torch.randint(0, VOCAB, (2, 37))  # past llama3's original 8 positions, where its scaling acts
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    ("n_kv_heads", "qkv_bias", "tie", "hf_class"),
    [
        (4, None, False, "LlamaForCausalLM"),
        (2, None, True, "LlamaForCausalLM"),
        (1, True, False, "Qwen2ForCausalLM"),
    ],
)
def test_to_hf_logits(n_kv_heads: int, qkv_bias: bool | None, tie: bool, hf_class: str) -> None:
    ours = our_llama(n_kv_heads, qkv_bias, tie)
    hf = hf_from(ours)
    assert type(hf).__name__ == hf_class
    ids = torch.randint(0, VOCAB, (3, 21))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, ours(ids).logits, atol=ATOL, rtol=0)


@pytest.mark.parametrize("shape", ["llama-gqa-tied", "qwen2-gqa-untied"])
def test_state_dict_round_trip_is_exact(shape: str) -> None:
    sd = hf_model(shape).state_dict()
    back = interop.llama_state_dict_to_hf(interop.llama_state_dict_from_hf(sd))
    assert back.keys() == sd.keys()
    for k, v in sd.items():
        assert torch.equal(back[k], v), k


@pytest.mark.parametrize("shape", ["llama-gqa-tied", "qwen2-mqa-tied", "llama-llama3-scaling"])
def test_greedy_generation_equals_hf(shape: str) -> None:
    hf = hf_model(shape)
    ours = ours_from(hf)
    prompts = torch.randint(0, VOCAB, (2, 5))
    kw = dict(max_new_tokens=12, do_sample=False)
    ref = hf.generate(prompts, attention_mask=torch.ones_like(prompts), pad_token_id=0, **kw)
    assert torch.equal(ours.generate(prompts, pad_token_id=0, **kw), ref)


@pytest.mark.parametrize(
    "kwargs",
    [dict(num_beams=3), dict(num_beams=4, num_return_sequences=2, eos_token_id=7, length_penalty=0.5)],
    ids=str,
)
@pytest.mark.parametrize("shape", ["llama-mqa-3layers", "qwen2-gqa-untied"])
def test_beam_search_equals_hf(shape: str, kwargs: dict) -> None:
    hf = hf_model(shape)
    ours = ours_from(hf)
    prompts = torch.randint(0, VOCAB, (2, 4))
    common = dict(max_new_tokens=8, pad_token_id=VOCAB - 1, **kwargs)
    ref = hf.generate(
        prompts,
        attention_mask=torch.ones_like(prompts),
        do_sample=False,
        output_scores=True,
        return_dict_in_generate=True,
        **common,
    )
    out = ours.generate(prompts, return_dict_in_generate=True, **common)
    assert torch.equal(out.sequences, ref.sequences)
    torch.testing.assert_close(out.sequences_scores, ref.sequences_scores, atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    ("n_kv_heads", "qkv_bias", "tie", "hf_class"),
    [(2, None, True, "LlamaForCausalLM"), (1, True, False, "Qwen2ForCausalLM")],
)
def test_export_loads_in_transformers_and_imports_back(
    n_kv_heads: int, qkv_bias: bool | None, tie: bool, hf_class: str, tmp_path
) -> None:
    ours = our_llama(n_kv_heads, qkv_bias, tie)
    interop.export_llama(ours, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "model.safetensors"}
    hf = getattr(transformers, hf_class).from_pretrained(tmp_path).eval()
    back = interop.import_llama(tmp_path)
    assert not back.training and back.config == ours.config
    ids = torch.randint(0, VOCAB, (2, 11))
    with torch.no_grad():
        expected = ours(ids).logits
        torch.testing.assert_close(hf(ids).logits, expected, atol=ATOL, rtol=0)
        torch.testing.assert_close(back(ids).logits, expected, atol=0, rtol=0)


@pytest.mark.parametrize("shape", ["llama-theta-linear", "qwen2-mqa-tied"])
def test_import_reads_a_save_pretrained_folder(shape: str, tmp_path) -> None:
    hf = hf_model(shape)
    hf.save_pretrained(tmp_path)
    ours = interop.import_llama(tmp_path)
    ids = torch.randint(0, VOCAB, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=ATOL, rtol=0)


def test_llama_rejects_what_it_cannot_represent() -> None:
    good = interop.config_to_hf_llama(our_llama(2, None, False).config)
    for bad in (
        {"hidden_act": "gelu"},
        {"head_dim": 16},
        {"mlp_bias": True},
        {"attention_bias": True},
        {"model_type": "gpt2"},
        {"rope_scaling": {"rope_type": "yarn", "factor": 2.0}},
    ):
        with pytest.raises(ValueError):
            interop.config_from_hf_llama({**good, **bad})
    with pytest.raises(ValueError, match="Llama needs"):
        interop.config_to_hf_llama(DecoderConfig(vocab_size=VOCAB))  # GPT-2 style: layernorm, gelu, learned
    sd = interop.llama_state_dict_to_hf(our_llama(2, None, False).state_dict())
    sd["model.layers.0.self_attn.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="no counterpart"):
        interop.llama_state_dict_from_hf(sd)
