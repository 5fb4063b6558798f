"""Token tensors of the sanity tasks (copy, reverse, sort), built from digit tensors without a loop over rows.

A batch is ``digits`` (B, W), zero past each row's length, with ``lengths`` (B,); W is the batch's longest.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tinyformers.engine.task import IGNORE_INDEX

SPECIALS = ["<pad>", "<bos>", "<eos>", "<sep>"]
PAD, BOS, EOS, SEP = range(4)
WORD = 18  # digits per int64 key word: 11^18 - 1 < 2^63


def encode_digits(arch: str, digits: Tensor, answers: Tensor, lengths: Tensor) -> dict[str, Tensor]:
    """The model's tensors for sources ``digits`` and targets ``answers`` (both (B, W), row i's first
    ``lengths[i]`` entries real). 'seq2seq': ``src_ids`` (B, W), ``labels`` = target + <eos> (B, W + 1).
    'decoder': ``<bos> source <sep> target <eos>`` shifted into ``input_ids`` and ``labels`` (B, 2W + 2),
    the prompt (source and <sep>) masked out of the labels: it is given, not predicted."""
    off, (b, w) = len(SPECIALS), digits.shape  # digit d has id off + d
    pos, rows = torch.arange(w), torch.arange(b)[:, None]
    real = pos < lengths[:, None]  # (B, W)
    src = torch.where(real, off + digits, PAD)
    tgt = torch.where(real, off + answers, PAD)
    if arch == "seq2seq":
        labels = torch.cat([tgt, torch.full((b, 1), PAD)], dim=1)  # (B, W + 1)
        labels[rows[:, 0], lengths] = EOS
        return {"src_ids": src, "labels": labels, "src_mask": real.long()}
    ids = torch.full((b, 2 * w + 4), PAD)  # (B, 2W + 3) and a last column that takes the padding's writes
    ids[:, 0] = BOS
    ids[rows, torch.where(real, 1 + pos, 2 * w + 3)] = src
    ids[rows[:, 0], lengths + 1] = SEP
    ids[rows, torch.where(real, lengths[:, None] + 2 + pos, 2 * w + 3)] = tgt
    ids[rows[:, 0], 2 * lengths + 2] = EOS
    labels = ids[:, 1 : 2 * w + 3].clone()  # (B, 2W + 2)
    labels[torch.arange(2 * w + 2) < lengths[:, None] + 1] = IGNORE_INDEX
    labels[labels == PAD] = IGNORE_INDEX
    return {"input_ids": ids[:, : 2 * w + 2], "labels": labels}


def digit_rows(seqs: list[tuple[int, ...]], width: int = 0) -> tuple[Tensor, Tensor]:
    """Digit sequences as ``(digits (B, W) zero-padded, lengths (B,))``; W = ``width``, or the longest."""
    width = width or max(map(len, seqs))
    return torch.tensor([[*s, *[0] * (width - len(s))] for s in seqs]), torch.tensor([len(s) for s in seqs])


def sequence_keys(digits: Tensor, lengths: Tensor) -> Tensor:
    """One key per sequence (B, words): digit + 1 in base 11 (0 past the end), ``WORD`` digits per int64 word, so
    equal keys mean equal sequences. Compare keys of the same width W only (words = ceil(W / WORD))."""
    coded = (digits + 1) * (torch.arange(digits.size(1)) < lengths[:, None])
    coded = F.pad(coded, (0, -coded.size(1) % WORD)).view(len(coded), -1, WORD)  # (B, words, WORD)
    return (coded * 11 ** torch.arange(WORD)).sum(-1)
