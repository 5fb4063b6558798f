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

Model: the Audio Spectrogram Transformer idea (Gong et al. 2021) in its simplest form: every
``patch_frames`` consecutive frames (40 ms) are one token (a linear map of ``patch_frames x n_mels`` numbers to
``d_model``, like ViT's patches and PatchTST's windows), sinusoidal positions, the core pre-norm
:class:`~tinyformers.core.blocks.EncoderStack` with a key padding mask, mean pooling over the real tokens, a
linear head.

Augmentation (training only, on the whole batch at once): a random playback speed (tempo, pitch and
formants together, like another vocal tract), random silence before and after the clip (time shift),
white noise at a random signal-to-noise ratio, and SpecAugment-style band and time masks (Park et al. 2019).

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

from tinyformers.core.blocks import CoreConfig, EncoderStack
from tinyformers.core.models.base import ModelOutput, init_gpt2, key_padding_from_attention_mask
from tinyformers.core.models.encoder import mean_pool
from tinyformers.core.positions import make_positions
from tinyformers.data import audio
from tinyformers.engine.task import Scorecard, Task, TaskData, TrainConfig
from tinyformers.errors import UserError

DIGITS = [str(d) for d in range(10)]


@dataclass
class SpokenDigitsConfig(TrainConfig):
    """Attributes:
    folder: your own WAVs, one sub-folder per label (instead of the synthetic corpus); split 70/10/20 per label.
    data_seed: fixes the voice split and the random speeds/pitches/variants of the corpus (or the folder split).
    takes: training clips per (language voice, digit); eval_takes: the same for validation and test.
    languages: keep only this many language voices per split (0 = all 34/6/10; small values for tests).
    flite: also synthesise the flite test split (needs ``flite``). workers: synthesiser processes at a time.
    sample_rate: Hz every clip is resampled to (8000: the Free Spoken Digit Dataset's rate).
    n_fft, hop, n_mels: the STFT window and step (samples) and the mel bands. max_seconds: longer clips are
        cut to their first ``max_seconds`` (after trimming silence).
    patch_frames: consecutive frames per token. d_model, n_heads, n_layers, d_ff, dropout, positions: the
        encoder.
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
    n_heads: int = 4
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


# --- the model ---------------------------------------------------------------------------------------------
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
        self.dropout = nn.Dropout(cfg.dropout)
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


# --- features ----------------------------------------------------------------------------------------------
def log_mel_frames(samples: np.ndarray, meta: dict[str, Any]) -> Tensor:
    """Prepared samples -> log-mel frames (T, n_mels) with the run's settings. With ``clip_norm`` each band's
    mean over the clip is subtracted (cepstral mean normalisation): a fixed spectral colouring — microphone,
    synthesiser, vocal tract — is a constant in log-mel and goes away."""
    frames = audio.log_mel(samples, meta["sample_rate"], meta["n_fft"], meta["hop"], meta["n_mels"], meta["max_frames"])
    return frames - frames.mean(0) if meta.get("clip_norm") else frames


def features_of(samples: np.ndarray, meta: dict[str, Any]) -> Tensor:
    """Prepared samples -> log-mel frames standardised with the training set's per-band mean and std."""
    return (log_mel_frames(samples, meta) - torch.tensor(meta["mean"])) / torch.tensor(meta["std"])


def pad_batch(frames: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Clips of different lengths -> zero-padded (B, T_max, M) and the attention mask (B, T_max)."""
    lengths = torch.tensor([len(f) for f in frames])
    padded = nn.utils.rnn.pad_sequence(frames, batch_first=True)  # zeros after each clip
    mask = (torch.arange(padded.size(1))[None, :] < lengths[:, None]).long()
    return padded, mask


def pooled_stats(frames: list[Tensor]) -> np.ndarray:
    """The baseline's features: per-band mean and standard deviation over time, (N, 2 * n_mels)."""
    return np.stack([torch.cat([f.mean(0), f.std(0, unbiased=False)]).numpy() for f in frames])


class SpokenDigitsTask(Task):
    name = "spoken-digits"
    summary = "spoken digits (synthesised by espeak-ng/flite, or your WAVs): log-mel transformer, unseen voices"
    Config: ClassVar[type[TrainConfig]] = SpokenDigitsConfig
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

    def data_status(self, cfg: SpokenDigitsConfig) -> str | None:  # type: ignore[override]
        if cfg.folder:
            if not Path(cfg.folder).is_dir():
                return f"folder={cfg.folder}: no such directory (expected one sub-folder of WAV files per label)"
            return None
        if not audio.espeak_available():
            return audio.INSTALL_HINT
        if cfg.flite and not audio.flite_available():
            return "flite is not installed (the speaker-shift test): sudo apt-get install flite, or --set flite=false"
        return None

    # --- data ------------------------------------------------------------------------------------------
    def _load(self, cfg: SpokenDigitsConfig) -> tuple[dict[str, tuple[list[np.ndarray], np.ndarray]], list[str]]:
        if cfg.folder:
            clips, labels, classes = audio.load_folder(cfg.folder, cfg.sample_rate)
            from tinyformers.data.images import stratified_split

            idx = stratified_split(labels, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=cfg.data_seed)
            return {s: ([clips[i] for i in rows], labels[rows]) for s, rows in idx.items()}, classes
        status = self.data_status(cfg)
        if status:
            raise UserError(status)
        takes = {"train": cfg.takes, "val": cfg.eval_takes, "test": cfg.eval_takes}
        corpus = audio.digit_corpus(cfg.sample_rate, takes, cfg.data_seed, cfg.languages, cfg.flite, cfg.workers)
        return {s: (clips, labels) for s, (clips, labels, _) in corpus.items()}, list(DIGITS)

    def data(self, cfg: SpokenDigitsConfig, meta: dict[str, Any] | None = None) -> TaskData:  # type: ignore[override]
        raw, classes = self._load(cfg)
        if meta and meta["classes"] != classes:
            raise UserError(f"{cfg.folder or 'the corpus'}: labels {classes} differ from the run's {meta['classes']}")
        for split, (clips, _) in raw.items():
            if not clips:
                where = cfg.folder or "the corpus"
                raise UserError(f"{where}: no clips for the {split} split (each label needs at least 5 clips)")
        if meta is None:
            keys = ("sample_rate", "n_fft", "hop", "n_mels", "max_frames", "clip_norm")
            settings = {k: getattr(cfg, k) for k in keys}
            frames = torch.cat([log_mel_frames(c, settings) for c in raw["train"][0]])  # (all frames, M)
            meta = {
                "source": "folder" if cfg.folder else "synthetic",
                "classes": classes,
                **settings,
                "mean": frames.mean(0).tolist(),
                "std": frames.std(0).clamp(min=1e-3).tolist(),
                "clips": {s: len(v[1]) for s, v in raw.items()},
            }
        splits: dict[str, Any] = {}
        for split, (clips, labels) in raw.items():
            splits[split] = (clips, torch.as_tensor(labels, dtype=torch.long))
            if split != "train":  # held-out features are fixed: computed once
                splits[f"{split}_features"] = [features_of(c, meta) for c in clips]
        return TaskData(splits, meta)

    def batch(self, data: TaskData, cfg: SpokenDigitsConfig, generator: torch.Generator) -> dict[str, Any]:  # type: ignore[override]
        clips, labels = data.splits["train"]
        idx = torch.randint(len(labels), (cfg.batch_size,), generator=generator)
        features, mask = self.augment([clips[i] for i in idx.tolist()], cfg, data.meta, generator)
        return {
            "features": features,
            "attention_mask": mask,
            "labels": labels[idx],
            "label_smoothing": cfg.label_smoothing,
        }

    @staticmethod
    def augment(
        clips: list[np.ndarray], cfg: SpokenDigitsConfig, meta: dict[str, Any], g: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """A training batch: standardised, augmented frames (B, T, M), zero past each clip, and the mask (B, T).

        Done on the whole batch at once, in the order a microphone would see it:

        1. speed: clip i is read at ``factor_i`` samples per output sample (linear interpolation; the
           clips are already band-limited below 0.45 x the sample rate, so 15% faster barely aliases);
        2. shift: ``before_i`` zeros before the clip and ``after_i`` after it;
        3. noise: white noise at ``snr_i`` dB below the clip's RMS, over the whole shifted clip;
        4. log-mel of the zero-padded batch (a clip's frames are the same as alone, see ``log_mel``);
        5. band and time masks (SpecAugment), set to 0, the training mean.
        """
        b, hop = len(clips), cfg.hop
        lengths = torch.tensor([len(c) for c in clips])  # (B,)
        source = F.pad(nn.utils.rnn.pad_sequence([torch.from_numpy(c) for c in clips], batch_first=True), (0, 1))
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

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> Tensor:
        logits = model(batch["features"], batch["attention_mask"]).logits  # (B, classes)
        return F.cross_entropy(logits, batch["labels"], label_smoothing=batch["label_smoothing"])

    # --- model -----------------------------------------------------------------------------------------
    def model(self, cfg: SpokenDigitsConfig, meta: dict[str, Any]) -> nn.Module:  # type: ignore[override]
        return SpectrogramTransformer(
            SpectrogramConfig(
                n_mels=meta["n_mels"],
                patch_frames=cfg.patch_frames,
                num_classes=len(meta["classes"]),
                d_model=cfg.d_model,
                n_heads=cfg.n_heads,
                n_layers=cfg.n_layers,
                d_ff=cfg.d_ff,
                dropout=cfg.dropout,
                positions=cfg.positions,
                max_len=math.ceil(meta["max_frames"] / cfg.patch_frames),
                activation="gelu",
                norm_first=True,
            )
        )

    # --- evaluation ------------------------------------------------------------------------------------
    @staticmethod
    def logits(model: nn.Module, frames: list[Tensor], chunk: int = 256) -> Tensor:
        """Logits (N, classes) of standardised clips, batched by length (less padding; masked anyway)."""
        device = next(model.parameters()).device
        order = sorted(range(len(frames)), key=lambda i: len(frames[i]))
        out = torch.empty(len(frames), model.config.num_classes)
        for start in range(0, len(order), chunk):
            rows = order[start : start + chunk]
            features, mask = pad_batch([frames[i] for i in rows])
            out[rows] = model(features.to(device), mask.to(device)).logits.float().cpu()
        return out

    def _baseline(self, data: TaskData) -> dict[str, Tensor]:
        """Logistic regression on time-pooled bands, fitted once on the training clips; its predictions."""
        if "baseline" not in data.splits:
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            clips, labels = data.splits["train"]
            train = pooled_stats([features_of(c, data.meta) for c in clips])
            fit = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(train, labels.numpy())
            splits = [s for s in ("val", "test", "flite") if f"{s}_features" in data.splits]
            data.splits["baseline"] = {
                s: torch.as_tensor(fit.predict(pooled_stats(data.splits[f"{s}_features"]))) for s in splits
            }
        return data.splits["baseline"]

    def evaluate(self, model: nn.Module, data: TaskData, split: str, cfg: SpokenDigitsConfig) -> dict[str, float]:  # type: ignore[override]
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

    # --- using it --------------------------------------------------------------------------------------
    def predict(self, model: nn.Module, cfg: SpokenDigitsConfig, meta: dict[str, Any], inputs: list[str]) -> list[str]:  # type: ignore[override]
        """For each WAV file: the label, then the three most probable labels with their probabilities."""
        frames = [features_of(audio.prepare(*audio.read_wav(p), meta["sample_rate"]), meta) for p in inputs]
        model.eval()
        with torch.no_grad():
            probs = self.logits(model, frames).softmax(-1)
        classes = meta["classes"]
        lines = []
        for p in probs:
            top = p.topk(min(3, len(classes)))
            pairs = zip(top.values.tolist(), top.indices.tolist(), strict=True)
            ranked = ", ".join(f"{classes[i]} {v:.3f}" for v, i in pairs)
            lines.append(f"{classes[int(top.indices[0])]}\t({ranked})")
        return lines

    def plots(self, model: nn.Module, data: TaskData, cfg: SpokenDigitsConfig, run_dir: str) -> list[str]:  # type: ignore[override]
        """Confusion matrices of the test split (and flite's), and one test clip's log-mel per label."""
        from tinyformers.tasks.vision import confusion, plot_confusion

        model.eval()
        classes = data.meta["classes"]
        paths = []
        for split in ("test", "flite"):
            if f"{split}_features" not in data.splits:
                continue
            with torch.no_grad():
                pred = self.logits(model, data.splits[f"{split}_features"]).argmax(-1)
            path = str(Path(run_dir) / f"confusion{'' if split == 'test' else '_flite'}.png")
            plot_confusion(confusion(data.splits[split][1], pred, len(classes)), classes, path)
            paths.append(path)
        path = str(Path(run_dir) / "log_mel.png")
        plot_log_mels(data.splits["test_features"], data.splits["test"][1], classes, data.meta, path)
        return [*paths, path]


def plot_log_mels(frames: list[Tensor], labels: Tensor, classes: list[str], meta: dict[str, Any], path: str) -> None:
    """The first test clip of every label as a standardised log-mel image (time right, frequency up)."""
    from tinyformers.viz.plots import plt

    shown = [(c, frames[int(torch.nonzero(labels == i)[0])]) for i, c in enumerate(classes) if (labels == i).any()]
    cols = min(5, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    seconds_per_frame = meta["hop"] / meta["sample_rate"]
    for ax, (label, f) in zip(axes.flat, shown, strict=False):
        ax.imshow(f.T.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=-2.5, vmax=2.5)
        ax.set_title(f"{label} ({len(f) * seconds_per_frame:.2f} s)", fontsize=9)
    fig.suptitle(f"standardised log-mel, {meta['n_mels']} bands up to {meta['sample_rate'] // 2} Hz", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


TASKS = (SpokenDigitsTask,)
