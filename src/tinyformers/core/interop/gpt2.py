"""GPT-2: ``GPT2LMHeadModel`` config and weights <-> our :class:`DecoderLM`, and its checkpoint folders."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from tinyformers.core.interop.common import (
    _ACT_FROM_HF,
    _ACT_TO_HF,
    Entry,
    StateDict,
    _act,
    _from_hf,
    _n_layers,
    _params,
    _require,
    _to_hf,
    load_hf_checkpoint,
    save_hf_checkpoint,
)
from tinyformers.core.models.decoder import DecoderConfig, DecoderLM

# transformers' class defaults: a config.json saved by ``save_pretrained`` omits every default value.
_GPT2_DEFAULTS: dict[str, Any] = {
    "vocab_size": 50257,
    "n_positions": 1024,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "n_inner": None,
    "activation_function": "gelu_new",
    "resid_pdrop": 0.1,
    "attn_pdrop": 0.1,
    "layer_norm_epsilon": 1e-5,
    "tie_word_embeddings": True,
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "add_cross_attention": False,
}


def config_from_hf_gpt2(hf_config: Mapping[str, Any]) -> DecoderConfig:
    """A ``GPT2Config`` (as a dict, e.g. a ``config.json``) -> our :class:`DecoderConfig`."""
    hf = {**_GPT2_DEFAULTS, **hf_config}
    if not hf["scale_attn_weights"] or hf["scale_attn_by_inverse_layer_idx"] or hf["add_cross_attention"]:
        raise ValueError("GPT-2 variants with unscaled, layer-scaled or cross attention are not supported")
    return DecoderConfig(
        d_model=hf["n_embd"],
        n_heads=hf["n_head"],
        n_layers=hf["n_layer"],
        d_ff=hf["n_inner"] or 4 * hf["n_embd"],
        dropout=hf["resid_pdrop"],
        attn_dropout=hf["attn_pdrop"],
        activation=_act(hf["activation_function"], _ACT_FROM_HF),
        norm_eps=hf["layer_norm_epsilon"],
        norm_first=True,
        positions="learned",
        max_len=hf["n_positions"],
        vocab_size=hf["vocab_size"],
        tie_weights=hf["tie_word_embeddings"],
    )


def config_to_hf_gpt2(cfg: DecoderConfig) -> dict[str, Any]:
    """Our :class:`DecoderConfig` -> a ``GPT2Config`` dict (for ``config.json``)."""
    _require(cfg, "GPT-2", norm="layernorm", norm_first=True, bias=True, positions="learned")
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.max_len,
        "n_embd": cfg.d_model,
        "n_layer": cfg.n_layers,
        "n_head": cfg.n_heads,
        "n_inner": cfg.d_ff,
        "activation_function": _act(cfg.activation, _ACT_TO_HF),
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.attn_dropout,
        "layer_norm_epsilon": cfg.norm_eps,
        "tie_word_embeddings": cfg.tie_weights,
        "bos_token_id": None,
        "eos_token_id": None,
    }


def _gpt2_entries(n_layers: int) -> list[Entry]:
    entries: list[Entry] = [
        ("embed.tokens.weight", "transformer.wte.weight", ""),
        ("embed.positions.embedding.weight", "transformer.wpe.weight", ""),
        *_params("stack.norm", "transformer.ln_f"),
        ("lm_head.weight", "lm_head.weight", ""),
    ]
    for i in range(n_layers):
        ours, hf = f"stack.layers.{i}", f"transformer.h.{i}"
        entries += [
            *_params(f"{ours}.self_attn.in_proj", f"{hf}.attn.c_attn", "transpose"),
            *_params(f"{ours}.self_attn.out_proj", f"{hf}.attn.c_proj", "transpose"),
            *_params(f"{ours}.norm_attn", f"{hf}.ln_1"),
            *_params(f"{ours}.ff.fc1", f"{hf}.mlp.c_fc", "transpose"),
            *_params(f"{ours}.ff.fc2", f"{hf}.mlp.c_proj", "transpose"),
            *_params(f"{ours}.norm_ff", f"{hf}.ln_2"),
        ]
    return entries


def gpt2_state_dict_from_hf(sd: Mapping[str, Tensor]) -> StateDict:
    """A ``GPT2LMHeadModel`` state dict (or the prefix-less one of Hub ``gpt2``) -> a :class:`DecoderLM` one.

    Without ``lm_head.weight`` the output projection is the (tied) token embedding.
    """
    sd = {k if k.startswith(("transformer.", "lm_head.")) else f"transformer.{k}": v for k, v in sd.items()}
    sd.setdefault("lm_head.weight", sd["transformer.wte.weight"])
    entries = _gpt2_entries(_n_layers(sd, r"^transformer\.h\.(\d+)\."))
    return _from_hf(sd, entries, r"\.attn\.(masked_)?bias$", "GPT-2")


def gpt2_state_dict_to_hf(sd: Mapping[str, Tensor]) -> StateDict:
    """A :class:`DecoderLM` state dict -> a ``GPT2LMHeadModel`` state dict."""
    return _to_hf(sd, _gpt2_entries(_n_layers(sd, r"^stack\.layers\.(\d+)\.")))


def export_gpt2(model: DecoderLM, directory: str | Path) -> Path:
    """Save ``model`` so that ``transformers.GPT2LMHeadModel.from_pretrained(directory)`` loads it."""
    config = config_to_hf_gpt2(model.config)  # first: refuses what GPT-2 cannot express (e.g. rotary)
    sd = gpt2_state_dict_to_hf(model.state_dict())
    if model.config.tie_weights:
        del sd["lm_head.weight"]  # HF re-ties it to wte; safetensors cannot store shared tensors
    return save_hf_checkpoint(directory, config, sd)


def import_gpt2(directory: str | Path) -> DecoderLM:
    """Load a GPT-2 checkpoint directory (``config.json`` + ``model.safetensors``) as a :class:`DecoderLM`
    in eval mode, as ``from_pretrained`` returns it."""
    config, sd = load_hf_checkpoint(directory)
    model = DecoderLM(config_from_hf_gpt2(config))
    model.load_state_dict(gpt2_state_dict_from_hf(sd))
    return model.eval()
