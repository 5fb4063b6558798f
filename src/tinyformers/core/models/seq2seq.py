"""Encoder-decoder (the paper's Transformer, §3.1): encode the source, decode the target one token at a time.

Teacher forcing: the decoder reads the target shifted right by one (``<bos> y_1 .. y_{n-1}``) and predicts
``y_1 .. y_n``. Feeding the unshifted target lets the decoder copy the answer — the bug of one of our
source projects — so the shift lives in exactly one place, :func:`shift_right`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, cast, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinyformers.core.attention import KVCache
from tinyformers.core.blocks import CoreConfig, DecoderStack, EncoderStack
from tinyformers.core.generation import generate_seq2seq
from tinyformers.core.models.base import (
    Embeddings,
    ModelOutput,
    init_gpt2,
    key_padding_from_attention_mask,
    make_rotary,
)


@dataclass
class Seq2SeqConfig(CoreConfig):
    """Attributes:
    src_vocab_size, tgt_vocab_size: vocabularies (equal when ``share_embeddings``).
    share_embeddings: one embedding table for source, target and output (§3.4).
    pad_id, bos_id, eos_id: special target tokens.
    """

    src_vocab_size: int = 256
    tgt_vocab_size: int = 256
    share_embeddings: bool = False
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    positions: str = "sinusoidal"


def shift_right(labels: Tensor, bos_id: int, pad_id: int) -> Tensor:
    """Decoder input for teacher forcing: ``[bos, y_1, .., y_{n-1}]`` from labels ``[y_1, .., y_n]`` (B, T).

    Ignored label positions (-100) become padding.
    """
    shifted = labels.new_full(labels.shape, pad_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = bos_id
    return shifted.masked_fill(shifted == -100, pad_id)


@runtime_checkable
class SourceEncoder(Protocol):
    """What an encoder plugged into :class:`EncoderDecoder` provides (e.g. :class:`~tinyformers.core.models.vit.
    ImageEncoder`): source ids (B, S) -> memory (B, S', d_model) and its per-layer attentions. The decoder's
    cross-attention masks the memory with ``src_mask`` (1 = real), so an encoder whose memory is not aligned
    with the source (an image's patches) takes no mask."""

    def encode(
        self, src_ids: Tensor, src_mask: Tensor | None = None, output_attentions: bool = False
    ) -> tuple[Tensor, list[Tensor]]: ...


class EncoderDecoder(nn.Module):
    """The Transformer of "Attention Is All You Need": source ids -> memory -> target logits.

    The encoder is the paper's (source embeddings and an :class:`EncoderStack`), or any module given as
    ``encoder`` that satisfies :class:`SourceEncoder` — a vision transformer reading an image, for image-to-text.
    A given encoder keeps the initialisation its constructor made; the rest gets GPT-2's.
    """

    def __init__(self, cfg: Seq2SeqConfig, encoder: nn.Module | None = None) -> None:
        super().__init__()
        if cfg.share_embeddings and cfg.src_vocab_size != cfg.tgt_vocab_size:
            raise ValueError("share_embeddings needs src_vocab_size == tgt_vocab_size")
        if cfg.share_embeddings and encoder is not None:
            raise ValueError("share_embeddings needs the built-in encoder (a given encoder has no token embeddings)")
        if encoder is not None and not isinstance(encoder, SourceEncoder):
            raise TypeError(f"{type(encoder).__name__} has no encode(src_ids, src_mask, output_attentions)")
        self.config = cfg
        self.src_embed: Embeddings | None = None
        if encoder is None:
            self.src_embed = Embeddings(cfg, cfg.src_vocab_size, scale=True)
            self.tgt_embed = Embeddings(cfg, cfg.tgt_vocab_size, scale=True)
            self.encoder: nn.Module = EncoderStack(cfg, rotary=make_rotary(cfg))
        else:  # registered first, as its parameters were created first
            self.encoder = encoder
            self.tgt_embed = Embeddings(cfg, cfg.tgt_vocab_size, scale=True)
        self.decoder = DecoderStack(cfg, rotary=make_rotary(cfg))
        self.lm_head = nn.Linear(cfg.d_model, cfg.tgt_vocab_size, bias=False)
        if encoder is None:
            init_gpt2(self, cfg.n_layers)
        else:
            for part in (self.tgt_embed, self.decoder, self.lm_head):
                init_gpt2(part, cfg.n_layers)
        if cfg.share_embeddings and self.src_embed is not None:  # (always, see the check above)
            self.tgt_embed.tokens.weight = self.src_embed.tokens.weight
            self.lm_head.weight = self.src_embed.tokens.weight

    def encode(
        self, src_ids: Tensor, src_mask: Tensor | None = None, output_attentions: bool = False
    ) -> tuple[Tensor, list[Tensor]]:
        """``src_ids`` (B, S), ``src_mask`` (B, S) 1 = real -> memory (B, S, d_model) and the attentions."""
        if self.src_embed is None:
            return cast(SourceEncoder, self.encoder).encode(src_ids, src_mask, output_attentions)
        return self.encoder(
            self.src_embed(src_ids),
            key_padding_from_attention_mask(src_mask),
            output_attentions=output_attentions,
        )

    def decode(
        self,
        decoder_input_ids: Tensor,
        memory: Tensor,
        src_mask: Tensor | None = None,
        cache: KVCache | None = None,
        cross_cache: KVCache | None = None,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """Logits (B, T, tgt_vocab) for decoder inputs (B, T) attending to ``memory``."""
        offset = cache.seq_len if cache is not None else 0
        y = self.tgt_embed(decoder_input_ids, offset)
        y, self_w, cross_w = self.decoder(
            y,
            memory,
            None,
            key_padding_from_attention_mask(src_mask),
            cache,
            cross_cache,
            output_attentions,
        )
        return ModelOutput(
            logits=self.lm_head(y),
            last_hidden_state=y,
            attentions=self_w,
            cross_attentions=cross_w,
            cache=cache,
        )

    def forward(
        self,
        src_ids: Tensor,
        labels: Tensor,
        src_mask: Tensor | None = None,
        output_attentions: bool = False,
        label_smoothing: float = 0.0,
    ) -> ModelOutput:
        """Teacher-forced pass. ``labels`` (B, T) = target ids ending in ``eos``, padded with ``pad_id``;
        padding is ignored in the loss. ``label_smoothing``: the loss's target is ``(1 - eps) one_hot + eps / V``
        (§5.4; ``F.cross_entropy``'s argument), so a task that smooths needs no second cross-entropy."""
        cfg = self.config
        labels = labels.masked_fill(labels == cfg.pad_id, -100)
        memory, enc_w = self.encode(src_ids, src_mask, output_attentions)
        out = self.decode(shift_right(labels, cfg.bos_id, cfg.pad_id), memory, src_mask, None, None, output_attentions)
        assert out.logits is not None  # decode always computes them
        out.loss = F.cross_entropy(
            out.logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100, label_smoothing=label_smoothing
        )
        out.attentions = enc_w + out.attentions
        return out

    def new_caches(self) -> tuple[KVCache, KVCache]:
        """(self-attention cache, cross-attention cache) for incremental decoding."""
        return KVCache(self.config.n_layers), KVCache(self.config.n_layers)

    @torch.no_grad()
    def generate(self, src_ids: Tensor, src_mask: Tensor | None = None, **kwargs: Any) -> Tensor:
        """Translate ``src_ids`` (B, S); HF's decoding arguments (max_new_tokens, num_beams, ...)."""
        # the ids (B, T); a GenerateOutput only when asked with return_dict_in_generate=True
        return cast(Tensor, generate_seq2seq(self, src_ids, src_mask, **kwargs))
