"""ViT: ``ViTModel`` / ``ViTForImageClassification`` config and weights <-> our :class:`ViTConfig` models."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from tinyformers.core.interop.common import (
    Entry,
    StateDict,
    _bert_style_from_hf,
    _bert_style_to_hf,
    _from_hf,
    _n_layers,
    _params,
    _qkv,
    _require,
    _to_hf,
)
from tinyformers.core.models.vit import ViTConfig

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


def config_from_hf_vit(hf_config: Mapping[str, Any], num_classes: int = 0) -> ViTConfig:
    """A ``ViTConfig`` dict -> our :class:`ViTConfig`; ``num_classes``: labels of a classifier, else 0."""
    hf = {**_VIT_DEFAULTS, **hf_config}
    if not hf["qkv_bias"]:
        raise ValueError("ViT without query/key/value biases is not supported")
    if not isinstance(hf["image_size"], int) or not isinstance(hf["patch_size"], int):
        raise ValueError("only square images and patches (integer image_size, patch_size) are supported")
    return ViTConfig(
        **_bert_style_from_hf(hf),
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
        **_bert_style_to_hf(cfg),
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
