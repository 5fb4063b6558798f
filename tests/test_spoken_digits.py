"""The spoken-digits task: WAV reading, resampling (against scipy), log-mel, the padding mask, the voice split,
the synthesised corpus and its cache, and the CLI on a folder of generated WAVs (train, predict, bad input)."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from test_cli import one_line_error

from tinyformers.apps.cli import main
from tinyformers.core.models import SpectrogramConfig, SpectrogramTransformer
from tinyformers.core.models.audio import pad_batch
from tinyformers.data import audio
from tinyformers.data.augment import augment_clips
from tinyformers.engine.task import apply_overrides
from tinyformers.errors import UserError
from tinyformers.tasks import get_task

TINY = ["d_model=32", "n_heads=2", "n_layers=1", "d_ff=64", "batch_size=16", "eval_every=40", "warmup_steps=10"]


def tone(freq: float, seconds: float, rate: int, freq_end: float | None = None) -> np.ndarray:
    """A sine (or a linear chirp to ``freq_end``) with 20 ms fades."""
    t = np.arange(int(seconds * rate)) / rate
    f = freq if freq_end is None else freq + (freq_end - freq) * t / (2 * seconds)
    x = 0.5 * np.sin(2 * np.pi * f * t)
    fade = np.minimum(1, np.minimum(t, seconds - t) / 0.02)
    return (x * fade).astype(np.float32)


def write_pcm(path: Path, samples: np.ndarray, rate: int, width: int, channels: int = 1) -> None:
    ints = np.round(samples * (2 ** (8 * width - 1) - 1)).astype(np.int64)
    if width == 1:
        raw = (ints + 128).astype(np.uint8).tobytes()
    else:
        raw = b"".join(int(v).to_bytes(width, "little", signed=True) for v in ints)
    frames = b"".join(raw[i * width : (i + 1) * width] * channels for i in range(len(samples)))
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes(frames)


# --- audio ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("width, channels", [(1, 1), (2, 2), (3, 1), (4, 1)])
def test_read_wav_reads_every_pcm_width(tmp_path, width, channels):
    x = tone(440, 0.05, 8000)
    write_pcm(tmp_path / "a.wav", x, 8000, width, channels)
    y, rate = audio.read_wav(tmp_path / "a.wav")
    assert rate == 8000 and y.dtype == np.float32 and len(y) == len(x)
    assert np.abs(y - x).max() < 2 / 2 ** (8 * width - 1) + 1e-6


def test_files_that_are_not_pcm_wav_are_user_errors(tmp_path):
    (tmp_path / "notes.wav").write_text("not audio")
    with pytest.raises(UserError, match="notes.wav: not a PCM WAV"):
        audio.read_wav(tmp_path / "notes.wav")
    with pytest.raises(UserError, match="missing.wav: no such file"):
        audio.read_wav(tmp_path / "missing.wav")
    audio.write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32), 8000)
    with pytest.raises(UserError, match="holds no samples"):
        audio.read_wav(tmp_path / "empty.wav")


def test_resample_matches_scipy_and_does_not_alias():
    from scipy.signal import resample_poly

    rate_in, rate_out = 22050, 8000
    speech_band = tone(300, 0.5, rate_in) + tone(1700, 0.5, rate_in)
    ours = audio.resample(speech_band, rate_in, rate_out)
    ref = resample_poly(speech_band, 160, 441)  # 8000 / 22050 = 160 / 441
    assert len(ours) == len(ref) == 4000 * 0.5 * 2
    middle = slice(200, -200)  # the two filters treat the ends differently
    assert np.abs(ours[middle] - ref[middle]).max() < 0.02
    above_nyquist = audio.resample(tone(6000, 0.5, rate_in), rate_in, rate_out)  # would alias to 2 kHz
    assert np.sqrt((above_nyquist[middle] ** 2).mean()) < 0.01
    assert np.array_equal(audio.resample(speech_band, 8000, 8000), speech_band)


def test_trim_and_normalise():
    x = np.concatenate([np.zeros(4000), tone(500, 0.3, 8000) * 0.1, np.zeros(8000)]).astype(np.float32)
    y = audio.prepare(x, 8000, 8000)
    assert 0.3 * 8000 <= len(y) <= 0.3 * 8000 + 4 * 80  # the tone plus at most a frame of margin each side
    assert np.isclose(np.abs(y).max(), 1.0)


def test_mel_filterbank_is_a_partition_of_unity_between_its_centres():
    fb = audio.mel_filterbank(256, 40, 8000)
    assert fb.shape == (129, 40) and (fb >= 0).all()
    centres = fb.argmax(0)
    assert (centres.diff() >= 0).all()  # ascending in frequency
    hz = np.linspace(0, 4000, 129)
    inside = (hz > hz[centres[0]]) & (hz < hz[centres[-1]])
    assert torch.allclose(fb[torch.from_numpy(inside)].sum(1), torch.ones(int(inside.sum())), atol=1e-5)


def test_log_mel_of_a_tone_peaks_in_the_band_of_its_frequency():
    frames = audio.log_mel(tone(1000, 0.5, 8000), 8000, 256, 80, 40)
    assert frames.shape == (4000 // 80 + 1, 40)
    mel_1k = audio.hz_to_mel(torch.tensor(1000.0))
    edges = torch.linspace(audio.hz_to_mel(torch.tensor(20.0)), audio.hz_to_mel(torch.tensor(4000.0)), 42)
    expected = int((edges[1:-1] - mel_1k).abs().argmin())
    assert abs(int(frames[25].argmax()) - expected) <= 1
    assert audio.log_mel(tone(1000, 0.5, 8000), 8000, 256, 80, 40, max_frames=10).shape == (10, 40)


# --- the model -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("patch_frames", [1, 3])
def test_extra_padding_in_the_batch_leaves_a_clips_logits_unchanged(patch_frames):
    cfg = SpectrogramConfig(n_mels=8, patch_frames=patch_frames, d_model=16, n_heads=2, n_layers=2, d_ff=32, max_len=64)
    model = SpectrogramTransformer(cfg).eval()
    short, long = torch.randn(10, 8), torch.randn(37, 8)
    alone = model(*pad_batch([short])).logits[0]
    features, mask = pad_batch([short, long])  # the short clip gets 27 frames of padding
    with torch.no_grad():
        assert torch.allclose(model(features, mask).logits[0], alone, atol=1e-5)
        # the test can fail: without the mask the padding changes the prediction
        assert not torch.allclose(model(features).logits[0], alone, atol=1e-3)


def test_loss_falls_on_one_batch():
    task = get_task("spoken-digits")
    cfg = apply_overrides(task.Config(), TINY)
    meta = {"n_mels": 40, "classes": list("abc"), "max_frames": 201}
    model = task.model(cfg, meta)
    batch = {"features": torch.randn(6, 30, 40), "attention_mask": torch.ones(6, 30, dtype=torch.long)}
    batch |= {"labels": torch.tensor([0, 1, 2, 0, 1, 2])}
    cfg = apply_overrides(cfg, ["label_smoothing=0"])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = task.loss(model, batch, cfg).item()
    for _ in range(30):
        opt.zero_grad()
        task.loss(model, batch, cfg).backward()
        opt.step()
    assert task.loss(model, batch, cfg).item() < 0.3 * first


def test_augmentation_is_seeded_and_leaves_a_plain_clip_alone():
    cfg = apply_overrides(get_task("spoken-digits").Config(), ["noise=1", "speed=0.2"])
    meta = {"sample_rate": 8000, "n_fft": 256, "hop": 80, "n_mels": 40, "max_frames": 201}
    meta |= {"mean": [0.0] * 40, "std": [1.0] * 40}
    clips = [tone(700, 0.5, 8000), tone(300, 0.2, 8000)]
    a, b = (augment_clips(clips, cfg, meta, torch.Generator().manual_seed(3)) for _ in range(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[0].shape[2] == 40
    lengths = {tuple(augment_clips(clips, cfg, meta, torch.Generator().manual_seed(s))[1].sum(1)) for s in range(5)}
    assert len(lengths) > 1  # speed and shift change the lengths
    plain = apply_overrides(cfg, ["noise=0", "speed=0", "shift=0", "freq_mask=0", "time_mask=0"])
    features, mask = augment_clips(clips, plain, meta, torch.Generator())
    for clip, f, m in zip(clips, features, mask, strict=True):
        alone = audio.log_mel(clip, 8000, 256, 80, 40, 201)
        assert int(m.sum()) == len(alone) and torch.allclose(f[: len(alone)], alone, atol=1e-4)
        assert (f[len(alone) :] == 0).all()


# --- the synthetic corpus --------------------------------------------------------------------------------------
def test_voice_split_keeps_languages_and_variants_apart():
    plan = audio.espeak_plan({"train": 2, "val": 1, "test": 1}, seed=0)
    assert plan == audio.espeak_plan({"train": 2, "val": 1, "test": 1}, seed=0)  # deterministic
    langs = {s: {c.voice for c in clips} for s, clips in plan.items()}
    variants = {s: {c.variant for c in clips} for s, clips in plan.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not langs[a] & langs[b] and not variants[a] & variants[b]
    assert len(langs["train"]) == 34 and len(langs["val"]) == 6 and len(langs["test"]) == 10
    assert len(plan["train"]) == 34 * 10 * 2
    for group in (audio.ENGLISH_VOICES, audio.NATIVE_VOICES, audio.SWITCHING_VOICES):  # every kind in every split
        assert all(set(group) & langs[s] for s in plan)


@pytest.mark.skipif(not (audio.espeak_available() and audio.flite_available()), reason="needs espeak-ng and flite")
def test_synthesised_corpus_is_cached_and_reproducible(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYFORMERS_CACHE", str(tmp_path))
    takes = {"train": 1, "val": 1, "test": 1}
    corpus = audio.digit_corpus(8000, takes, seed=0, languages=1, flite=False)
    assert {s: len(corpus[s][1]) for s in corpus} == {"train": 10, "val": 10, "test": 10}
    assert sorted(corpus["test"][1].tolist()) == list(range(10))
    assert all(0.1 < len(c) / 8000 < 2.0 and np.isclose(np.abs(c).max(), 1) for c in corpus["train"][0])
    assert len(list((tmp_path / "spoken-digits").glob("corpus-*.npz"))) == 1

    def no_synthesis(*args, **kwargs):
        raise AssertionError("the cached corpus should have been read")

    monkeypatch.setattr(audio, "synthesize", no_synthesis)
    again = audio.digit_corpus(8000, takes, seed=0, languages=1, flite=False)
    assert all(np.array_equal(a, b) for a, b in zip(again["val"][0], corpus["val"][0], strict=True))
    assert again["val"][2] == corpus["val"][2]
    monkeypatch.undo()
    flite = audio.Clip("flite", "slt", "seven", stretch=1.25)
    (path,) = audio.synthesize([flite], tmp_path / "clips")
    samples, rate = audio.read_wav(path)
    assert rate == 16000 and 0.3 < len(samples) / rate < 2


def test_missing_espeak_is_a_clear_status(monkeypatch):
    task = get_task("spoken-digits")
    monkeypatch.setattr(audio, "espeak_available", lambda: False)
    status = task.data_status(task.Config())
    assert "apt-get install espeak-ng flite" in status and "folder=PATH" in status
    assert task.data_status(apply_overrides(task.Config(), ["folder=/no/such/dir"])).startswith("folder=/no/such")


# --- your own folder through the CLI ---------------------------------------------------------------------------
def make_folder(root: Path, per_label: int = 10) -> Path:
    """Three labels of 16 kHz clips with random lengths and onsets: a low tone, a high tone, a rising chirp."""
    rng = np.random.default_rng(0)
    for label in ("high", "low", "up"):
        (root / label).mkdir(parents=True)
        for i in range(per_label):
            seconds = rng.uniform(0.3, 0.8)
            if label == "up":
                x = tone(300, seconds, 16000, freq_end=3000)
            else:
                x = tone(rng.uniform(250, 400) if label == "low" else rng.uniform(2000, 2500), seconds, 16000)
            x = np.concatenate([np.zeros(int(rng.integers(0, 3000)), np.float32), x])
            audio.write_wav(root / label / f"{i}.wav", x + rng.normal(0, 0.003, len(x)), 16000)
    return root


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("spoken")
    folder = make_folder(root / "clips")
    out = root / "run"
    argv = ["train", "spoken-digits", "--out", str(out), "--max-steps", "80", "--no-progress", "--set", *TINY]
    assert main([*argv, f"folder={folder}", "lr=3e-3"]) == 0
    return root, folder, out


def test_folder_run_through_the_cli(folder_run, capsys):
    root, folder, out = folder_run
    capsys.readouterr()
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"test_accuracy", "baseline_accuracy", "params", "train_seconds"} <= set(metrics)
    assert metrics["test_accuracy"] >= 0.8  # 6 test clips of clearly different sounds
    for png in ("confusion.png", "log_mel.png"):
        assert (out / png).stat().st_size > 1000
    clip = root / "chirp.wav"
    audio.write_wav(clip, tone(300, 0.5, 8000, freq_end=3000), 8000)  # another rate than the training clips
    assert main(["predict", str(out), str(clip), str(folder / "low" / "0.wav")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[1] for line in lines] == ["up", "low"]


def test_bad_inputs_are_one_line_errors(folder_run, tmp_path, capsys):
    root, folder, out = folder_run
    (tmp_path / "notes.wav").write_text("this is text")
    one_line_error(capsys, ["predict", str(out), str(tmp_path / "notes.wav")], "notes.wav: not a PCM WAV")
    train = ["train", "spoken-digits", "--out", str(tmp_path / "r"), "--max-steps", "1", "--no-progress", "--set"]
    bad = make_folder(tmp_path / "bad", per_label=5)
    (bad / "up" / "cover.jpg").write_bytes(b"\xff\xd8")
    one_line_error(capsys, [*train, f"folder={bad}"], "cover.jpg: not a .wav file")
    (bad / "up" / "cover.jpg").unlink()
    (bad / "silence").mkdir()
    one_line_error(capsys, [*train, f"folder={bad}"], "silence: empty label folder")
    one_line_error(capsys, [*train, "noise=2"], "noise=2.0 is out of range")
