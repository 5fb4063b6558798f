"""Melodies as note events: the Bach chorales of the ``music21`` corpus (parsed once, cached as JSON), or a
folder of the user's own scores (MusicXML, MIDI, ABC, Humdrum), and writing a melody back as MIDI.

A melody is ``{"name", "time_signature", "notes": [[midi, quarter_length], ...]}`` with ``midi = -1`` for a
rest. Chords (rare in the chorale voices) keep their top note.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tinyformers.errors import UserError
from tinyformers.io import write_json

VOICES = ("soprano", "alto", "tenor", "bass")
SCORE_SUFFIXES = (".mid", ".midi", ".xml", ".musicxml", ".mxl", ".abc", ".krn")
INSTALL_HINT = "the chorales need the music21 package: pip install music21 (or `make install`)"
CACHE_VERSION = 2


def cache_dir() -> Path:
    return Path(os.environ.get("TINYFORMERS_CACHE", Path.home() / ".cache" / "tinyformers"))


def music21_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("music21") is not None


def _events(part: Any) -> list[list[float]]:
    """A music21 part -> [[midi or -1, quarter_length], ...] in time order (grace notes dropped)."""
    out: list[list[float]] = []
    for n in part.flatten().notesAndRests:
        ql = float(n.quarterLength)
        if ql <= 0:
            continue
        if n.isRest:
            out.append([-1, ql])
        elif n.isChord:
            out.append([max(p.midi for p in n.pitches), ql])
        else:
            out.append([n.pitch.midi, ql])
    return out


def _time_signature(score: Any) -> str:
    found = score.flatten().getElementsByClass("TimeSignature")
    return found[0].ratioString if found else "4/4"


def parse_score(path_or_name: str | Path, from_corpus: bool = False) -> dict[str, Any]:
    """One score -> its time signature and the note events of each of its (up to four) parts."""
    import music21

    try:
        score = music21.corpus.parse(str(path_or_name)) if from_corpus else music21.converter.parse(str(path_or_name))
    except Exception as e:  # music21 raises many exception types for unreadable files
        raise UserError(f"{path_or_name}: not a score music21 can read ({type(e).__name__})") from None
    score_parts = getattr(score, "parts", None)  # a Score has parts; a Part or Opus has none
    if score_parts is not None and len(score_parts):
        parts, names = [_events(p) for p in score_parts], [str(p.partName or "") for p in score_parts]
    else:
        parts, names = [_events(score)], [""]
    return {"name": str(path_or_name), "time_signature": _time_signature(score), "parts": parts, "part_names": names}


def bach_chorales(progress: bool = True) -> list[dict[str, Any]]:
    """The 371 four-part chorales of music21's corpus (Riemenschneider edition), parsed once (~1 minute) and
    cached in ``$TINYFORMERS_CACHE`` (default ``~/.cache/tinyformers``)."""
    if not music21_available():
        raise UserError(INSTALL_HINT)
    path = cache_dir() / f"bach_chorales_v{CACHE_VERSION}.json"
    if path.exists():
        return json.loads(path.read_text())
    from music21 import corpus
    from tqdm import tqdm

    names = list(corpus.chorales.Iterator(returnType="filename"))
    scores = [parse_score(n, from_corpus=True) for n in tqdm(names, desc="parsing chorales", disable=not progress)]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, scores)  # atomic: an interrupted parse leaves no half-written cache
    return scores


def folder_scores(folder: str | Path) -> list[dict[str, Any]]:
    """Every score file in ``folder`` (recursively), sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a directory of scores")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SCORE_SUFFIXES)
    if not files:
        raise UserError(f"{folder}: no score files ({', '.join(SCORE_SUFFIXES)}) in it")
    return [parse_score(p) for p in files]


def _voice_part(score: dict[str, Any], voice: str) -> int | None:
    """The first part whose name starts with ``voice`` ("Soprano", "Soprano 1", "S."), else part i of
    soprano, alto, tenor, bass: some chorales carry instrumental parts (horns, timpani) before the voices."""
    for j, name in enumerate(score.get("part_names", [])):
        words = name.strip().lower().replace(".", " ").split()
        if words and words[0] in (voice, voice[0]):
            return j
    i = VOICES.index(voice)
    return i if len(score["parts"]) > i else None


def melodies(scores: list[dict[str, Any]], voice: str) -> list[dict[str, Any]]:
    """The ``voice`` of every score that has it."""
    out = []
    for s in scores:
        j = _voice_part(s, voice)
        if j is not None and s["parts"][j]:
            out.append({"name": s["name"], "time_signature": s["time_signature"], "notes": s["parts"][j]})
    return out


def write_midi(notes: list[tuple[int, float]], path: str | Path, time_signature: str = "4/4") -> None:
    """A melody -> a MIDI file (music21)."""
    import music21

    stream: music21.stream.Stream[Any] = music21.stream.Stream()
    stream.append(music21.meter.TimeSignature(time_signature))
    for midi, ql in notes:
        stream.append(music21.note.Rest(quarterLength=ql) if midi < 0 else music21.note.Note(midi, quarterLength=ql))
    stream.write("midi", fp=str(path))


def piano_roll(notes: list[tuple[int, float]], path: str | Path, prompt_notes: int = 0, title: str = "") -> None:
    """A piano-roll PNG of a melody; the first ``prompt_notes`` (the given start) in grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3))
    t = 0.0
    for i, (midi, ql) in enumerate(notes):
        if midi >= 0:
            ax.barh(midi, ql, left=t, height=0.8, color="0.6" if i < prompt_notes else "tab:blue")
        t += ql
    ax.set_xlabel("time (quarter notes)")
    ax.set_ylabel("MIDI pitch")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
