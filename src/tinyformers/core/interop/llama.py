"""The Llama family (Llama, Qwen2): ``LlamaForCausalLM`` config and weights <-> our :class:`DecoderLM`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from tinyformers.core.interop.common import (
    Entry,
    StateDict,
    _from_hf,
    _n_layers,
    _require,
    _to_hf,
    load_hf_checkpoint,
    save_hf_checkpoint,
)
from tinyformers.core.models.decoder import DecoderConfig, DecoderLM
from tinyformers.errors import UserError

LLAMA_FAMILY = ("llama", "qwen2")  # config.json model_type values this section reads and writes
_LLAMA_DEFAULTS: dict[str, Any] = {  # LlamaConfig's
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": None,
    "head_dim": None,
    "hidden_act": "silu",
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "attention_bias": False,
    "attention_dropout": 0.0,
    "mlp_bias": False,
    "use_sliding_window": False,
}
_QWEN2_DEFAULTS: dict[str, Any] = {
    **_LLAMA_DEFAULTS,
    "vocab_size": 151936,
    "intermediate_size": 22016,
    "max_position_embeddings": 32768,
}
_ROPE_FIELDS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


def _rope_from_hf(hf: Mapping[str, Any]) -> tuple[float, dict[str, Any] | None]:
    """``(rope_theta, rope_scaling)`` from ``rope_parameters`` (transformers >= 5) or the older
    ``rope_theta`` and ``rope_scaling`` (whose type key was once ``type``)."""
    params = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or params
    base = float(params.get("rope_theta", hf["rope_theta"]))
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return base, None
    return base, {"rope_type": kind, **{k: scaling[k] for k in _ROPE_FIELDS if k in scaling}}


def config_from_hf_llama(hf_config: Mapping[str, Any]) -> DecoderConfig:
    """A ``LlamaConfig`` or ``Qwen2Config`` dict (a ``config.json``) -> our :class:`DecoderConfig`: pre-norm
    RMSNorm, SwiGLU, rotary, no biases (Qwen2: on q, k and v only), grouped-query attention."""
    model_type = hf_config.get("model_type")
    if model_type not in LLAMA_FAMILY:
        raise ValueError(f"model_type {model_type!r} is not in the Llama family ({', '.join(LLAMA_FAMILY)})")
    hf = {**(_QWEN2_DEFAULTS if model_type == "qwen2" else _LLAMA_DEFAULTS), **hf_config}
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    if hf["hidden_act"] != "silu":
        raise ValueError(f"hidden_act {hf['hidden_act']!r}: only SwiGLU (silu) is supported")
    if hf["head_dim"] not in (None, d // heads):
        raise ValueError(f"head_dim={hf['head_dim']} differs from hidden_size / num_attention_heads = {d // heads}")
    if hf["mlp_bias"] or (model_type == "llama" and hf["attention_bias"]):
        raise ValueError("Llama variants with attention_bias or mlp_bias are not supported")
    if hf["use_sliding_window"]:
        raise ValueError("sliding-window attention (use_sliding_window) is not supported")
    base, scaling = _rope_from_hf(hf)
    return DecoderConfig(
        d_model=d,
        n_heads=heads,
        n_kv_heads=hf["num_key_value_heads"] or heads,
        n_layers=hf["num_hidden_layers"],
        d_ff=hf["intermediate_size"],
        dropout=0.0,
        attn_dropout=hf["attention_dropout"],
        activation="swiglu",
        norm="rmsnorm",
        norm_eps=hf["rms_norm_eps"],
        norm_first=True,
        bias=False,
        qkv_bias=True if model_type == "qwen2" else None,
        positions="rotary",
        rope_base=base,
        rope_scaling=scaling,
        max_len=hf["max_position_embeddings"],
        vocab_size=hf["vocab_size"],
        tie_weights=hf["tie_word_embeddings"],
    )


def config_to_hf_llama(cfg: DecoderConfig) -> dict[str, Any]:
    """Our :class:`DecoderConfig` -> a ``LlamaConfig`` dict, or a ``Qwen2Config`` one when only q, k and v have
    biases. Written with ``rope_theta``/``rope_scaling``, which every ``transformers`` version reads. Dropout has
    no counterpart there (it only matters in training) and is left out."""
    _require(cfg, "Llama", norm="rmsnorm", activation="swiglu", norm_first=True, bias=False, positions="rotary")
    qwen2 = bool(cfg.qkv_bias)
    heads = cfg.n_heads
    out: dict[str, Any] = {
        "architectures": ["Qwen2ForCausalLM" if qwen2 else "LlamaForCausalLM"],
        "model_type": "qwen2" if qwen2 else "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": heads,
        "num_key_value_heads": cfg.n_kv_heads or heads,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_len,
        "rms_norm_eps": cfg.norm_eps,
        "tie_word_embeddings": cfg.tie_weights,
        "rope_theta": cfg.rope_base,
        "rope_scaling": cfg.rope_scaling,
        "attention_dropout": cfg.attn_dropout,
        "bos_token_id": None,
        "eos_token_id": None,
    }
    if qwen2:
        out["use_sliding_window"] = False
    else:
        out.update(attention_bias=False, mlp_bias=False, head_dim=cfg.d_model // heads)
    return out


def _llama_entries(n_layers: int, d: int, d_kv: int, qkv_bias: bool) -> list[Entry]:
    entries: list[Entry] = [
        ("embed.tokens.weight", "model.embed_tokens.weight", ""),
        ("stack.norm.weight", "model.norm.weight", ""),
        ("lm_head.weight", "lm_head.weight", ""),
    ]
    rows = f"{d},{d_kv},{d_kv}"  # [W^Q; W^K; W^V] with grouped-query attention's smaller K and V
    for i in range(n_layers):
        ours, hf = f"stack.layers.{i}", f"model.layers.{i}"
        for p in ("weight", "bias") if qkv_bias else ("weight",):
            qkv = tuple(f"{hf}.self_attn.{n}_proj.{p}" for n in "qkv")
            entries.append((f"{ours}.self_attn.in_proj.{p}", qkv, rows))
        entries += [
            (f"{ours}.self_attn.out_proj.weight", f"{hf}.self_attn.o_proj.weight", ""),
            (f"{ours}.norm_attn.weight", f"{hf}.input_layernorm.weight", ""),
            (f"{ours}.ff.gate.weight", f"{hf}.mlp.gate_proj.weight", ""),  # SwiGLU: silu(gate(x)) * up(x)
            (f"{ours}.ff.fc1.weight", f"{hf}.mlp.up_proj.weight", ""),
            (f"{ours}.ff.fc2.weight", f"{hf}.mlp.down_proj.weight", ""),
            (f"{ours}.norm_ff.weight", f"{hf}.post_attention_layernorm.weight", ""),
        ]
    return entries


def llama_state_dict_from_hf(sd: Mapping[str, Tensor]) -> StateDict:
    """A ``LlamaForCausalLM`` or ``Qwen2ForCausalLM`` state dict -> a :class:`DecoderLM` one. Without
    ``lm_head.weight`` (tied checkpoints) the output projection is the token embedding."""
    sd = dict(sd)
    sd.setdefault("lm_head.weight", sd["model.embed_tokens.weight"])
    d = sd["model.embed_tokens.weight"].size(1)
    d_kv = sd["model.layers.0.self_attn.k_proj.weight"].size(0)
    qkv_bias = "model.layers.0.self_attn.q_proj.bias" in sd
    entries = _llama_entries(_n_layers(sd, r"^model\.layers\.(\d+)\."), d, d_kv, qkv_bias)
    return _from_hf(sd, entries, r"rotary_emb\.inv_freq$", "Llama")


def llama_state_dict_to_hf(sd: Mapping[str, Tensor]) -> StateDict:
    """A :class:`DecoderLM` state dict (Llama-configured) -> a ``LlamaForCausalLM``/``Qwen2ForCausalLM`` one."""
    d = sd["embed.tokens.weight"].size(1)
    d_kv = (sd["stack.layers.0.self_attn.in_proj.weight"].size(0) - d) // 2
    qkv_bias = "stack.layers.0.self_attn.in_proj.bias" in sd
    return _to_hf(sd, _llama_entries(_n_layers(sd, r"^stack\.layers\.(\d+)\."), d, d_kv, qkv_bias))


def export_llama(model: DecoderLM, directory: str | Path) -> Path:
    """Save ``model`` so that ``LlamaForCausalLM`` (``Qwen2ForCausalLM`` with q/k/v biases) ``.from_pretrained``
    loads it."""
    config = config_to_hf_llama(model.config)  # first: refuses what Llama cannot express
    sd = llama_state_dict_to_hf(model.state_dict())
    if model.config.tie_weights:
        del sd["lm_head.weight"]  # HF re-ties it to embed_tokens; safetensors cannot store shared tensors
    return save_hf_checkpoint(directory, config, sd)


def import_llama(directory: str | Path) -> DecoderLM:
    """Load a Llama or Qwen2 checkpoint directory as a :class:`DecoderLM` in eval mode (float32)."""
    config, sd = load_hf_checkpoint(directory)
    try:
        model = DecoderLM(config_from_hf_llama(config))
        model.load_state_dict(llama_state_dict_from_hf(sd))
    except (ValueError, KeyError) as e:
        raise UserError(f"{directory}: cannot load as a Llama-family model ({e})") from None
    return model.eval()
