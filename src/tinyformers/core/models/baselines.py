"""The non-transformer baselines a transformer must beat on the same pixels: a small CNN and an MLP."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from tinyformers.core.dropout import Dropout
from tinyformers.core.models.base import ModelOutput


class ConvNet(nn.Module):
    """Two stages of ``conv3x3-BN-ReLU, conv3x3-BN-ReLU, maxpool 2``, then ``dense-ReLU-dense``.

    A 28x28 image leaves the stages as ``2c`` maps of 7x7; every conv sees a 3x3 neighbourhood, so the
    locality a ViT must learn from data is built in (LeCun et al. 1998 in modern dress: 3x3 kernels, batch norm).
    """

    def __init__(self, in_channels: int, image_size: int, num_classes: int, channels: int, hidden: int, dropout: float):
        super().__init__()

        def stage(c_in: int, c_out: int) -> list[nn.Module]:
            return [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]

        self.features = nn.Sequential(*stage(in_channels, channels), *stage(channels, 2 * channels))
        side = image_size // 4
        self.head = nn.Sequential(
            nn.Flatten(),
            Dropout(dropout),
            nn.Linear(2 * channels * side * side, hidden),
            nn.ReLU(),
            Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, pixels: Tensor, labels: Tensor | None = None) -> ModelOutput:
        logits = self.head(self.features(pixels))  # (B, C, H, W) -> (B, classes)
        return ModelOutput(logits=logits, loss=F.cross_entropy(logits, labels) if labels is not None else None)


class MLP(nn.Module):
    """``flatten -> dense-ReLU -> dense-ReLU -> dense``: every pixel is an unrelated input feature."""

    def __init__(self, n_inputs: int, num_classes: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(n_inputs, hidden),
            nn.ReLU(),
            Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, pixels: Tensor, labels: Tensor | None = None) -> ModelOutput:
        logits = self.net(pixels)  # (B, C, H, W) -> (B, classes)
        return ModelOutput(logits=logits, loss=F.cross_entropy(logits, labels) if labels is not None else None)
