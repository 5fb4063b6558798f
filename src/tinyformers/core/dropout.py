"""Dropout (Srivastava et al. 2014; the paper's §5.4 "residual dropout") with a cheaper mask on a CPU.

The math is ``nn.Dropout``'s: in training each element is zeroed with probability ``p`` and the survivors are
scaled by ``1 / (1 - p)`` so the expectation is unchanged; in eval mode it is the identity.

Why a subclass: on a CPU, drawing the mask is most of the cost of dropout. ``torch.bernoulli_`` draws one
Mersenne-Twister number per element, many times the cost of the multiply that applies the mask
(``benchmarks/cpu_kernels.py`` measures both; docs/speed.md), and in a profile it was among the largest items of a
training step of the ``translate`` and ``pixels`` recipes. Here the mask comes from 16-bit uniform integers cut
out of 64-bit random words (``random_`` fills four elements' worth per draw). ``p`` is then a multiple of 1/65536
(rounded to the nearest); the scale uses the exact keep probability, so the expectation is still unchanged.
Elsewhere (CUDA, eval, ``p`` = 0 or 1, ``inplace``) this is ``nn.Dropout``; and so it is inside ``torch.compile``:
Dynamo cannot trace ``random_``, so the mask would break the graph at every dropout (a model of 4 blocks fell into
a dozen small graphs, each a recompile, and ran slower than eager), while Inductor draws ``F.dropout``'s mask in
its own fused kernel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LEVELS = 1 << 16  # the mask compares 16-bit uniform integers with a threshold


def dropout_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | None = None) -> Tensor:
    """A boolean keep-mask of ``shape``: each element ``True`` with probability ``1 - round(p * 65536) / 65536``.

    Draws from torch's default generator (so ``torch.manual_seed`` makes it reproducible).
    """
    n = math.prod(shape)
    # 64 random bits each: the full int64 range (plain ``random_()`` leaves the sign bit 0)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None)
    uniform = words.view(torch.int16)[:n].view(shape)  # each 16 bits uniform in [-32768, 32767]
    threshold = round(p * LEVELS)
    return uniform >= threshold - LEVELS // 2  # P(keep) = (65536 - threshold) / 65536


def fast_dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``F.dropout(x, p, training)`` with :func:`dropout_mask` on a CPU (see the module docstring)."""
    if not training or p <= 0.0 or p >= 1.0 or x.device.type != "cpu" or torch.compiler.is_compiling():
        return F.dropout(x, p, training)
    threshold = round(p * LEVELS)
    if threshold == 0:
        return x
    if threshold == LEVELS:  # p within 1/131072 of 1 rounds to "drop everything", as F.dropout does at p = 1
        return F.dropout(x, 1.0, training)
    keep = dropout_mask(x.shape, p, x.device)
    return x * keep * (LEVELS / (LEVELS - threshold))


class Dropout(nn.Dropout):
    """``nn.Dropout`` (same arguments, state and eval behaviour) with :func:`fast_dropout`'s CPU mask."""

    def forward(self, x: Tensor) -> Tensor:
        if self.inplace:
            return super().forward(x)
        return fast_dropout(x, self.p, self.training)
