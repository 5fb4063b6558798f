"""A sequence classifier with a local front end: the model of the ``languages`` task (which random walk made a
sequence), from :mod:`tinyformers.core.blocks` like every family."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinyformers.core.blocks import CoreConfig, EncoderStack
from tinyformers.core.models.base import ModelOutput, init_gpt2, make_rotary


class WalkClassifier(nn.Module):
    """A sequence -> language: a local front end, a rotary pre-norm encoder, pooling and a linear head.

    The front end embeds each position from its last ``window`` inputs (a Conv1d with kernel ``window``, as the
    source used for floats). An input is the value itself (``inputs='values'``) or its first difference
    (``inputs='differences'``: ``(x_t - x_{t-1}) mod 10`` for symbols, ``y_t - y_{t-1}`` for floats, none at
    position 0). The languages are defined by their steps, and from positions mod 10 the model would first have
    to learn subtraction mod 10; this input choice is the only knowledge of the task built in (both are
    options, both measured in docs/tasks/languages.md). For symbols the window is one embedding table per
    slot, summed (a convolution over one-hot inputs); for floats a two-layer MLP of the window: the blocks
    begin with LayerNorm, which divides out the scale of its input (up to its epsilon), so after one linear map
    (bias zero at init) a small wiggle and a full step would look alike; the GELU keeps the size visible.

    The encoder then sees how the steps around a position go (with ``window`` >= 3 a position already sees
    whether a step repeats the one before: the evidence for ``sticky``). Pooling is a *sum* by default: the
    Bayes log-likelihood ratio is a sum of one term per step, so it grows with the length, and a linear head
    on the sum represents it with weights of order 1, where on the mean its weights must grow L-fold —
    slowly, with AdamW's steps of about ``lr``.
    """

    def __init__(self, cfg: CoreConfig, variant: str, inputs: str, window: int, pooling: str, num_classes: int) -> None:
        super().__init__()
        self.variant, self.inputs, self.window, self.pooling = variant, inputs, window, pooling
        if variant == "symbols":
            self.embed: nn.Module = nn.Embedding(11 * window, cfg.d_model)  # slot k, value v -> 11 k + v
        else:
            self.embed = nn.Sequential(nn.Linear(window, cfg.d_model), nn.GELU(), nn.Linear(cfg.d_model, cfg.d_model))
        self.stack = EncoderStack(cfg, rotary=make_rotary(cfg))
        self.head = nn.Linear(cfg.d_model, num_classes)
        init_gpt2(self, cfg.n_layers)

    def front(self, x: Tensor) -> Tensor:
        """(B, L) symbols or values -> (B, L, d_model)."""
        if self.variant == "symbols":
            if self.inputs == "differences":  # (x_t - x_{t-1}) mod 10; position 0 has none: 10
                x = F.pad((x[:, 1:] - x[:, :-1]) % 10, (1, 0), value=10)
            # x shifted right by k (10 = none), cut to L: also right when the sequence is shorter than the window
            ids = [F.pad(x, (k, 0), value=10)[:, : x.size(1)] + 11 * k for k in range(self.window)]
            return sum(self.embed(i) for i in ids)  # slot k holds the value k positions back; 10 = none
        if self.inputs == "differences":
            x = torch.diff(x, dim=1, prepend=torch.zeros_like(x[:, :1]))  # (B, L); the walk starts at 0
        return self.embed(F.pad(x, (self.window - 1, 0)).unfold(1, self.window, 1))  # (B, L, window) -> (B, L, d)

    def forward(self, x: Tensor, labels: Tensor | None = None, output_attentions: bool = False) -> ModelOutput:
        h, attentions = self.stack(self.front(x), output_attentions=output_attentions)  # (B, L, d)
        logits = self.head(h.sum(1) if self.pooling == "sum" else h.mean(1))  # (B, d) -> (B, classes)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return ModelOutput(logits=logits, loss=loss, last_hidden_state=h, attentions=attentions)
