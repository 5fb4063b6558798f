"""Encoder-only models (BERT): bidirectional self-attention, with sequence and token classification heads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinyformers.core.blocks import CoreConfig, EncoderStack
from tinyformers.core.models.base import (
    Embeddings,
    ModelOutput,
    init_gpt2,
    key_padding_from_attention_mask,
    make_rotary,
)


@dataclass
class EncoderConfig(CoreConfig):
    """A BERT-like encoder.

    Attributes:
        vocab_size: number of tokens. type_vocab_size: segment ids (BERT: 2; 0 = none).
        embed_norm: normalise the embedding sum (BERT). embed_scale: multiply tokens by sqrt(d_model) (§3.4).
    """

    vocab_size: int = 256
    type_vocab_size: int = 0
    embed_norm: bool = False
    embed_scale: bool = False


class Encoder(nn.Module):
    """Token ids -> contextual vectors ``(B, T, d_model)``; every position sees every real position."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embed = Embeddings(cfg, cfg.vocab_size, cfg.embed_scale, cfg.type_vocab_size, cfg.embed_norm)
        self.stack = EncoderStack(cfg, rotary=make_rotary(cfg))
        init_gpt2(self, cfg.n_layers)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """``attention_mask`` (B, T): 1 = real token, 0 = padding (HF convention)."""
        x = self.embed(input_ids, token_type_ids=token_type_ids)
        x, attentions = self.stack(
            x, key_padding_from_attention_mask(attention_mask), output_attentions=output_attentions
        )
        return ModelOutput(last_hidden_state=x, attentions=attentions)


def mean_pool(hidden: Tensor, attention_mask: Tensor | None) -> Tensor:
    """Average of the real (non-padding) positions: (B, T, d) -> (B, d)."""
    if attention_mask is None:
        return hidden.mean(dim=1)
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


class EncoderClassifier(nn.Module):
    """Sequence classification: pool the encoder's output ('cls' = first position, or 'mean') and classify.

    ``class_weight`` (num_classes,), optional: the loss weight of each class (``F.cross_entropy``'s ``weight``),
    e.g. to stop a rare class being ignored; kept as a buffer that is not saved (the task rebuilds it).
    """

    class_weight: Tensor | None  # a buffer (not saved): F.cross_entropy's weight

    def __init__(
        self, cfg: EncoderConfig, num_classes: int, pooling: str = "cls", class_weight: Tensor | None = None
    ) -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"unknown pooling {pooling!r}: choose cls or mean")
        self.encoder = Encoder(cfg)
        self.pooling = pooling
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.d_model, num_classes)
        self.register_buffer("class_weight", class_weight, persistent=False)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        output_attentions: bool = False,
    ) -> ModelOutput:
        out = self.encoder(input_ids, attention_mask, output_attentions=output_attentions)
        h = out.last_hidden_state
        pooled = h[:, 0] if self.pooling == "cls" else mean_pool(h, attention_mask)  # (B, d)
        logits = self.head(self.dropout(pooled))  # raw scores: cross_entropy applies the one softmax
        loss = F.cross_entropy(logits, labels, weight=self.class_weight) if labels is not None else None
        return ModelOutput(logits=logits, loss=loss, last_hidden_state=h, attentions=out.attentions)


class EncoderTokenClassifier(nn.Module):
    """Token classification (NER): one label per position; label -100 (padding, sub-words) is ignored.
    ``class_weight``: as in :class:`EncoderClassifier`."""

    class_weight: Tensor | None  # a buffer (not saved): F.cross_entropy's weight

    def __init__(self, cfg: EncoderConfig, num_labels: int, class_weight: Tensor | None = None) -> None:
        super().__init__()
        self.encoder = Encoder(cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.d_model, num_labels)
        self.register_buffer("class_weight", class_weight, persistent=False)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        output_attentions: bool = False,
    ) -> ModelOutput:
        out = self.encoder(input_ids, attention_mask, output_attentions=output_attentions)
        logits = self.head(self.dropout(out.last_hidden_state))  # (B, T, num_labels)
        loss = None
        if labels is not None:
            if attention_mask is not None:
                labels = labels.masked_fill(attention_mask == 0, -100)  # padding never counts
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), weight=self.class_weight, ignore_index=-100)
        return ModelOutput(logits=logits, loss=loss, last_hidden_state=out.last_hidden_state, attentions=out.attentions)


def sentence_embedding(encoder: Encoder, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """Sentence-Transformers embedding: mean pooling over real tokens, then L2 normalisation. (B, d)."""
    with torch.no_grad():
        h = encoder(input_ids, attention_mask).last_hidden_state
    return F.normalize(mean_pool(h, attention_mask), dim=-1)
