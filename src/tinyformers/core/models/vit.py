"""Vision transformer (Dosovitskiy et al. 2021): an image is a sequence of flattened patches.

Eq. 1 of ViT: ``z_0 = [x_class; x_p^1 E; ..; x_p^N E] + E_pos``; the encoder runs over ``z_0``; the class
token's final state (or the mean of all patches) is classified. ``patch_embed='conv'`` puts a small convolutional
stem before the patch projection (Xiao et al. 2021, "Early Convolutions Help Transformers See Better"); the
attention stack is the same transformer either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinyformers.core.blocks import CoreConfig, EncoderStack
from tinyformers.core.dropout import Dropout
from tinyformers.core.models.base import ModelOutput, init_gpt2
from tinyformers.core.positions import make_positions


@dataclass
class ViTConfig(CoreConfig):
    """Attributes:
    image_size, patch_size, in_channels: input geometry; ``(image_size / patch_size)^2`` patches.
    num_classes: classes of the head (0 = no head). pooling: 'cls' (class token) or 'mean'.
    patch_embed: 'linear' (ViT's projection of each patch) or 'conv' (:class:`ConvStem`). stem_channels: the
        stem's width. stem_stages: the stem's stages (1: two conv layers at full resolution; each further stage
        halves the resolution by a 2x2 max-pool and doubles the width); ``patch_size`` must be a multiple of
        ``2 ** (stem_stages - 1)``.
    """

    image_size: int = 28
    patch_size: int = 4
    in_channels: int = 1
    num_classes: int = 10
    pooling: str = "cls"
    patch_embed: str = "linear"
    stem_channels: int = 32
    stem_stages: int = 1
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} is not a multiple of patch_size={self.patch_size}")
        if self.pooling not in ("cls", "mean"):
            raise ValueError(f"unknown pooling {self.pooling!r}: choose cls or mean")
        if self.patch_embed not in ("linear", "conv") or self.stem_channels < 1:
            raise ValueError(f"patch_embed={self.patch_embed!r}: choose linear or conv (stem_channels >= 1)")
        if self.stem_stages < 1 or self.patch_size % 2 ** (self.stem_stages - 1):
            raise ValueError(
                f"stem_stages={self.stem_stages}: at least 1, and patch_size={self.patch_size} must be a multiple "
                f"of {2 ** max(0, self.stem_stages - 1)} (each stage after the first halves the resolution)"
            )
        self.max_len = (self.image_size // self.patch_size) ** 2 + 1


class PatchEmbedding(nn.Module):
    """Cut the image into ``P x P`` patches and project each linearly to ``d_model``.

    A convolution with kernel = stride = P is exactly that linear map applied to every patch.
    """

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_channels, cfg.d_model, kernel_size=cfg.patch_size, stride=cfg.patch_size)

    def forward(self, pixels: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, N, d_model), patches in row-major order."""
        return self.proj(pixels).flatten(2).transpose(1, 2)


class ConvStem(nn.Module):
    """Early convolutions (Xiao et al. 2021): two 3x3 conv-BN-ReLU layers at full resolution, then the patch
    projection (kernel = stride = P) to ``d_model``. The tokens are the same ``(H / P)^2`` patches as
    :class:`PatchEmbedding`'s, but each has seen its neighbourhood through convolutions, which brings the CNN's
    locality prior to a ViT too small and too briefly trained to learn it from data. (Xiao et al. downsample with
    stride-2 convolutions to 16x16 patches of 224-pixel images; at 28 pixels two stride-1 layers keep every pixel
    and the patch size stays free.)

    ``stem_stages`` > 1 adds stages of a 2x2 max-pool and two conv-BN-ReLU layers of twice the width (a VGG-style
    CNN's stages); the projection's kernel is then ``P / 2^(stages-1)``, so the tokens are still the image's
    ``(H / P)^2`` patches, each having seen a wider neighbourhood.
    """

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, c = cfg.in_channels, cfg.stem_channels
        for stage in range(cfg.stem_stages):
            if stage:
                layers.append(nn.MaxPool2d(2))
                c *= 2
            for _ in range(2):
                layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
                c_in = c
        self.convs = nn.Sequential(*layers)
        k = cfg.patch_size // 2 ** (cfg.stem_stages - 1)
        self.proj = nn.Conv2d(c, cfg.d_model, kernel_size=k, stride=k)

    def reset_parameters(self) -> None:
        """PyTorch's (Kaiming-uniform) conv init: the GPT-2 init's std 0.02 suits a residual stream, not ReLU convs."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.BatchNorm2d):
                m.reset_parameters()

    def forward(self, pixels: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, N, d_model), patches in row-major order."""
        return self.proj(self.convs(pixels)).flatten(2).transpose(1, 2)  # (B, d, H/P, W/P) -> (B, N, d)


class VisionTransformer(nn.Module):
    """ViT classifier: patches + class token + positions -> pre-norm encoder -> head."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.patch_embed = PatchEmbedding(cfg) if cfg.patch_embed == "linear" else ConvStem(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.d_model))
        self.positions = make_positions(
            cfg.positions if cfg.positions != "rotary" else "none", cfg.max_len, cfg.d_model
        )
        self.dropout = Dropout(cfg.dropout)
        self.stack = EncoderStack(cfg, final_norm=True)
        self.head = nn.Linear(cfg.d_model, cfg.num_classes) if cfg.num_classes else None
        init_gpt2(self, cfg.n_layers)
        if isinstance(self.patch_embed, ConvStem):
            self.patch_embed.reset_parameters()

    def forward(self, pixels: Tensor, labels: Tensor | None = None, output_attentions: bool = False) -> ModelOutput:
        x = self.patch_embed(pixels)  # (B, N, d)
        x = torch.cat([self.cls_token.expand(x.size(0), -1, -1), x], dim=1)  # (B, 1 + N, d)
        if self.positions is not None:
            x = x + self.positions(torch.arange(x.size(1), device=x.device))
        x, attentions = self.stack(self.dropout(x), output_attentions=output_attentions)
        logits = loss = None
        if self.head is not None:
            pooled = x[:, 0] if self.config.pooling == "cls" else x[:, 1:].mean(dim=1)
            logits = self.head(pooled)
            if labels is not None:
                loss = F.cross_entropy(logits, labels)
        return ModelOutput(logits=logits, loss=loss, last_hidden_state=x, attentions=attentions)


def standardise(grey: Tensor, cfg: ViTConfig, mean: float, std: float) -> Tensor:
    """Integer grey levels (B, C*H*W) in 0..255 -> standardised float images (B, C, H, W)."""
    return ((grey.float() / 255 - mean) / std).view(-1, cfg.in_channels, cfg.image_size, cfg.image_size)


class ImageEncoder(VisionTransformer):
    """A headless ViT as the source encoder of an :class:`~tinyformers.core.models.EncoderDecoder`.

    An image *is* a sequence of integer tokens: its grey levels 0..255 in row-major order, (B, C*H*W), which
    :meth:`encode` standardises with the training set's ``mean`` and ``std`` and turns into the memory
    (B, 1 + N, d_model): the class token and the N patch states, every one of them real (no padding).
    """

    def __init__(self, cfg: ViTConfig, mean: float, std: float) -> None:
        if cfg.num_classes:
            raise ValueError("an image encoder has no classification head: num_classes must be 0")
        super().__init__(cfg)
        self.mean, self.std = mean, std

    def encode(
        self, src_ids: Tensor, src_mask: Tensor | None = None, output_attentions: bool = False
    ) -> tuple[Tensor, list[Tensor]]:
        """Grey levels (B, C*H*W) -> (memory (B, 1 + N, d), per-layer attentions). ``src_mask`` is accepted for
        the seq2seq interface and must be None: every pixel is real, and the memory is not aligned with it."""
        if src_mask is not None:
            raise ValueError("an image has no padding: src_mask must be None")
        out = self(standardise(src_ids, self.config, self.mean, self.std), output_attentions=output_attentions)
        return out.last_hidden_state, out.attentions


class ImageClassifier(nn.Module):
    """A ViT classifier on grey levels (B, C*H*W): the image-to-text model's encoder with a head on the class
    token, for the "classify, then look the name up" baseline on the same input."""

    def __init__(self, cfg: ViTConfig, mean: float, std: float) -> None:
        super().__init__()
        if not cfg.num_classes:
            raise ValueError("the classifier needs num_classes >= 1")
        self.config, self.mean, self.std = cfg, mean, std
        self.encoder = VisionTransformer(cfg)

    def forward(self, src_ids: Tensor, labels: Tensor | None = None) -> ModelOutput:
        """Grey levels (B, C*H*W) -> class logits (B, num_classes); cross-entropy when ``labels`` are given."""
        return self.encoder(standardise(src_ids, self.config, self.mean, self.std), labels)
