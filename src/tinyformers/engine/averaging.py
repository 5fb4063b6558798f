"""An exponential moving average (EMA) of the weights: evaluate and keep the average, train the live weights.

Polyak & Juditsky (1992) showed that averaging the iterates of stochastic gradient descent reduces their noise;
the exponential form, with a decay close to 1, is what modern recipes use (DeiT and timm's ``ModelEmaV2``, the
EMA of Inception-v3 and EfficientNet, ``torch.optim.swa_utils.get_ema_multi_avg_fn``). After every optimizer
step ``t`` of the task

    theta_ema <- d_t * theta_ema + (1 - d_t) * theta,      d_t = min(decay, (1 + t) / (10 + t))

The warm-up ``(1 + t) / (10 + t)`` (TensorFlow's ``ExponentialMovingAverage(num_updates=...)``) keeps the first
steps from dragging the random initialisation along: the average starts at the first step's weights and its
horizon, ``1 / (1 - d_t)`` steps, grows to ``1 / (1 - decay)`` (1,000 steps for 0.999). A short run should use a
decay whose horizon is a small fraction of its steps.

What is averaged: the trainable parameters and the floating-point buffers a checkpoint holds (a BatchNorm's
running statistics, as timm does); frozen weights (LoRA's base model) never change and are left alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn


def averaged_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The tensors an EMA of ``model`` follows, by state-dict name (tied weights once)."""
    persistent = set(model.state_dict())
    out: dict[str, Tensor] = {name: p for name, p in model.named_parameters() if p.requires_grad}
    out.update((name, b) for name, b in model.named_buffers() if name in persistent and torch.is_floating_point(b))
    return out


class WeightEMA:
    """The moving average of ``model``'s weights (see the module docstring for the update and the warm-up).

    Args:
        model: the model being trained; its weights as they are now start the average.
        decay: the asymptotic decay ``d`` in (0, 1), e.g. 0.999.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        live = averaged_tensors(model)
        self.names = list(live)
        self.shadow = [t.detach().clone() for t in live.values()]
        self._model: nn.Module | None = None
        self._tensors: list[Tensor] = []

    def _live(self, model: nn.Module) -> list[Tensor]:
        """``model``'s tensors in ``names`` order, looked up once per model: the optimizer and BatchNorm update
        them in place, so the same tensors hold the live weights at every step."""
        if model is not self._model:
            live = averaged_tensors(model)
            self._model, self._tensors = model, [live[name].detach() for name in self.names]
        return self._tensors

    def decay_at(self, updates: int) -> float:
        """``d_t`` for the ``updates``-th update (1 = the first: the average becomes the live weights)."""
        return 0.0 if updates <= 1 else min(self.decay, (1 + updates) / (10 + updates))

    @torch.no_grad()
    def update(self, model: nn.Module, updates: int) -> None:
        """Fold the live weights in after the ``updates``-th optimizer step of the task (counted from 1)."""
        weight = 1.0 - self.decay_at(updates)
        live = self._live(model)
        if weight == 1.0:
            torch._foreach_copy_(self.shadow, live)
        else:
            torch._foreach_lerp_(self.shadow, live, weight)  # shadow += weight * (live - shadow), one fused loop

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Inside the block ``model`` holds the averaged weights (to evaluate or save); the live ones return after."""
        live = self._live(model)
        with torch.no_grad():
            kept = [t.clone() for t in live]
            torch._foreach_copy_(live, self.shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(live, kept)

    def state(self) -> dict[str, Tensor]:
        """The averaged tensors by name (what a checkpoint stores to resume exactly)."""
        return {name: t.contiguous().cpu() for name, t in zip(self.names, self.shadow, strict=True)}

    @torch.no_grad()
    def load_state(self, tensors: dict[str, Tensor], source: str) -> None:
        """Restore :meth:`state`; a checkpoint without the average (or of another model) is a ``ValueError``."""
        missing = [name for name in self.names if name not in tensors]
        if missing:
            raise ValueError(f"{source}: no weight average for {missing[:3]} (was the run trained without ema?)")
        for name, t in zip(self.names, self.shadow, strict=True):
            if tuple(tensors[name].shape) != tuple(t.shape):
                shape = tuple(tensors[name].shape)
                raise ValueError(f"{source}: averaged {name} has shape {shape}, the model's is {tuple(t.shape)}")
            t.copy_(tensors[name])
