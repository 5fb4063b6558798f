"""Decoder-only language model (GPT): causal self-attention blocks over token + position embeddings.

``p(x_1..x_T) = prod_t p(x_t | x_<t)``; each position predicts the next token, and the causal mask
keeps position ``t`` from seeing ``x_>t``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch.nn.functional as F
from torch import Tensor, nn

from tinyformers.core.attention import KVCache
from tinyformers.core.blocks import CoreConfig, EncoderStack
from tinyformers.core.generation import generate
from tinyformers.core.models.base import (
    Embeddings,
    ModelOutput,
    init_gpt2,
    key_padding_from_attention_mask,
    make_rotary,
)


@dataclass
class DecoderConfig(CoreConfig):
    """A GPT. ``max_len`` is the context window (nanoGPT's ``block_size``).

    Attributes:
        vocab_size: number of tokens.
        tie_weights: share the input embedding with the output projection (Press & Wolf 2017, GPT-2).
    """

    vocab_size: int = 256
    tie_weights: bool = True
    activation: str = "gelu_tanh"


class DecoderLM(nn.Module):
    """GPT-style language model. ``forward(input_ids)`` -> next-token logits ``(B, T, vocab)``."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embed = Embeddings(cfg, cfg.vocab_size)
        self.stack = EncoderStack(cfg, rotary=make_rotary(cfg))  # causal self-attention blocks
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        init_gpt2(self, cfg.n_layers)
        if cfg.tie_weights:
            self.lm_head.weight = self.embed.tokens.weight

    @property
    def block_size(self) -> int:
        return self.config.max_len

    def forward(
        self,
        input_ids: Tensor,
        labels: Tensor | None = None,
        attention_mask: Tensor | None = None,
        cache: KVCache | None = None,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """Args:
        input_ids: (B, T) tokens; with ``cache``, only the tokens not yet in the cache.
        labels: (B, T) the token that should follow each input position; -100 is ignored in the loss.
        attention_mask: (B, S) 1 = real token, 0 = padding (over cached + new positions).
        cache: a :class:`KVCache`, updated in place (see :meth:`new_cache`).
        """
        offset = cache.seq_len if cache is not None else 0
        x = self.embed(input_ids, offset)  # (B, T, d)
        x, attentions = self.stack(
            x, key_padding_from_attention_mask(attention_mask), None, True, cache, output_attentions
        )
        logits = self.lm_head(x)  # (B, T, vocab)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        return ModelOutput(logits=logits, loss=loss, last_hidden_state=x, attentions=attentions, cache=cache)

    def new_cache(self) -> KVCache:
        return KVCache(self.config.n_layers)

    def generate(self, input_ids: Tensor, **kwargs: Any) -> Tensor:
        """Continue ``input_ids`` (B, T); HF's arguments (max_new_tokens, do_sample, top_k, top_p, num_beams...)."""
        # the ids (B, T + new); a GenerateOutput only when asked with return_dict_in_generate=True
        return cast(Tensor, generate(self, input_ids, **kwargs))
