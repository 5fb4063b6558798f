"""Shared by every family: the mapping entries, applying them both ways, and checkpoint files on disk."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from tinyformers.core.models.encoder import EncoderConfig
from tinyformers.core.models.vit import ViTConfig
from tinyformers.errors import UserError

Entry = tuple[str, str | tuple[str, ...], str]
StateDict = dict[str, Tensor]

_ACT_FROM_HF = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}
_ACT_TO_HF = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}


def _act(name: str, table: dict[str, str]) -> str:
    if name not in table:
        raise ValueError(f"activation {name!r} has no counterpart: supported {', '.join(table)}")
    return table[name]


# BertConfig and ViTConfig name the stack's sizes alike: (our field, their field)
_BERT_STYLE_FIELDS = (
    ("d_model", "hidden_size"),
    ("n_layers", "num_hidden_layers"),
    ("n_heads", "num_attention_heads"),
    ("d_ff", "intermediate_size"),
    ("dropout", "hidden_dropout_prob"),
    ("attn_dropout", "attention_probs_dropout_prob"),
    ("norm_eps", "layer_norm_eps"),
)


def _bert_style_from_hf(hf: Mapping[str, Any]) -> dict[str, Any]:
    """Our sizes, dropouts, norm epsilon and activation from a ``BertConfig`` or ``ViTConfig`` dict."""
    return {ours: hf[theirs] for ours, theirs in _BERT_STYLE_FIELDS} | {
        "activation": _act(hf["hidden_act"], _ACT_FROM_HF)
    }


def _bert_style_to_hf(cfg: EncoderConfig | ViTConfig) -> dict[str, Any]:
    """The ``BertConfig`` / ``ViTConfig`` fields for ``cfg``'s sizes, dropouts, norm epsilon and activation."""
    return {theirs: getattr(cfg, ours) for ours, theirs in _BERT_STYLE_FIELDS} | {
        "hidden_act": _act(cfg.activation, _ACT_TO_HF)
    }


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
