"""Log-mel features of prepared clips (:func:`tinyformers.data.audio.prepare`), standardised with a run's
statistics."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from tinyformers.data import audio


def log_mel_frames(samples: np.ndarray, meta: dict[str, Any]) -> Tensor:
    """Prepared samples -> log-mel frames (T, n_mels) with the run's settings. With ``clip_norm`` each band's
    mean over the clip is subtracted (cepstral mean normalisation): a fixed spectral colouring — microphone,
    synthesiser, vocal tract — is a constant in log-mel and goes away."""
    frames = audio.log_mel(samples, meta["sample_rate"], meta["n_fft"], meta["hop"], meta["n_mels"], meta["max_frames"])
    return frames - frames.mean(0) if meta.get("clip_norm") else frames


def features_of(samples: np.ndarray, meta: dict[str, Any]) -> Tensor:
    """Prepared samples -> log-mel frames standardised with the training set's per-band mean and std."""
    return (log_mel_frames(samples, meta) - torch.tensor(meta["mean"])) / torch.tensor(meta["std"])


def pooled_stats(frames: list[Tensor]) -> np.ndarray:
    """Per-band mean and standard deviation over time, (N, 2 * n_mels): features without order in time."""
    return np.stack([torch.cat([f.mean(0), f.std(0, unbiased=False)]).numpy() for f in frames])
