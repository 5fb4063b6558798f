"""The chorales task's vocabulary and baseline: melodies as note-event tokens, their transposition, and an
n-gram model over the same tokens.

Encoding (one token per note, so "NLL per note" is simply the per-token loss):

    <bos> <time signature> note note ... note <eos>,     note = (pitch or rest, duration)

* pitch: MIDI 36..96 or a rest; duration: the nearest of ``DURATIONS`` quarter notes (the chorales use
  almost only these; the share rounded is reported by ``data()``).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

import torch
from torch import Tensor

DURATIONS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)
LOW, HIGH = 36, 96  # MIDI pitch range of the vocabulary
PITCHES = [-1, *range(LOW, HIGH + 1)]  # -1 = rest
TIME_SIGNATURES = ("4/4", "3/4", "3/2", "other")
PAD, BOS, EOS = 0, 1, 2
TS0 = 3  # first time-signature token
NOTE0 = TS0 + len(TIME_SIGNATURES)  # first note token
VOCAB = NOTE0 + len(PITCHES) * len(DURATIONS)


def note_token(midi: int, quarter_length: float) -> int:
    d = min(range(len(DURATIONS)), key=lambda i: abs(DURATIONS[i] - quarter_length))
    return NOTE0 + PITCHES.index(midi if midi < 0 else min(max(midi, LOW), HIGH)) * len(DURATIONS) + d


def token_note(token: int) -> tuple[int, float]:
    p, d = divmod(token - NOTE0, len(DURATIONS))
    return PITCHES[p], DURATIONS[d]


def ts_token(time_signature: str) -> int:
    return TS0 + TIME_SIGNATURES.index(time_signature if time_signature in TIME_SIGNATURES else "other")


def encode(melody: dict[str, Any]) -> list[int]:
    return [BOS, ts_token(melody["time_signature"])] + [note_token(int(m), q) for m, q in melody["notes"]] + [EOS]


def transpose(tokens: Tensor, shift: int) -> Tensor:
    """Shift every pitched note token by ``shift`` semitones (rests and specials stay)."""
    if shift == 0:
        return tokens
    is_note = tokens >= NOTE0
    p, d = torch.div(tokens - NOTE0, len(DURATIONS), rounding_mode="floor"), (tokens - NOTE0) % len(DURATIONS)
    pitched = is_note & (p > 0)  # p = 0 is the rest
    return torch.where(pitched, NOTE0 + (p + shift) * len(DURATIONS) + d, tokens)


def shift_range(tokens: list[int], transpose_max: int) -> list[int]:
    """The shifts in ``[-transpose_max + 1, transpose_max]`` that keep every pitch inside the vocabulary."""
    pitches = [token_note(t)[0] for t in tokens if t >= NOTE0 and token_note(t)[0] >= 0]
    lo, hi = (min(pitches), max(pitches)) if pitches else (LOW, HIGH)
    return [s for s in range(-transpose_max + 1, transpose_max + 1) if lo + s >= LOW and hi + s <= HIGH] or [0]


class NGram:
    """Interpolated absolute discounting (Ney et al., 1994) over token ids, backing off to uniform:

    P(w | h) = max(c(h, w) - D, 0) / c(h) + D * N1+(h .) / c(h) * P(w | h'),   h' = h without its oldest token.
    """

    def __init__(self, order: int, vocab: list[int], discount: float = 0.75) -> None:
        self.order, self.vocab, self.discount = order, vocab, discount
        self.counts: list[dict[tuple[int, ...], Counter]] = [defaultdict(Counter) for _ in range(order)]

    def fit(self, sequences: list[list[int]]) -> NGram:
        for seq in sequences:
            for i in range(2, len(seq)):  # predict from the first note on; <bos> and time signature are given
                for n in range(self.order):
                    if i - n >= 0:
                        self.counts[n][tuple(seq[i - n : i])][seq[i]] += 1
        return self

    def prob(self, history: tuple[int, ...], w: int) -> float:
        p = 1.0 / len(self.vocab)
        for n in range(self.order):  # from the unigram up to the full order
            if n > len(history):
                break
            c = self.counts[n].get(history[len(history) - n :] if n else ())
            if not c:
                continue
            total = sum(c.values())
            p = max(c[w] - self.discount, 0) / total + self.discount * len(c) / total * p
        return p

    def nll(self, sequences: list[list[int]]) -> tuple[float, int]:
        """Total nats and number of predicted tokens (every note and the end)."""
        total, count = 0.0, 0
        for seq in sequences:
            for i in range(2, len(seq)):
                total -= math.log(self.prob(tuple(seq[max(0, i - self.order + 1) : i]), seq[i]))
                count += 1
        return total, count


def all_transpositions(seqs: list[list[int]], transpose_max: int) -> list[list[int]]:
    """Every sequence in every shift of :func:`shift_range` (just the sequences if ``transpose_max`` is 0)."""
    out: list[list[int]] = []
    for s in seqs:
        t = torch.tensor(s)
        out += [transpose(t, k).tolist() for k in shift_range(s, transpose_max)] if transpose_max else [s]
    return out


def fit_ngram(splits: dict[str, Any], ngram_max: int, transpose_max: int) -> dict[str, float]:
    """Fit orders 1..ngram_max on the (transposed) training melodies; keep the best on validation. Returns its
    order and its nats per note on 'val' and 'test'."""
    vocab = [EOS, *range(NOTE0, VOCAB)]
    train = all_transpositions(splits["train"], transpose_max)
    best: tuple[float, int, NGram] | None = None
    for order in range(1, ngram_max + 1):
        model = NGram(order, vocab).fit(train)
        nats, count = model.nll(splits["val"])
        if best is None or nats / count < best[0]:
            best = (nats / count, order, model)
    assert best is not None
    _, order, model = best
    result: dict[str, float] = {"order": order}
    for split in ("val", "test"):
        nats, count = model.nll(splits[split])
        result[split] = nats / count
    return result
