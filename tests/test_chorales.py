"""The chorales task on tiny melodies written by the test as MIDI files: encoding, transposition, the n-gram
baseline, the split, training and generation through the CLI, and bad inputs as one-line errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

pytest.importorskip("music21")

from tinyformers.apps.cli import main  # noqa: E402
from tinyformers.data import music  # noqa: E402
from tinyformers.engine.task import GeneratesFiles, GeneratesText, Predicts  # noqa: E402
from tinyformers.errors import UserError  # noqa: E402
from tinyformers.tasks import load_run  # noqa: E402
from tinyformers.tasks._chorales import (  # noqa: E402
    EOS,
    NOTE0,
    VOCAB,
    NGram,
    encode,
    note_token,
    shift_range,
    token_note,
    transpose,
)
from tinyformers.tasks.chorales import ChoralesConfig, ChoralesTask  # noqa: E402

TINY = ["n_layers=1", "d_model=32", "n_heads=2", "batch_size=8", "block_size=32", "ngram_max=3", "prompt_notes=4"]


def test_tokens_round_trip_and_transpose():
    for midi in (-1, 36, 60, 96):
        for ql in (0.25, 1.0, 1.5, 8.0):
            assert token_note(note_token(midi, ql)) == (midi, ql)
    assert token_note(note_token(60, 1.1)) == (60, 1.0)  # nearest duration
    seq = encode({"time_signature": "3/4", "notes": [[60, 1.0], [-1, 0.5], [67, 2.0]]})
    up = transpose(torch.tensor(seq), 3).tolist()
    assert [token_note(t) for t in up if t >= NOTE0] == [(63, 1.0), (-1, 0.5), (70, 2.0)]
    assert up[:2] == seq[:2] and up[-1] == EOS
    assert shift_range(encode({"time_signature": "4/4", "notes": [[95, 1.0]]}), 6) == [-5, -4, -3, -2, -1, 0, 1]


def test_ngram_is_a_distribution_and_learns():
    seqs = [[1, 3] + [NOTE0 + i % 4 for i in range(12)] + [EOS]] * 5
    vocab = [EOS, *range(NOTE0, VOCAB)]
    model = NGram(3, vocab).fit(seqs)
    for history in [(), (NOTE0,), (NOTE0, NOTE0 + 1), (NOTE0 + 50, NOTE0 + 60)]:
        assert sum(model.prob(history, w) for w in vocab) == pytest.approx(1.0, abs=1e-9)
    nats, count = model.nll(seqs)
    assert count == 5 * 13 and nats / count < 0.5 < math.log(len(vocab))


def write_melodies(folder, n=8):
    """``n`` short melodies (a seeded random walk each, one of them duplicated) as MIDI files."""
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        steps = torch.randint(-2, 3, (16,), generator=g).tolist()
        pitches = [60 + sum(steps[: j + 1]) for j in range(16)]
        notes = [(p, 1.0 if j % 4 else 2.0) for j, p in enumerate(pitches)]
        music.write_midi(notes, folder / f"m{i}.mid", "4/4")
    (folder / "copy_of_m0.mid").write_bytes((folder / "m0.mid").read_bytes())
    return folder


@pytest.fixture(scope="module")
def melodies_dir(tmp_path_factory):
    return write_melodies(tmp_path_factory.mktemp("music") / "scores")


@pytest.fixture(scope="module")
def run_dir(melodies_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    argv = ["train", "chorales", "--out", str(out), "--max-steps", "60", "--no-progress", "--set", *TINY]
    assert main([*argv, f"source={melodies_dir}", "eval_every=30", "lr=3e-3", "dropout=0"]) == 0
    return out


def test_split_keeps_identical_melodies_together(melodies_dir):
    data = ChoralesTask().data(ChoralesConfig(source=str(melodies_dir)))
    where = {}
    for split in ("train", "val", "test"):
        for name, seq in zip(data.splits[f"{split}_names"], data.splits[split], strict=True):
            where.setdefault(tuple(seq), set()).add(split)
            assert name.endswith(".mid")
    assert all(len(s) == 1 for s in where.values())
    assert sum(len(data.splits[s]) for s in ("train", "val", "test")) == 9


def test_trains_and_beats_uniform(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test_nll_per_note", "ngram_nll_per_note", "uniform_nll_per_note", "params", "train_seconds"):
        assert key in metrics
    assert metrics["test_nll_per_note"] < metrics["uniform_nll_per_note"] - 1.0
    assert (run_dir / "sample_vs_real.png").exists()


def test_generate_writes_midi_and_piano_roll(run_dir, tmp_path, capsys):
    out = tmp_path / "sample.mid"
    argv = ["generate", str(run_dir), "--prompt-chorale", "0", "--out", str(out), "--max-new-tokens", "12"]
    assert main([*argv, "--do-sample", "--seed", "1"]) == 0
    line = capsys.readouterr().out
    assert "wrote" in line and "first 4 notes of held-out" in line
    assert 1 <= int(line.split("(")[1].split()[0]) <= 12  # new notes, at most --max-new-tokens
    assert out.with_suffix(".png").exists()
    assert [m for m, _ in music.parse_score(out)["parts"][0] if m >= 0]  # a MIDI file music21 reads back
    before = out.read_bytes()
    assert main(argv) == 2  # never overwritten
    assert out.read_bytes() == before


def test_generate_file_is_the_declared_capability(run_dir, tmp_path):
    """Without the CLI: chorales declares file generation (and nothing else), writes the MIDI and its piano roll
    with the decoding options in ``options``, and refuses a text prompt."""
    task, cfg, meta, model = load_run(run_dir)
    assert isinstance(task, GeneratesFiles) and not isinstance(task, (GeneratesText, Predicts))
    assert task.file_options == ("prompt_chorale",)
    out = tmp_path / "direct.mid"
    lines = task.generate_file(model, cfg, meta, out, prompt_chorale=0, max_new_tokens=6, do_sample=True, seed=1)
    assert len(lines) == 1 and lines[0].startswith(f"wrote {out}") and out.with_suffix(".png").exists()
    with pytest.raises(UserError, match="no text prompt"):
        task.generate_file(model, cfg, meta, tmp_path / "b.mid", prompt="C D E")


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--prompt-chorale", "99"], "choose 0.."),
        (["--prompt", "C D E"], "no text prompt"),
        (["--out", "{tmp}/x.wav"], ".mid"),
        (["--class", "3"], "does not take --class"),
    ],
)
def test_generate_bad_options(run_dir, tmp_path, capsys, extra, match):
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    if "--out" not in extra:
        extra += ["--out", str(tmp_path / "s.mid")]
    assert main(["generate", str(run_dir), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err


def test_bad_sources_are_one_line_errors(tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "song.mid").write_bytes(b"this is not a MIDI file")
    empty = tmp_path / "empty"
    empty.mkdir()
    for source, match in ((bad, "not a score music21 can read"), (empty, "no score files"), (tmp_path / "no", "not a")):
        assert main(["train", "chorales", "--out", str(tmp_path / "r"), "--set", f"source={source}"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, err
