"""Encoder-only models (BERT): bidirectional self-attention, with sequence and token classification heads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinyformers.core.blocks import CoreConfig, EncoderStack, make_norm
from tinyformers.core.dropout import Dropout
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
        self.dropout = Dropout(cfg.dropout)
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
        self.dropout = Dropout(cfg.dropout)
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


class MaskedLMHead(nn.Module):
    """BERT's masked-language-model head (Devlin et al. 2019, §3.1; HF ``BertLMPredictionHead``): a dense layer,
    GELU and a norm, then scores over the vocabulary with the *token embedding matrix* (tied, so the head adds
    only ``d_model^2 + 2 d_model + vocab_size`` parameters) plus a bias per token.

    ``forward(hidden, embedding)``: hidden (..., d_model), the token embedding weight (vocab, d_model) ->
    logits (..., vocab). The embedding is passed in, not stored: a module held twice would save twice.
    """

    def __init__(self, cfg: CoreConfig, vocab_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.d_model, cfg.d_model)
        self.norm = make_norm(cfg)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden: Tensor, embedding: Tensor) -> Tensor:
        return F.linear(self.norm(F.gelu(self.dense(hidden))), embedding, self.bias)


def mask_tokens(
    input_ids: Tensor,
    maskable: Tensor,
    mask_id: int,
    random_ids: tuple[int, int],
    generator: torch.Generator | None = None,
    p: float = 0.15,
) -> tuple[Tensor, Tensor]:
    """BERT's corruption for masked-language modelling (§3.1, "Masked LM"): each ``maskable`` position
    (True = a real, non-special token) is chosen with probability ``p``; a chosen token becomes ``mask_id`` 80% of
    the time, a random id in ``[random_ids[0], random_ids[1])`` 10%, and stays itself 10%.

    Returns ``(inputs, labels)``: the corrupted ids, and the original ids at the chosen positions with -100
    everywhere else (the loss scores only the chosen ones). At least one position is chosen when any is
    maskable, so the loss is never a mean over nothing.
    """
    draws = torch.rand(input_ids.shape, generator=generator)
    chosen = (draws < p) & maskable
    if not chosen.any() and maskable.any():
        chosen.view(-1)[int(maskable.view(-1).nonzero()[0])] = True
    labels = input_ids.masked_fill(~chosen, -100)
    how = torch.rand(input_ids.shape, generator=generator)
    random = torch.randint(random_ids[0], random_ids[1], input_ids.shape, generator=generator)
    inputs = torch.where(chosen & (how < 0.8), torch.full_like(input_ids, mask_id), input_ids)
    inputs = torch.where(chosen & (how >= 0.8) & (how < 0.9), random, inputs)
    return inputs, labels


def sentence_embedding(encoder: Encoder, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """Sentence-Transformers embedding: mean pooling over real tokens, then L2 normalisation. (B, d)."""
    with torch.no_grad():
        h = encoder(input_ids, attention_mask).last_hidden_state
    return F.normalize(mean_pool(h, attention_mask), dim=-1)
