"""Time-series forecasting: PatchTST for one channel (Nie et al. 2023, "A Time Series is Worth 64 Words"),
with RevIN (Kim et al. 2022), a quantile head trained with the pinball loss and an optional linear path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from tinyformers.core.blocks import CoreConfig, EncoderStack
from tinyformers.core.dropout import Dropout
from tinyformers.core.models.base import ModelOutput, init_gpt2
from tinyformers.core.positions import make_positions

REVIN_EPS = 1e-5  # inside the square root of the window variance, in globally normalised units


@dataclass
class PatchConfig(CoreConfig):
    """Attributes: lookback, horizon: window lengths. patch_len, patch_stride: the patches.
    quantiles: predicted levels. revin: per-window normalisation. skip: 'rlinear' (a frozen map ``rlinear``
    (L + 1, H) from the RevIN'd window, added to every quantile; the head starts at zero), 'learned' or 'none'."""

    lookback: int = 168
    horizon: int = 24
    patch_len: int = 24
    patch_stride: int = 12
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    revin: bool = True
    skip: str = "none"
    rlinear: tuple[tuple[float, ...], ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.patch_len <= self.lookback or self.patch_stride < 1:
            raise ValueError(f"need 1 <= patch_len <= lookback={self.lookback} and patch_stride >= 1")
        self.max_len = self.n_patches

    @property
    def n_patches(self) -> int:
        return (self.lookback - self.patch_len) // self.patch_stride + 1


class PatchForecaster(nn.Module):
    """PatchTST for one channel (Nie et al. 2023, §3.1):

    1. RevIN (Kim et al. 2022): subtract the window's mean and divide by its standard deviation, so the
       encoder sees the shape of the week rather than its level; the forecast is mapped back at the end.
    2. Patching: ``N = (L - P) / S + 1`` patches of ``P`` steps, each projected linearly to ``d_model``, plus a
       learned position per patch.
    3. A pre-norm transformer encoder over the ``N`` patch tokens.
    4. A flatten head: all ``N * d_model`` features -> ``horizon x quantiles`` in one linear map.
    """

    levels: Tensor  # buffers, registered in __init__
    rlinear: Tensor

    def __init__(self, cfg: PatchConfig) -> None:
        super().__init__()
        self.config = cfg
        self.patch_embed = nn.Linear(cfg.patch_len, cfg.d_model)
        self.positions = cast(nn.Module, make_positions("learned", cfg.n_patches, cfg.d_model))  # 'learned': never None
        self.dropout = Dropout(cfg.dropout)
        self.stack = EncoderStack(cfg)
        self.head = nn.Linear(cfg.n_patches * cfg.d_model, cfg.horizon * len(cfg.quantiles))
        self.skip = nn.Linear(cfg.lookback, cfg.horizon) if cfg.skip == "learned" else None
        self.register_buffer("levels", torch.tensor(cfg.quantiles), persistent=False)
        init_gpt2(self, cfg.n_layers)
        if cfg.skip == "rlinear":  # saved with the weights; starts the model at exactly the RLinear forecast
            self.register_buffer("rlinear", torch.tensor(cfg.rlinear, dtype=torch.float32))  # (L + 1, H)
            nn.init.zeros_(self.head.weight)

    def forward(self, window: Tensor, labels: Tensor | None = None, output_attentions: bool = False) -> ModelOutput:
        """``window`` (B, L) and the target ``labels`` (B, H), normalised -> ``logits`` (B, H, Q): the quantile
        forecasts."""
        cfg = self.config
        mean = window.mean(1, keepdim=True) if cfg.revin else torch.zeros_like(window[:, :1])  # (B, 1)
        std = (window.var(1, keepdim=True, unbiased=False) + REVIN_EPS).sqrt() if cfg.revin else torch.ones_like(mean)
        x = (window - mean) / std  # (B, L)
        patches = x.unfold(1, cfg.patch_len, cfg.patch_stride)  # (B, N, P)
        h = self.patch_embed(patches) + self.positions(torch.arange(patches.size(1), device=x.device))  # (B, N, d)
        h, attentions = self.stack(self.dropout(h), output_attentions=output_attentions)  # (B, N, d)
        y = self.head(h.flatten(1)).view(-1, cfg.horizon, len(cfg.quantiles))  # (B, H, Q)
        if self.skip is not None:
            y = y + self.skip(x).unsqueeze(-1)
        if cfg.skip == "rlinear":
            y = y + (x @ self.rlinear[:-1] + self.rlinear[-1]).unsqueeze(-1)  # (B, H, 1): the same for every level
        y = y * std.unsqueeze(-1) + mean.unsqueeze(-1)  # back to the series' (globally normalised) scale
        loss = None if labels is None else pinball_loss(y, labels, self.levels)
        return ModelOutput(logits=y, loss=loss, last_hidden_state=h, attentions=attentions)


def pinball_loss(pred: Tensor, target: Tensor, levels: Tensor) -> Tensor:
    """Quantile (pinball) loss, mean over batch, horizon and levels: ``max(q e, (q - 1) e)`` with ``e = y - ŷ_q``.
    Minimised by the q-quantile of the predictive distribution; at q = 0.5 it is half the absolute error."""
    error = target.unsqueeze(-1) - pred  # (B, H, Q)
    return torch.maximum(levels * error, (levels - 1) * error).mean()
