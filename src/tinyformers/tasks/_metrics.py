"""Metrics and report lines shared by the tasks: classification (vision, spoken-digits) and written words."""

from __future__ import annotations

import torch
from torch import Tensor


def confusion(y: Tensor, pred: Tensor, n: int) -> Tensor:
    """(n, n) counts: row = true class, column = predicted class."""
    return torch.bincount(y * n + pred, minlength=n * n).reshape(n, n)


def macro_f1(cm: Tensor) -> float:
    """Mean over classes of ``F1 = 2 TP / (2 TP + FP + FN)``; a class never true nor predicted counts as 0."""
    tp = cm.diag().double()
    denom = 2 * tp + (cm.sum(0) - cm.diag()) + (cm.sum(1) - cm.diag())
    return (torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))).mean().item()


def top_classes(probs: Tensor, classes: list[str]) -> list[str]:
    """One line per row of ``probs`` (N, classes): the best class, then the three most probable with their
    probabilities, e.g. ``seven\\t(seven 0.912, one 0.051, nine 0.020)``."""
    lines = []
    for p in probs:
        top = p.topk(min(3, len(classes)))
        pairs = zip(top.values.tolist(), top.indices.tolist(), strict=True)
        ranked = ", ".join(f"{classes[i]} {v:.3f}" for v, i in pairs)
        lines.append(f"{classes[int(top.indices[0])]}\t({ranked})")
    return lines


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions turning ``a`` into ``b``."""
    row = list(range(len(b) + 1))  # distances from a[:0] to every prefix of b
    for i, ca in enumerate(a, 1):
        diag, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diag + (ca != cb))
    return row[-1]


def word_metrics(predicted: list[str], truth: list[str]) -> tuple[float, float]:
    """(exact word accuracy, character error rate). Both compare the decoded strings — the letters before
    ``<eos>`` — so padding can never count as a correct letter. CER = total edit distance / total letters."""
    exact = sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth)
    cer = sum(edit_distance(p, t) for p, t in zip(predicted, truth, strict=True)) / sum(map(len, truth))
    return exact, cer
