"""Minimum Bayes risk (MBR) decoding: of several candidate outputs, pick the one the model's outputs agree with most.

Beam search returns the most probable output (approximately: ``argmax_y p(y | x)``), but a translation is judged
by a metric ``u`` (BLEU, chrF) against a reference nobody has at test time. MBR decoding (Kumar & Byrne, 2004;
Eikema & Aziz, 2020; Freitag et al., 2022) picks instead the candidate with the highest *expected* utility
under the model, using outputs of the model as stand-ins for the unknown reference:

    y_MBR = argmax_{h in H}  sum_{y in Y}  w(y) * u(h, y)

with ``H`` the candidates (e.g. a beam search's finished hypotheses), ``Y`` the pseudo-references and ``w``
their weights (uniform unless given). ``Y`` is either ``H`` itself (each candidate compared with the *other*
ones) or samples drawn from the model, which estimate the expectation without the beam's bias towards
short, similar outputs (Eikema & Aziz, 2020); a sample's frequency carries its probability, so samples are
weighted uniformly. A candidate close to many of them -- the consensus -- wins over an outlier that happens
to score a little higher under the model. MBR optimises the metric it is given, so it is chosen on held-out
data like any decoding setting; it costs ``|H| * |Y|`` utility evaluations per input.

The function here is independent of the model and of the metric: it takes strings (or any values) and a
utility callable, e.g. sacreBLEU's sentence-level chrF.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def mbr_pick(
    candidates: Sequence[T],
    utility: Callable[[T, T], float],
    references: Sequence[T] | None = None,
    weights: Sequence[float] | None = None,
) -> int:
    """Index of the candidate with the highest expected ``utility(candidate, reference)``.

    The expectation is over ``references`` (all of them) when given, else over the *other* candidates (a
    candidate's utility against itself is the same maximum for each under uniform weights, and under other
    weights would only favour the most probable); ``weights`` go with the references (with the candidates when
    there are no references), uniform if None. Ties go to the earlier candidate, so with a beam's hypotheses
    (best first) MBR falls back to the beam's choice when the references cannot tell them apart; a single
    candidate is picked as is.

    >>> shared_words = lambda h, r: len(set(h.split()) & set(r.split()))
    >>> mbr_pick(["dogs", "the cat sat", "a cat sat", "the cat sat down"], shared_words)
    1
    """
    n = len(candidates)
    if n == 0:
        raise ValueError("mbr_pick needs at least one candidate")
    refs = candidates if references is None else references
    w = [1.0] * len(refs) if weights is None else [float(v) for v in weights]
    if len(w) != len(refs):
        raise ValueError(f"{len(w)} weights for {len(refs)} {'candidates' if references is None else 'references'}")
    if any(not v >= 0 for v in w):  # also refuses NaN
        raise ValueError("weights must be >= 0")
    best, best_score = 0, float("-inf")
    for i, h in enumerate(candidates):
        others = (j for j in range(len(refs)) if references is not None or j != i)
        score = sum(w[j] * utility(h, refs[j]) for j in others)
        if score > best_score:
            best, best_score = i, score
    return best
