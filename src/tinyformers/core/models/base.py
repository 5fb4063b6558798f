"""What every model family shares: the output record, token embeddings (§3.4) and GPT-2 style init."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from tinyformers.core.attention import KVCache
from tinyformers.core.blocks import CoreConfig, make_norm
from tinyformers.core.dropout import Dropout
from tinyformers.core.positions import RotaryEmbedding, make_positions


@dataclass
class ModelOutput:
    """What a forward pass returns; fields a model does not produce stay None (HF's names)."""

    logits: Tensor | None = None
    loss: Tensor | None = None
    last_hidden_state: Tensor | None = None
    attentions: list[Tensor] = field(default_factory=list)
    cross_attentions: list[Tensor] = field(default_factory=list)
    cache: KVCache | None = None


class Embeddings(nn.Module):
    """Token embedding (+ optional segment embedding) + position encoding, then optional norm and dropout.

    §3.4 multiplies token embeddings by ``sqrt(d_model)`` (``scale=True``) so that they are not drowned by
    the unit-amplitude sinusoidal encodings; GPT-2 and BERT do not scale. BERT normalises the sum
    (``norm=True``).
    """

    def __init__(
        self,
        cfg: CoreConfig,
        vocab_size: int,
        scale: bool = False,
        type_vocab_size: int = 0,
        norm: bool = False,
    ) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, cfg.d_model)
        self.positions = make_positions(cfg.positions, cfg.max_len, cfg.d_model)
        self.token_types = nn.Embedding(type_vocab_size, cfg.d_model) if type_vocab_size else None
        self.norm = make_norm(cfg) if norm else None
        self.dropout = Dropout(cfg.dropout)
        self.scale = math.sqrt(cfg.d_model) if scale else 1.0
        self.max_len = cfg.max_len
        self.subwords: CharNgrams | None = None  # optional character n-grams per token (see CharNgrams)

    def forward(self, input_ids: Tensor, offset: int = 0, token_type_ids: Tensor | None = None) -> Tensor:
        """``input_ids`` (B, T) whose first position is ``offset`` -> (B, T, d_model)."""
        t = input_ids.size(1)
        if offset + t > self.max_len and self.positions is not None:
            raise ValueError(f"sequence of {offset + t} positions is longer than max_len={self.max_len}")
        x = self.tokens(input_ids) * self.scale
        if self.subwords is not None:
            x = x + self.subwords(input_ids)
        if self.positions is not None:
            x = x + self.positions(torch.arange(offset, offset + t, device=input_ids.device))
        if self.token_types is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            x = x + self.token_types(token_type_ids)
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x)


def char_ngram_table(tokens: list[str], buckets: int, sizes: tuple[int, ...] = (3, 4, 5)) -> Tensor:
    """Per token id, the hash buckets (1..buckets-1; 0 = none) of its character n-grams, fastText-style
    (Bojanowski et al. 2017, §3.2): the token between boundary marks ``<`` and ``>`` (a WordPiece/BPE continuation
    ``##ab`` has no left mark: it does not start a word), every n-gram of the given sizes plus the whole marked
    token, hashed with CRC-32. Special tokens (``[PAD]``...) get none. Returns (len(tokens), K), right-padded
    with 0."""
    rows: list[list[int]] = []
    for token in tokens:
        if token.startswith("[") and token.endswith("]"):
            rows.append([])
            continue
        marked = (token[2:] if token.startswith("##") else "<" + token) + ">"
        grams = {marked} | {marked[i : i + n] for n in sizes for i in range(len(marked) - n + 1)}
        rows.append(sorted({zlib.crc32(g.encode()) % (buckets - 1) + 1 for g in grams}))
    width = max(1, max(len(r) for r in rows))
    return torch.tensor([r + [0] * (width - len(r)) for r in rows], dtype=torch.long)


class CharNgrams(nn.Module):
    """Character-aware token vectors: the mean embedding of a token's character n-gram buckets
    (:func:`char_ngram_table`), added to its own embedding by :class:`Embeddings`. Tokens that share
    spelling share parameters, so a rare or misspelt piece ("gooood", "##ville") is not a lone, barely trained
    vector. ``table`` is rebuilt from the tokenizer, so it is a buffer that is not saved."""

    table: Tensor

    def __init__(self, table: Tensor, buckets: int, d_model: int) -> None:
        super().__init__()
        self.register_buffer("table", table, persistent=False)
        self.bags = nn.EmbeddingBag(buckets, d_model, mode="mean", padding_idx=0)
        nn.init.normal_(self.bags.weight, std=0.02)
        with torch.no_grad():
            self.bags.weight[0].zero_()

    def forward(self, input_ids: Tensor) -> Tensor:
        """(B, T) -> (B, T, d_model); a token without n-grams gets zeros."""
        grams = self.table[input_ids.flatten()]  # (B*T, K)
        return self.bags(grams).view(*input_ids.shape, -1)


def make_rotary(cfg: CoreConfig) -> RotaryEmbedding | None:
    if cfg.positions != "rotary":
        return None
    return RotaryEmbedding(cfg.d_model // cfg.n_heads, cfg.max_len, cfg.rope_base, cfg.rope_scaling)


def init_gpt2(model: nn.Module, n_layers: int, std: float = 0.02) -> None:
    """GPT-2 init: N(0, 0.02) weights, zero biases; the projections that write into the residual stream
    scaled by ``1/sqrt(2 n_layers)`` so the stream's variance does not grow with depth."""
    for name, p in model.named_parameters():
        if p.dim() < 2:
            if name.endswith("bias"):
                nn.init.zeros_(p)
            continue
        if "norm" in name:
            continue
        residual_out = name.endswith(("out_proj.weight", "fc2.weight"))
        nn.init.normal_(p, mean=0.0, std=std / math.sqrt(2 * n_layers) if residual_out else std)


def key_padding_from_attention_mask(attention_mask: Tensor | None) -> Tensor | None:
    """HF's ``attention_mask`` (1 = real token, 0 = padding) -> ``key_padding_mask`` (True = padding)."""
    return None if attention_mask is None else attention_mask == 0
