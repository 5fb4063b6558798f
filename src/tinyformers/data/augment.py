"""Training-time augmentation, done on the whole batch at once with the batch's ``torch.Generator`` (so a step's
batch can be recomputed): images (random shifts, flips, erasing and CutMix) and audio clips (speed, shift, noise,
SpecAugment)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tinyformers.data import audio
from tinyformers.data.padding import PaddedRows


def augment_images(pixels: Tensor, shift: int, flip: bool, generator: torch.Generator) -> Tensor:
    """Random translation by up to ``shift`` pixels (zero padding, then a random crop) and optional flips.

    Done with indexing on the whole batch: pad to ``(H + 2s, W + 2s)``, then gather each image's window.
    """
    b, _, h, w = pixels.shape
    if shift:
        padded = F.pad(pixels, (shift, shift, shift, shift))  # (B, C, H + 2s, W + 2s)
        dy = torch.randint(0, 2 * shift + 1, (b,), generator=generator)
        dx = torch.randint(0, 2 * shift + 1, (b,), generator=generator)
        rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (B, H, 1)
        cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (B, 1, W)
        pixels = padded[torch.arange(b)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)  # (B, C, H, W)
    if flip:
        mirror = torch.rand(b, generator=generator) < 0.5
        pixels = torch.where(mirror[:, None, None, None], pixels.flip(-1), pixels)
    return pixels


def _boxes(top: Tensor, bottom: Tensor, left: Tensor, right: Tensor, h: int, w: int) -> Tensor:
    """(B, H, W) masks, True inside each image's box: rows [top, bottom), columns [left, right)."""
    rows, cols = torch.arange(h)[None, :], torch.arange(w)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < bottom[:, None])  # (B, H)
    in_cols = (cols >= left[:, None]) & (cols < right[:, None])  # (B, W)
    return in_rows[:, :, None] & in_cols[:, None, :]


def erase_images(
    pixels: Tensor, p: float, generator: torch.Generator, scale: tuple[float, float] = (0.02, 0.33)
) -> Tensor:
    """Random erasing (Zhong et al. 2020): with probability ``p`` per image, one rectangle is set to 0.

    Meant for standardised pixels, where 0 is the training set's mean. The rectangle covers a uniform
    ``scale`` fraction of the image with an aspect ratio log-uniform in [1/3, 3] (the paper's defaults),
    clipped to the image; drawn for the whole batch at once.
    """
    b, _, h, w = pixels.shape
    if p <= 0:
        return pixels
    area = torch.empty(b).uniform_(*scale, generator=generator) * h * w
    log_ratio = torch.empty(b).uniform_(-1.0986123, 1.0986123, generator=generator)  # log(1/3) .. log(3)
    eh = (area * log_ratio.exp()).sqrt().round().clamp(1, h).long()
    ew = (area / log_ratio.exp()).sqrt().round().clamp(1, w).long()
    top = (torch.rand(b, generator=generator) * (h - eh + 1)).long()
    left = (torch.rand(b, generator=generator) * (w - ew + 1)).long()
    chosen = torch.rand(b, generator=generator) < p
    box = _boxes(top, top + eh, left, left + ew, h, w) & chosen[:, None, None]
    return pixels.masked_fill(box[:, None], 0.0)


def cutmix_images(pixels: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """CutMix (Yun et al. 2019) with alpha = 1: each image gets a box pasted from another image of the batch.

    The box's area is a uniform fraction 1 - lambda of the image (Beta(1, 1)), its centre uniform, clipped to
    the image; lambda is then recomputed from the clipped box. Returns the mixed pixels, the permutation that
    says which image each box came from, and lambda per image: the loss is
    ``lam * CE(logits, y) + (1 - lam) * CE(logits, y[perm])``.
    """
    b, _, h, w = pixels.shape
    perm = torch.randperm(b, generator=generator)
    cut = (1 - torch.rand(b, generator=generator)).sqrt()  # side fraction: area fraction 1 - lambda
    ch, cw = (cut * h).round().long(), (cut * w).round().long()
    cy = (torch.rand(b, generator=generator) * h).long()
    cx = (torch.rand(b, generator=generator) * w).long()
    top, bottom = (cy - ch // 2).clamp(0, h), (cy + ch - ch // 2).clamp(0, h)
    left, right = (cx - cw // 2).clamp(0, w), (cx + cw - cw // 2).clamp(0, w)
    box = _boxes(top, bottom, left, right, h, w)
    mixed = torch.where(box[:, None], pixels[perm], pixels)
    lam = 1 - box.flatten(1).float().mean(1)
    return mixed, perm, lam


class ClipAugmentation(Protocol):
    """The settings :func:`augment_clips` reads (a task config that has them, e.g. spoken-digits')."""

    sample_rate: int
    n_fft: int
    hop: int
    n_mels: int
    speed: float
    shift: float
    noise: float
    snr_low: float
    snr_high: float
    freq_mask: int
    time_mask: int


def augment_clips(
    clips: list[np.ndarray] | PaddedRows, cfg: ClipAugmentation, meta: dict[str, Any], g: torch.Generator
) -> tuple[Tensor, Tensor]:
    """A training batch: standardised, augmented frames (B, T, M), zero past each clip, and the mask (B, T).

    Done on the whole batch at once, in the order a microphone would see it:

    1. speed: clip i is read at ``factor_i`` samples per output sample (linear interpolation; the
       clips are already band-limited below 0.45 x the sample rate, so 15% faster barely aliases);
    2. shift: ``before_i`` zeros before the clip and ``after_i`` after it;
    3. noise: white noise at ``snr_i`` dB below the clip's RMS, over the whole shifted clip;
    4. log-mel of the zero-padded batch (a clip's frames are the same as alone, see ``log_mel``);
    5. band and time masks (SpecAugment), set to 0, the training mean.

    ``clips``: arrays, or rows of clips padded once (:meth:`PaddedRows.take` of the training split's
    :meth:`PaddedRows.of_arrays`): the same tensor without a loop over the clips.
    """
    rows = clips if isinstance(clips, PaddedRows) else PaddedRows.of_arrays(clips)
    b, hop, lengths = len(rows), cfg.hop, rows.lengths  # lengths (B,)
    source = F.pad(rows.ids, (0, 1))  # (B, longest + 1)
    factor = 1 + cfg.speed * (2 * torch.rand(b, generator=g) - 1)  # (B,)
    new_len = (lengths / factor).floor().long().clamp(min=1)
    most = int(cfg.shift * cfg.sample_rate) + 1
    before, after = torch.randint(most, (2, b), generator=g) if cfg.shift else torch.zeros(2, b, dtype=torch.long)
    total = before + new_len + after  # (B,) samples after augmentation
    k = torch.arange(int(total.max()))  # output sample index
    j = k[None, :] - before[:, None]  # (B, N) index into the sped-up clip
    inside = (j >= 0) & (j < new_len[:, None])
    pos = j.clamp(min=0) * factor[:, None]  # (B, N) where it reads the original clip
    lo = pos.floor().long().clamp(max=source.size(1) - 2)
    frac = pos - lo
    x = (source.gather(1, lo) * (1 - frac) + source.gather(1, lo + 1) * frac) * inside  # (B, N)
    noisy = torch.rand(b, generator=g) < cfg.noise
    snr_db = cfg.snr_low + (cfg.snr_high - cfg.snr_low) * torch.rand(b, generator=g)
    rms = (source.pow(2).sum(1) / lengths).sqrt()
    scale = torch.where(noisy, rms / 10 ** (snr_db / 20), torch.zeros(b))  # (B,)
    x = x + torch.randn(x.shape, generator=g) * scale[:, None] * (k[None, :] < total[:, None])
    frames = audio.log_mel(x, cfg.sample_rate, cfg.n_fft, hop, cfg.n_mels, meta["max_frames"])  # (B, T, M)
    n_frames = (total // hop + 1).clamp(max=frames.size(1))  # (B,)
    t = torch.arange(frames.size(1))
    mask = t[None, :] < n_frames[:, None]  # (B, T)
    if meta.get("clip_norm"):
        frames = frames - (frames * mask[..., None]).sum(1, keepdim=True) / n_frames[:, None, None]
    frames = (frames - torch.tensor(meta["mean"])) / torch.tensor(meta["std"])
    keep = mask[..., None]  # (B, T, 1)
    if cfg.freq_mask:
        width = torch.randint(cfg.freq_mask + 1, (b, 1, 1), generator=g)
        start = (torch.rand(b, 1, 1, generator=g) * (cfg.n_mels - width + 1)).long()
        band = torch.arange(cfg.n_mels)
        keep = keep & ~((band >= start) & (band < start + width))  # (B, T, M)
    if cfg.time_mask:
        width = torch.randint(cfg.time_mask + 1, (b, 1), generator=g)
        width = torch.where(n_frames[:, None] > 2 * cfg.time_mask, width, 0)  # short clips keep every frame
        start = (torch.rand(b, 1, generator=g) * (n_frames[:, None] - width + 1)).long()
        keep = keep & ~((t >= start) & (t < start + width))[..., None]
    return frames * keep, mask.long()
