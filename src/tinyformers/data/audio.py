"""Audio for the ``spoken-digits`` task: WAV files, resampling, log-mel spectrograms and a synthetic corpus.

No spoken-digit corpus is installed here, so :func:`digit_corpus` makes one: the speech synthesisers
``espeak-ng`` (formant synthesis; many language voices x voice variants x speeds x pitches) and ``flite``
(diphone and unit-selection voices kal, kal16, awb, rms, slt) say "zero".."nine". Every clip is cached
as the synthesiser wrote it in ``$TINYFORMERS_CACHE/spoken-digits/clips`` (default ``~/.cache/tinyformers``),
and the assembled corpus as one ``.npz`` named by a hash of the generation settings and the synthesiser
versions, so a second run reads one file and the same settings always give the same clips.

Everything else is plain numpy/torch: :func:`read_wav` uses the standard library's ``wave`` module (PCM
WAV, any rate, any channel count), :func:`resample` a windowed-sinc low-pass plus linear interpolation,
:func:`log_mel` ``torch.stft`` and the triangular mel filterbank of :func:`mel_filterbank`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import threading
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tinyformers.errors import UserError

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
INSTALL_HINT = (
    "the spoken-digits corpus is synthesised with espeak-ng, which is not installed: "
    "sudo apt-get install espeak-ng flite (or train on your own WAVs with --set folder=PATH, one sub-folder per label)"
)
CACHE_VERSION = 1

# espeak-ng language voices reading the English words. Three kinds, so that every split holds each kind:
# English accents; languages whose own spelling rules read the words (a Polish "seven", a Finnish "eight");
# and languages that switch to English rules for Latin-script words but keep their own voice and intonation.
# Left out: voices that spell words letter by letter (ja, he, ...) or read "two" as "te u be doble o" (es).
ENGLISH_VOICES = (
    "en-029",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-gb-x-rp",
    "en-us",
    "en-us-nyc",
)
NATIVE_VOICES = (
    "bs",
    "ca",
    "cs",
    "cy",
    "da",
    "eo",
    "et",
    "fi",
    "hr",
    "hu",
    "ia",
    "id",
    "is",
    "it",
    "lt",
    "lv",
    "ms",
    "nb",
    "nl",
    "pl",
    "pt-br",
    "ro",
    "sk",
    "sl",
    "sq",
    "sw",
    "tr",
)
SWITCHING_VOICES = ("ar", "bg", "cmn", "de", "el", "fa", "fr-fr", "hi", "hy", "ka", "ko", "ru", "ta", "uk", "vi")
# espeak-ng voice variants (timbre: formants, breathiness, pitch range); robots, whispers and effects left out
VARIANTS = (
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "m8",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "klatt",
    "klatt2",
    "klatt3",
    "adam",
    "Alex",
    "Alicia",
    "Andrea",
    "Andy",
    "Annie",
    "aunty",
    "belinda",
    "benjamin",
    "boris",
    "david",
    "ed",
    "edward",
    "Gene",
    "gustave",
    "Hugo",
    "iven",
    "Jacky",
    "john",
    "Lee",
    "linda",
    "max",
    "Michael",
    "Mike",
    "norbert",
    "paul",
    "pedro",
    "quincy",
    "rob",
    "robert",
    "sandro",
    "shelby",
    "steph",
    "travis",
    "victor",
    "zac",
    "grandma",
    "grandpa",
)
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
FLITE_STRETCHES = (0.8, 1.0, 1.25)  # flite's duration_stretch: fast, normal and slow speech


# --- WAV files ---------------------------------------------------------------------------------------------
def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """A PCM WAV file as mono float32 samples in [-1, 1] and its sample rate; channels are averaged.

    Anything else (not a WAV, compressed or floating-point WAV, no samples) is a :class:`UserError` naming
    the file.
    """
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as f:
            rate, channels, width, n = f.getframerate(), f.getnchannels(), f.getsampwidth(), f.getnframes()
            raw = f.readframes(n)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a WAV file") from None
    except (wave.Error, EOFError, OSError) as e:
        raise UserError(
            f"{path}: not a PCM WAV file ({str(e) or 'too short for a WAV header'}); "
            f"convert it, e.g. ffmpeg -i {path.name} -ac 1 -c:a pcm_s16le out.wav"
        ) from None
    if n == 0 or not raw:
        raise UserError(f"{path}: the WAV file holds no samples")
    if width == 1:  # 8-bit WAV is unsigned
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    elif width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768
    elif width == 3:  # 24-bit: sign-extend three little-endian bytes into an int32
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        x = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8).astype(np.float32) / 2**23
    elif width == 4:
        x = np.frombuffer(raw, "<i4").astype(np.float32) / 2**31
    else:
        raise UserError(f"{path}: {8 * width}-bit samples are not supported (8, 16, 24 or 32-bit PCM)")
    x = x[: len(x) // channels * channels].reshape(-1, channels).mean(axis=1)  # (N,) mono
    return x.astype(np.float32), rate


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> None:
    """Mono float samples in [-1, 1] as a 16-bit PCM WAV file."""
    pcm = (np.clip(samples, -1, 1) * 32767).round().astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


# --- signal processing -------------------------------------------------------------------------------------
def resample(x: np.ndarray, rate_in: int, rate_out: int, taps: int = 64) -> np.ndarray:
    """Change the sample rate: a Hann-windowed sinc low-pass below the lower Nyquist frequency (so that
    downsampling does not alias), then linear interpolation at the new sampling instants."""
    if rate_in == rate_out:
        return x.astype(np.float32)
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    cutoff = 0.45 * min(rate_in, rate_out) / rate_in  # cycles per input sample, a little below Nyquist
    if rate_out < rate_in:
        n = torch.arange(-taps, taps + 1, dtype=torch.float32)
        kernel = 2 * cutoff * torch.sinc(2 * cutoff * n) * torch.hann_window(2 * taps + 1, periodic=False)
        t = F.conv1d(t.view(1, 1, -1), (kernel / kernel.sum()).view(1, 1, -1), padding=taps).view(-1)
    n_out = max(1, round(len(x) * rate_out / rate_in))
    pos = torch.arange(n_out, dtype=torch.float64) * (rate_in / rate_out)  # output instants in input samples
    lo = pos.floor().long().clamp(max=len(t) - 1)
    hi = (lo + 1).clamp(max=len(t) - 1)
    frac = (pos - lo).float()
    return (t[lo] * (1 - frac) + t[hi] * frac).numpy()


def trim_silence(x: np.ndarray, rate: int, top_db: float = 40.0) -> np.ndarray:
    """Cut leading and trailing silence: keep the 10 ms frames from the first to the last one whose energy is
    within ``top_db`` of the loudest frame (plus one frame of margin each side)."""
    hop = max(1, rate // 100)
    n = len(x) // hop
    if n < 3:
        return x
    energy = (x[: n * hop].reshape(n, hop) ** 2).mean(1)
    loud = np.flatnonzero(10 * np.log10(energy + 1e-12) > 10 * np.log10(energy.max() + 1e-12) - top_db)
    start, stop = max(0, loud[0] - 1) * hop, min(len(x), (loud[-1] + 2) * hop)
    return x[start:stop]


def normalize_peak(x: np.ndarray) -> np.ndarray:
    """Scale to a peak of 1: loudness is a property of the microphone, not of the digit."""
    peak = float(np.abs(x).max()) if len(x) else 0.0
    return (x / peak).astype(np.float32) if peak > 0 else x.astype(np.float32)


def prepare(x: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """What every clip goes through before features, in training and in ``predict``: resample, trim, normalise."""
    return normalize_peak(trim_silence(resample(x, rate, target_rate), target_rate))


def hz_to_mel(f: Tensor) -> Tensor:
    """The HTK mel scale: ``m = 2595 log10(1 + f / 700)``."""
    return 2595 * torch.log10(1 + f / 700)


def mel_to_hz(m: Tensor) -> Tensor:
    return 700 * (10 ** (m / 2595) - 1)


@functools.lru_cache(maxsize=8)
def mel_filterbank(n_fft: int, n_mels: int, rate: int, f_min: float = 20.0, f_max: float | None = None) -> Tensor:
    """(n_fft // 2 + 1, n_mels) triangular filters, centres equally spaced in mel from ``f_min`` to ``f_max``.

    Filter ``m`` rises linearly from centre ``m - 1`` to centre ``m`` (weight 1) and falls to centre ``m + 1``;
    neighbours overlap by half, so the filters sum to 1 between the first and last centre.
    """
    f_max = f_max or rate / 2
    freqs = torch.linspace(0, rate / 2, n_fft // 2 + 1, dtype=torch.float64)  # (F,) bin centres in Hz
    edges = mel_to_hz(torch.linspace(hz_to_mel(torch.tensor(f_min)), hz_to_mel(torch.tensor(f_max)), n_mels + 2))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]  # (M,) each
    rising = (freqs[:, None] - lower) / (centre - lower)  # (F, M)
    falling = (upper - freqs[:, None]) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0).float()


def log_mel(x: np.ndarray | Tensor, rate: int, n_fft: int, hop: int, n_mels: int, max_frames: int = 0) -> Tensor:
    """Log-mel spectrogram of mono samples (N,) -> (T, n_mels), or of a batch (B, N) -> (B, T, n_mels):
    ``log(mel_filterbank^T |STFT|^2 + 1e-6)``.

    Hann window of ``n_fft`` samples every ``hop`` samples, frames centred on ``t * hop`` with zeros beyond
    both ends (``center=True, pad_mode='constant'``), so ``T = N // hop + 1`` and a clip's frames are the
    same alone or zero-padded in a batch. With ``max_frames`` only the first ``max_frames`` frames are kept.
    """
    t = torch.as_tensor(x, dtype=torch.float32)
    window = torch.hann_window(n_fft, device=t.device)
    spec = torch.stft(t, n_fft, hop, window=window, center=True, pad_mode="constant", return_complex=True)
    power = spec.real**2 + spec.imag**2  # (..., F, T)
    mel = mel_filterbank(n_fft, n_mels, rate).to(t.device).T @ power  # (..., M, T)
    out = torch.log(mel + 1e-6).transpose(-1, -2)  # (..., T, M)
    return out[..., :max_frames, :] if max_frames else out


# --- user folders ------------------------------------------------------------------------------------------
def load_folder(directory: str | Path, rate: int) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """A user's labelled clips ``directory/<label>/<clip>.wav`` (labels = sub-folder names, sorted), each
    prepared at ``rate``. Empty label folders, files that are not ``.wav`` and unreadable WAVs are a
    :class:`UserError` naming the folder or file; hidden files are skipped."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"{directory}: no such directory (expected one sub-folder of WAV files per label)")
    classes = sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise UserError(f"{directory}: found {len(classes)} label sub-folder(s); a classifier needs at least 2")
    clips, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (directory / name).iterdir() if not p.name.startswith("."))
        if not files:
            raise UserError(f"{directory / name}: empty label folder (put its .wav clips there)")
        for f in files:
            if f.suffix.lower() != ".wav":
                raise UserError(f"{f}: not a .wav file; convert it to WAV or move it out of {directory}")
            samples, r = read_wav(f)
            clips.append(prepare(samples, r, rate))
            labels.append(label)
    return clips, np.array(labels, dtype=np.int64), classes


# --- the synthetic corpus ----------------------------------------------------------------------------------
def cache_dir() -> Path:
    return Path(os.environ.get("TINYFORMERS_CACHE", Path.home() / ".cache" / "tinyformers")) / "spoken-digits"


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def flite_available() -> bool:
    return shutil.which("flite") is not None


@dataclass(frozen=True)
class Clip:
    """One synthesised utterance. engine 'espeak-ng': voice = language, variant, speed in words per minute,
    pitch 0..99. engine 'flite': voice, stretch = duration_stretch (speed and pitch unused)."""

    engine: str
    voice: str
    word: str
    variant: str = ""
    speed: int = 0
    pitch: int = 0
    stretch: float = 1.0

    @property
    def speaker(self) -> str:
        return f"{self.voice}+{self.variant}" if self.variant else self.voice

    def file_name(self) -> str:
        if self.engine == "flite":
            return f"flite/{self.voice}_d{self.stretch:.2f}_{self.word}.wav"
        return f"espeak-ng/{self.voice}+{self.variant}_s{self.speed}_p{self.pitch}_{self.word}.wav"

    def command(self, out: Path) -> list[str]:
        if self.engine == "flite":
            stretch = ["--setf", f"duration_stretch={self.stretch}"]
            return ["flite", "-voice", self.voice, *stretch, "-t", self.word, "-o", str(out)]
        voice = f"{self.voice}+{self.variant}"
        return ["espeak-ng", "-v", voice, "-s", str(self.speed), "-p", str(self.pitch), "-w", str(out), self.word]


def split_voices(names: tuple[str, ...], fractions: dict[str, float], seed: int) -> dict[str, list[str]]:
    """Divide ``names`` into disjoint groups in the given fractions (at least one each), fixed by ``seed``."""
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    out, start = {}, 0
    counts = {k: max(1, round(f * len(names))) for k, f in fractions.items() if k != "train"}
    for split, k in counts.items():
        out[split] = sorted(order[start : start + k])
        start += k
    out["train"] = sorted(order[start:])
    return out


def espeak_plan(takes: dict[str, int], seed: int, languages: int = 0) -> dict[str, list[Clip]]:
    """The espeak-ng clips of each split. Language voices and voice variants are both split 70/10/20 into
    train/val/test, so a test speaker (language + variant) has neither its accent nor its timbre in training.
    Each (language, digit) is said ``takes[split]`` times with a random variant of the split, speed (120..240
    words per minute) and pitch (20..80). ``languages`` > 0 keeps only that many languages per split (tests)."""
    fractions = {"train": 0.7, "val": 0.1, "test": 0.2}
    langs: dict[str, list[str]] = {s: [] for s in fractions}
    for i, group in enumerate((ENGLISH_VOICES, NATIVE_VOICES, SWITCHING_VOICES)):
        for split, names in split_voices(group, fractions, seed + i).items():
            langs[split] += names
    variants = split_voices(VARIANTS, fractions, seed + 3)
    rng = np.random.default_rng(seed + 4)
    plan: dict[str, list[Clip]] = {}
    for split in fractions:
        chosen = langs[split][:languages] if languages else langs[split]
        plan[split] = [
            Clip(
                "espeak-ng",
                lang,
                word,
                variant=str(rng.choice(variants[split])),
                speed=int(rng.integers(120, 241)),
                pitch=int(rng.integers(20, 81)),
            )
            for lang in chosen
            for word in WORDS
            for _ in range(takes[split])
        ]
    return plan


def flite_plan() -> list[Clip]:
    """Every flite voice says every digit at three speeds: the speaker-shift test."""
    return [Clip("flite", v, w, stretch=s) for v in FLITE_VOICES for w in WORDS for s in FLITE_STRETCHES]


def _tool_version(tool: str) -> str:
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "missing"


def synthesize(clips: list[Clip], root: Path, workers: int = 2) -> list[Path]:
    """The WAV file of every clip under ``root``, running the synthesiser for those not cached yet (with
    ``workers`` processes at a time). Files appear atomically: an interrupted run leaves no torn WAV."""
    paths = [root / c.file_name() for c in clips]
    todo = list({p: (c, p) for c, p in zip(clips, paths, strict=True) if not p.exists()}.values())  # each once
    for sub in {p.parent for _, p in todo}:
        sub.mkdir(parents=True, exist_ok=True)

    def run(item: tuple[Clip, Path]) -> None:
        clip, path = item
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp.wav")
        result = subprocess.run(clip.command(tmp), capture_output=True, text=True, timeout=60)
        if result.returncode != 0 or not tmp.exists():
            tmp.unlink(missing_ok=True)
            raise UserError(f"{clip.engine} failed on {clip.speaker} {clip.word!r}: {result.stderr.strip()[:200]}")
        os.replace(tmp, path)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(run, todo))
    return paths


def digit_corpus(
    rate: int, takes: dict[str, int], seed: int, languages: int = 0, flite: bool = True, workers: int = 2
) -> dict[str, tuple[list[np.ndarray], np.ndarray, list[str]]]:
    """The synthetic corpus: ``{split: (clips prepared at rate, digit labels, speaker of each clip)}`` for
    train/val/test (espeak-ng, disjoint voices) and, with ``flite``, 'flite' (flite's five voices).

    Read from the cached ``.npz`` when the same settings were generated before."""
    plans = espeak_plan(takes, seed, languages)
    if flite:
        plans["flite"] = flite_plan()
    settings = {
        "version": CACHE_VERSION,
        "rate": rate,
        "clips": {s: [c.file_name() for c in p] for s, p in plans.items()},
        "espeak-ng": _tool_version("espeak-ng"),
        "flite": _tool_version("flite") if flite else "",
    }
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    root = cache_dir()
    bundle = root / f"corpus-{key}.npz"
    if bundle.exists():
        return _read_bundle(bundle)
    corpus = {}
    for split, plan in plans.items():
        paths = synthesize(plan, root / "clips", workers)
        clips = [prepare(*read_wav(p), rate) for p in paths]
        labels = np.array([WORDS.index(c.word) for c in plan], dtype=np.int64)
        corpus[split] = (clips, labels, [c.speaker for c in plan])
    _write_bundle(bundle, corpus)
    return corpus


def _write_bundle(path: Path, corpus: dict[str, tuple[list[np.ndarray], np.ndarray, list[str]]]) -> None:
    arrays: dict[str, np.ndarray] = {}
    for split, (clips, labels, speakers) in corpus.items():
        arrays[f"{split}_samples"] = np.concatenate(clips) if clips else np.zeros(0, np.float32)
        arrays[f"{split}_lengths"] = np.array([len(c) for c in clips], dtype=np.int64)
        arrays[f"{split}_labels"] = labels
        arrays[f"{split}_speakers"] = np.array(speakers)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, allow_pickle=True, **arrays)  # numpy's default, spelled out for the type checker
    os.replace(tmp, path)  # atomic: an interrupted write leaves no half-written corpus


def _read_bundle(path: Path) -> dict[str, tuple[list[np.ndarray], np.ndarray, list[str]]]:
    data = np.load(path)
    corpus = {}
    for split in sorted({k.rsplit("_", 1)[0] for k in data.files}):
        lengths = data[f"{split}_lengths"]
        clips = np.split(data[f"{split}_samples"], np.cumsum(lengths)[:-1]) if len(lengths) else []
        corpus[split] = (list(clips), data[f"{split}_labels"], [str(s) for s in data[f"{split}_speakers"]])
    return corpus
