"""Spoken digits: which of "zero".."nine" does a clip say? A transformer encoder over log-mel frames.

The source project (TransformerFromScratch, ``../shared/docs/seed-notes.md``) trained on the Free Spoken
Digit Dataset (97.1% test accuracy, 26 minutes on a GPU) and never masked the padding of short clips: a
clip's prediction changed with the length of the clips batched with it. Here the padding is masked in
attention and pooling (a test checks that extra padding leaves the logits unchanged).

Data (:mod:`tinyformers.data.audio`): no spoken-digit corpus is installed here, so espeak-ng and flite
synthesise one. The split is by **voice**: espeak-ng language voices (accents) and voice variants (timbre)
are divided 70/10/20 into train/validation/test, so no test speaker's accent or timbre is heard in
training; flite's five voices, a different kind of synthesiser, are a second test (``test_accuracy_flite``,
a speaker shift). ``--set folder=PATH`` trains on your own WAVs instead (one sub-folder per label, e.g. the
Free Spoken Digit Dataset sorted by digit), split 70/10/20 per label.

Features: a 32 ms Hann window every 10 ms (``n_fft=256``, ``hop=80`` at 8 kHz), 40 log-mel
bands, standardised per band with the training set's mean and standard deviation.

Model: :class:`~tinyformers.core.models.SpectrogramTransformer` (the Audio Spectrogram Transformer idea of Gong
et al. 2021 in its simplest form): every ``patch_frames`` frames (40 ms) are one token, sinusoidal positions, a
pre-norm encoder with a key padding mask, mean pooling over the real tokens, a linear head.

Augmentation (:func:`~tinyformers.data.augment.augment_clips`, training only): a random playback speed, random
silence before and after the clip, white noise, and SpecAugment band and time masks (Park et al. 2019).

Baseline: logistic regression on the per-band mean and standard deviation of the same normalised log-mel
frames (no order in time), fitted on the same training clips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinyformers.core.models import SpectrogramConfig, SpectrogramTransformer
from tinyformers.data import audio, padding
from tinyformers.data.augment import augment_clips
from tinyformers.data.images import stratified_split
from tinyformers.data.spectrograms import features_of, log_mel_frames, pooled_stats
from tinyformers.engine.task import Batch, ModelSizes, Predicts, Scorecard, Task, TaskData, TrainConfig
from tinyformers.errors import UserError
from tinyformers.tasks._metrics import confusion, top_classes
from tinyformers.viz.figures import plot_confusion, plot_log_mels


@dataclass
class SpokenDigitsConfig(ModelSizes, TrainConfig):
    """Attributes:
    folder: your own WAVs, one sub-folder per label (instead of the synthetic corpus); split 70/10/20 per label.
    data_seed: fixes the voice split and the random speeds/pitches/variants of the corpus (or the folder split).
    takes: training clips per (language voice, digit); eval_takes: the same for validation and test.
    languages: keep only this many language voices per split (0 = all 34/6/10; small values for tests).
    flite: also synthesise the flite test split (needs ``flite``). workers: synthesiser processes at a time.
    sample_rate: Hz every clip is resampled to (8000: the Free Spoken Digit Dataset's rate).
    n_fft, hop, n_mels: the STFT window and step (samples) and the mel bands. max_seconds: longer clips are
        cut to their first ``max_seconds`` (after trimming silence).
    patch_frames: frames per token. d_model, n_heads, n_layers, d_ff, dropout, positions: the encoder.
    clip_norm: subtract each clip's mean log-mel per band before standardising (cepstral mean normalisation).
    speed: training clips are played at a random speed in [1 - speed, 1 + speed] (0 = off), which moves
        tempo, pitch and formants together, like a shorter or longer vocal tract.
    shift: up to this many seconds of silence added before and after a training clip (0 = off).
    noise: probability of adding white noise to a training clip, at an SNR uniform in [snr_low, snr_high] dB.
    freq_mask, time_mask: widest SpecAugment band (mel bands) and time (frames) mask, one each (0 = off).
    label_smoothing: Szegedy et al. 2016.
    """

    folder: str = ""
    data_seed: int = 0
    takes: int = 20
    eval_takes: int = 8
    languages: int = 0
    flite: bool = True
    workers: int = 2
    sample_rate: int = 8000
    n_fft: int = 256
    hop: int = 80
    n_mels: int = 40
    max_seconds: float = 2.0
    patch_frames: int = 4
    d_model: int = 96
    n_layers: int = 3
    d_ff: int = 192
    dropout: float = 0.1
    positions: str = "sinusoidal"
    clip_norm: bool = False
    speed: float = 0.15
    shift: float = 0.15
    noise: float = 0.5
    snr_low: float = 10.0
    snr_high: float = 40.0
    freq_mask: int = 6
    time_mask: int = 10
    label_smoothing: float = 0.1
    max_steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.05
    beta2: float = 0.98
    eval_every: int = 250

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = {
            "takes": self.takes >= 1,
            "eval_takes": self.eval_takes >= 1,
            "languages": self.languages >= 0,
            "workers": self.workers >= 1,
            "sample_rate": 4000 <= self.sample_rate <= 48000,
            "n_fft": self.n_fft >= 16,
            "hop": 1 <= self.hop <= self.n_fft,
            "n_mels": 1 <= self.n_mels <= self.n_fft // 2,
            "max_seconds": self.max_seconds > 0,
            "patch_frames": self.patch_frames >= 1,
            "dropout": 0 <= self.dropout < 1,
            "speed": 0 <= self.speed < 0.5,
            "shift": self.shift >= 0,
            "noise": 0 <= self.noise <= 1,
            "snr_high": self.snr_high >= self.snr_low,
            "freq_mask": 0 <= self.freq_mask < self.n_mels,
            "time_mask": self.time_mask >= 0,
            "label_smoothing": 0 <= self.label_smoothing < 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(", ".join(f"{k}={getattr(self, k)!r} is out of range" for k in bad))
        if self.positions not in ("learned", "sinusoidal"):
            raise ValueError(f"positions={self.positions!r}: choose learned or sinusoidal")

    @property
    def max_frames(self) -> int:
        return int(self.max_seconds * self.sample_rate) // self.hop + 1


class SpokenDigitsTask(Task[SpokenDigitsConfig], Predicts):
    name = "spoken-digits"
    summary = "spoken digits (synthesised by espeak-ng/flite, or your WAVs): log-mel transformer, unseen voices"
    Config: ClassVar[type[TrainConfig]] = SpokenDigitsConfig
    predict_options: ClassVar[tuple[str, ...]] = ()
    metric: ClassVar[str] = "accuracy"
    maximize: ClassVar[bool] = True
    scorecard: ClassVar[Scorecard | None] = Scorecard(
        "test_accuracy",
        baselines=("baseline_accuracy",),
        quick=(
            "languages=1",
            "takes=2",
            "eval_takes=1",
            "d_model=32",
            "n_heads=2",
            "n_layers=1",
            "d_ff=64",
            "batch_size=16",
        ),
        summary="Which digit a clip says, for espeak-ng voices (accent and timbre) never heard in training, "
        "against logistic regression on time-pooled log-mel bands of the same clips.",
    )

    def data_status(self, cfg: SpokenDigitsConfig) -> str | None:
        if cfg.folder:
            if not Path(cfg.folder).is_dir():
                return f"folder={cfg.folder}: no such directory (expected one sub-folder of WAV files per label)"
            return None
        if not audio.espeak_available():
            return audio.INSTALL_HINT
        if cfg.flite and not audio.flite_available():
            return "flite is not installed (the speaker-shift test): sudo apt-get install flite, or --set flite=false"
        return None

    def _load(self, cfg: SpokenDigitsConfig) -> tuple[dict[str, tuple[list[np.ndarray], np.ndarray]], list[str]]:
        if cfg.folder:
            clips, labels, classes = audio.load_folder(cfg.folder, cfg.sample_rate)
            idx = stratified_split(labels, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=cfg.data_seed)
            return {s: ([clips[i] for i in rows], labels[rows]) for s, rows in idx.items()}, classes
        status = self.data_status(cfg)
        if status:
            raise UserError(status)
        takes = {"train": cfg.takes, "val": cfg.eval_takes, "test": cfg.eval_takes}
        corpus = audio.digit_corpus(cfg.sample_rate, takes, cfg.data_seed, cfg.languages, cfg.flite, cfg.workers)
        return {s: (clips, labels) for s, (clips, labels, _) in corpus.items()}, [str(d) for d in range(10)]

    def data(self, cfg: SpokenDigitsConfig, meta: dict[str, Any] | None = None) -> TaskData:
        raw, classes = self._load(cfg)
        if meta and meta["classes"] != classes:
            raise UserError(f"{cfg.folder or 'the corpus'}: labels {classes} differ from the run's {meta['classes']}")
        for split, (clips, _) in raw.items():
            if not clips:
                where = cfg.folder or "the corpus"
                raise UserError(f"{where}: no clips for the {split} split (each label needs at least 5 clips)")
        if meta is None:
            settings = {
                k: getattr(cfg, k) for k in ("sample_rate", "n_fft", "hop", "n_mels", "max_frames", "clip_norm")
            }
            frames = torch.cat([log_mel_frames(c, settings) for c in raw["train"][0]])  # (all frames, M)
            meta = {
                "source": "folder" if cfg.folder else "synthetic",
                "classes": classes,
                **settings,
                "mean": frames.mean(0).tolist(),
                "std": frames.std(0).clamp(min=1e-3).tolist(),
                "clips": {s: len(v[1]) for s, v in raw.items()},
            }
        splits: dict[str, Any] = {"train_padded": padding.PaddedRows.of_arrays(raw["train"][0])}  # batch() indexes it
        for split, (clips, labels) in raw.items():
            splits[split] = (clips, torch.as_tensor(labels, dtype=torch.long))
            if split != "train":  # held-out features are fixed: computed once
                splits[f"{split}_features"] = [features_of(c, meta) for c in clips]
        return TaskData(splits, meta)

    def batch(self, data: TaskData, cfg: SpokenDigitsConfig, generator: torch.Generator) -> Batch:
        labels = data.splits["train"][1]
        idx = torch.randint(len(labels), (cfg.batch_size,), generator=generator)
        features, mask = augment_clips(data.splits["train_padded"].take(idx), cfg, data.meta, generator)
        return {"features": features, "attention_mask": mask, "labels": labels[idx]}

    def loss(self, model: nn.Module, batch: Batch, cfg: SpokenDigitsConfig) -> Tensor:
        logits = model(batch["features"], batch["attention_mask"]).logits  # (B, classes)
        return F.cross_entropy(logits, batch["labels"], label_smoothing=cfg.label_smoothing)

    def model(self, cfg: SpokenDigitsConfig, meta: dict[str, Any]) -> nn.Module:
        return SpectrogramTransformer(
            SpectrogramConfig(
                n_mels=meta["n_mels"],
                patch_frames=cfg.patch_frames,
                num_classes=len(meta["classes"]),
                **cfg.sizes(),
                positions=cfg.positions,
                max_len=math.ceil(meta["max_frames"] / cfg.patch_frames),
                activation="gelu",
                norm_first=True,
            )
        )

    @staticmethod
    def logits(model: nn.Module, frames: list[Tensor]) -> Tensor:
        assert isinstance(model, SpectrogramTransformer)  # the one model this task builds
        return model.clip_logits(frames)

    def _baseline(self, data: TaskData) -> dict[str, Tensor]:
        """Logistic regression on time-pooled bands, fitted once on the training clips; its predictions."""
        if "baseline" not in data.splits:
            from sklearn.linear_model import LogisticRegression  # heavy: loaded when the baseline is fitted
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            clips, labels = data.splits["train"]
            train = pooled_stats([features_of(c, data.meta) for c in clips])
            fit = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(train, labels.numpy())
            held_out = [s for s in ("val", "test", "flite") if f"{s}_features" in data.splits]
            pooled = {s: pooled_stats(data.splits[f"{s}_features"]) for s in held_out}
            data.splits["baseline"] = {s: torch.as_tensor(fit.predict(x)) for s, x in pooled.items()}
        return data.splits["baseline"]

    def evaluate(self, model: nn.Module, data: TaskData, split: str, cfg: SpokenDigitsConfig) -> dict[str, float]:
        baseline = self._baseline(data)
        names = [split, *(["flite"] if split == "test" and "flite_features" in data.splits else [])]
        metrics: dict[str, float] = {}
        for name in names:
            y = data.splits[name][1]
            logits = self.logits(model, data.splits[f"{name}_features"])
            suffix = "" if name == split else f"_{name}"
            metrics[f"{split}_loss{suffix}"] = F.cross_entropy(logits, y).item()
            metrics[f"{split}_accuracy{suffix}"] = (logits.argmax(-1) == y).float().mean().item()
            metrics[f"baseline_accuracy{suffix}"] = (baseline[name] == y).float().mean().item()
        return metrics

    def predict(
        self, model: nn.Module, cfg: SpokenDigitsConfig, meta: dict[str, Any], inputs: list[str], **options: Any
    ) -> list[str]:
        """For each WAV file: the label, then the three most probable labels with their probabilities."""
        frames = [features_of(audio.prepare(*audio.read_wav(p), meta["sample_rate"]), meta) for p in inputs]
        model.eval()
        with torch.no_grad():
            probs = self.logits(model, frames).softmax(-1)
        return top_classes(probs, meta["classes"])

    def plots(self, model: nn.Module, data: TaskData, cfg: SpokenDigitsConfig, run_dir: str) -> list[str]:
        """Confusion matrices of the test split (and flite's), and one test clip's log-mel per label."""
        model.eval()
        classes = data.meta["classes"]
        paths = []
        for split in [s for s in ("test", "flite") if f"{s}_features" in data.splits]:
            with torch.no_grad():
                pred = self.logits(model, data.splits[f"{split}_features"]).argmax(-1)
            path = str(Path(run_dir) / f"confusion{'' if split == 'test' else '_flite'}.png")
            plot_confusion(confusion(data.splits[split][1], pred, len(classes)), classes, path)
            paths.append(path)
        path = str(Path(run_dir) / "log_mel.png")
        plot_log_mels(data.splits["test_features"], data.splits["test"][1], classes, data.meta, path)
        return [*paths, path]


TASKS = (SpokenDigitsTask,)
