"""Audio classification: the Audio Spectrogram Transformer idea (Gong et al. 2021) in its simplest form.

Every ``patch_frames`` consecutive log-mel frames are one token (a linear map of ``patch_frames x n_mels``
numbers to ``d_model``, like ViT's patches), positions are added, a pre-norm encoder reads the tokens with a key
padding mask and a masked mean feeds a linear head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinyformers.core.blocks import CoreConfig, EncoderStack
from tinyformers.core.dropout import Dropout
from tinyformers.core.models.base import ModelOutput, init_gpt2, key_padding_from_attention_mask
from tinyformers.core.models.encoder import mean_pool
from tinyformers.core.positions import make_positions


@dataclass
class SpectrogramConfig(CoreConfig):
    """Attributes: n_mels: bands per frame. patch_frames: frames per token. num_classes: the head's classes."""

    n_mels: int = 40
    patch_frames: int = 2
    num_classes: int = 10


class SpectrogramTransformer(nn.Module):
    """Log-mel frames -> tokens of ``patch_frames`` frames -> pre-norm encoder -> masked mean -> class logits.

    Padding is a first-class input: ``attention_mask`` (B, T) marks real frames (1) and padding (0). Padding
    tokens are keys nobody attends to and are left out of the mean, so a clip's logits do not depend on the
    other clips of its batch. A token is real if its first frame is; its other frames, past the clip's end,
    are zeros whether they came from batch padding or from rounding up to whole tokens.
    """

    def __init__(self, cfg: SpectrogramConfig) -> None:
        super().__init__()
        self.config = cfg
        self.patch_embed = nn.Linear(cfg.patch_frames * cfg.n_mels, cfg.d_model)
        self.positions = make_positions(cfg.positions, cfg.max_len, cfg.d_model)
        self.dropout = Dropout(cfg.dropout)
        self.stack = EncoderStack(cfg)
        self.head = nn.Linear(cfg.d_model, cfg.num_classes)
        init_gpt2(self, cfg.n_layers)

    def forward(
        self,
        features: Tensor,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """``features`` (B, T, n_mels), zero past each clip's end; ``attention_mask`` (B, T)."""
        b, t, m = features.shape
        p = self.config.patch_frames
        features = F.pad(features, (0, 0, 0, (-t) % p))  # whole tokens: (B, ceil(T / p) * p, M)
        tokens = features.reshape(b, -1, p * m)  # (B, N, p * M)
        mask = attention_mask[:, ::p] if attention_mask is not None else None  # (B, N): first frame real
        x = self.patch_embed(tokens)  # (B, N, d)
        if self.positions is not None:
            if x.size(1) > self.config.max_len:
                raise ValueError(f"{x.size(1)} tokens are more than max_len={self.config.max_len}")
            x = x + self.positions(torch.arange(x.size(1), device=x.device))
        x, attentions = self.stack(
            self.dropout(x), key_padding_from_attention_mask(mask), output_attentions=output_attentions
        )
        logits = self.head(mean_pool(x, mask))  # (B, classes)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return ModelOutput(logits=logits, loss=loss, last_hidden_state=x, attentions=attentions)

    @torch.no_grad()
    def clip_logits(self, frames: list[Tensor], chunk: int = 256) -> Tensor:
        """Logits (N, classes) of clips of different lengths (T_i, n_mels), batched by length (less padding;
        masked anyway)."""
        device = next(self.parameters()).device
        order = sorted(range(len(frames)), key=lambda i: len(frames[i]))
        out = torch.empty(len(frames), self.config.num_classes)
        for start in range(0, len(order), chunk):
            rows = order[start : start + chunk]
            features, mask = pad_batch([frames[i] for i in rows])
            out[rows] = self(features.to(device), mask.to(device)).logits.float().cpu()
        return out


def pad_batch(frames: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Clips of different lengths -> zero-padded (B, T_max, M) and the attention mask (B, T_max)."""
    lengths = torch.tensor([len(f) for f in frames])
    padded = nn.utils.rnn.pad_sequence(frames, batch_first=True)  # zeros after each clip
    mask = (torch.arange(padded.size(1))[None, :] < lengths[:, None]).long()
    return padded, mask
