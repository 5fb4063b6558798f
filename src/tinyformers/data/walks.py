"""The three artificial "languages" of the ``languages`` task: random walks, their sampler and their exact
likelihoods (so the Bayes-optimal classifier, the ceiling no model beats, is computed exactly).

A walk starts at ``w_0 = 0`` and moves by a step ``s_t`` in {-1, 0, +1}, t = 1..L-1:

* ``down``: steps i.i.d. with P(-1, 0, +1) = (0.8 p, 1 - p, 0.2 p)   (the source's DOWN)
* ``up``:   steps i.i.d. with P(-1, 0, +1) = (0.2 p, 1 - p, 0.8 p)   (the source's UP)
* ``sticky``: a Markov chain with the *same* step frequencies as ``up``: the first step is drawn from them,
  and each later step repeats the previous one with probability ``stick``, else is drawn afresh from them.

For symbols the steps are read off exactly (consecutive symbols differ by 0, 1 or 9 mod 10), so the likelihood
is a product of step probabilities. For floats the walk is hidden: an HMM forward pass (Rabiner 1989, eq. 19-20)
sums over the hidden state (w_t, s_t); |w_t| <= t <= L-1 keeps the state space finite, so it is exact.
"""

from __future__ import annotations

import math

import numpy as np


def step_laws(p: float, stick: float) -> tuple[np.ndarray, np.ndarray]:
    """First-step probabilities ``(3 languages, 3 steps)`` and transitions ``(3, prev step, next step)``.

    Steps are indexed 0, 1, 2 for -1, 0, +1.
    """
    first = np.array([[0.8 * p, 1 - p, 0.2 * p], [0.2 * p, 1 - p, 0.8 * p], [0.2 * p, 1 - p, 0.8 * p]])
    trans = np.repeat(first[:, None, :], 3, axis=1)  # i.i.d.: every row is the step law
    trans[2] = (1 - stick) * trans[2] + stick * np.eye(3)  # sticky: repeat the previous step w.p. stick
    return first, trans


def sample_steps(labels: np.ndarray, length: int, p: float, stick: float, rng: np.random.Generator) -> np.ndarray:
    """Step indices (N, length - 1) in {0, 1, 2} (= -1, 0, +1) for sequences of the given languages."""
    first, trans = step_laws(p, stick)
    n = len(labels)
    u = rng.random((n, length - 1))
    steps = np.empty((n, length - 1), dtype=np.int64)
    steps[:, 0] = (u[:, :1] > np.cumsum(first[labels], axis=1)).sum(1)
    for t in range(1, length - 1):
        cdf = np.cumsum(trans[labels, steps[:, t - 1]], axis=1)  # (N, 3)
        steps[:, t] = (u[:, t : t + 1] > cdf).sum(1)
    return np.minimum(steps, 2)  # guards against cdf[-1] rounding just below 1


def steps_from_symbols(symbols: np.ndarray) -> np.ndarray:
    """(N, L) symbols -> (N, L-1) step indices; a difference of 0, 1 or 9 (mod 10) is a step of 0, +1 or -1."""
    diff = (symbols[:, 1:] - symbols[:, :-1]) % 10
    return np.select([diff == 9, diff == 0, diff == 1], [0, 1, 2], default=-1)


def symbol_log_likelihoods(steps: np.ndarray, p: float, stick: float) -> np.ndarray:
    """Exact log P(sequence | language) for known steps (N, L-1) -> (N, 3), up to a term common to all three
    (the uniform offset's log 1/10)."""
    first, trans = step_laws(p, stick)
    with np.errstate(divide="ignore"):  # an impossible step (p = 1 never stays) has likelihood 0
        log_first, log_trans = np.log(first), np.log(trans)
    ll = log_first[:, steps[:, 0]].T  # (N, 3)
    for c in range(3):
        ll[:, c] += log_trans[c][steps[:, :-1], steps[:, 1:]].sum(axis=1)
    return ll


def float_log_likelihoods(y: np.ndarray, p: float, stick: float, noise: float, chunk: int = 64) -> np.ndarray:
    """Exact log p(y | language) (N, L) -> (N, 3) by the HMM forward pass over the hidden (w_t, s_t).

    alpha_t(w, s) = p(y_0..y_t, w_t = w, s_t = s) follows Rabiner's (1989) eq. 20:
    ``alpha_t(w, s) = N(y_t; w, noise^2) * sum_s' alpha_{t-1}(w - s, s') P(s | s')``, where
    ``P(s | s') = (1 - stick) pi(s) + stick [s = s']`` (stick = 0 for the i.i.d. languages). It is normalised
    at every step and the log normalisers summed (Rabiner's scaling), so nothing underflows. At time t only
    |w| <= t is reachable. Sequences go through in chunks small enough to stay in cache (plain numpy: on a
    loaded 2-core machine, multi-threaded torch was ~6x slower here).
    """
    first, _ = step_laws(p, stick)  # (languages, steps)
    rho = np.array([0.0, 0.0, stick])[:, None, None, None]  # (languages, 1, 1, 1)
    fresh = ((1 - rho[:, :, :, 0]) * first[:, None, :])[..., None]  # (languages, 1, steps, 1)
    y = np.asarray(y, dtype=np.float64)
    reach = y.shape[1] - 1
    w = np.arange(-reach, reach + 1, dtype=np.float64)  # every position the walk can reach
    log_norm = -math.log(noise * math.sqrt(2 * math.pi))
    out = []
    for i in range(0, len(y), chunk):
        yc = y[i : i + chunk]
        n = len(yc)
        alpha = np.zeros((3, n, 3, len(w)))  # (languages, N, last step, w)
        alpha[:, :, 1, reach] = 1.0  # w_0 = 0; the "last step" slot is a placeholder until t = 1
        log_z = np.zeros((3, n)) + (log_norm - 0.5 * (yc[:, 0] / noise) ** 2)
        for t in range(1, y.shape[1]):
            lo, hi = reach - t, reach + t + 1  # reachable at time t
            prev = alpha[..., lo + 1 : hi - 1]  # reachable at time t - 1: (3, N, 3, 2t - 1)
            total = prev.sum(axis=2, keepdims=True)
            mixed = first[:, None, :, None] * total if t == 1 else fresh * total + rho * prev  # P(step, w_{t-1})
            new = alpha[..., lo:hi]  # (3, N, 3, 2t + 1), written in place
            new[:] = 0.0
            new[:, :, 0, :-2] = mixed[:, :, 0]  # step -1: w_t = w_{t-1} - 1
            new[:, :, 1, 1:-1] = mixed[:, :, 1]
            new[:, :, 2, 2:] = mixed[:, :, 2]  # step +1: w_t = w_{t-1} + 1
            e = -0.5 * ((yc[:, t : t + 1] - w[lo:hi]) / noise) ** 2  # log emission without log_norm: (N, 2t + 1)
            top = e.max(axis=1, keepdims=True)
            new *= np.exp(e - top)[None, :, None, :]
            z = new.sum(axis=(2, 3))  # (3, N)
            log_z += np.log(z) + top[:, 0] + log_norm
            new /= z[..., None, None]
        out.append(log_z.T)
    return np.concatenate(out)


def expected_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of argmax ``scores`` with ties broken uniformly at random (in expectation)."""
    top = scores.max(axis=1, keepdims=True)
    tied = np.isclose(scores, top, rtol=0, atol=1e-9)
    return float((tied[np.arange(len(labels)), labels] / tied.sum(axis=1)).mean())


def increment_counts(x: np.ndarray, variant: str) -> np.ndarray:
    """The bag of counts the baseline sees: (N, 3) counts of steps -1/0/+1 (symbols, exact) or (N, 7) counts
    of the increments y_t - y_{t-1} rounded and clipped to -3..3 (floats). The order is thrown away."""
    if variant == "symbols":
        steps = steps_from_symbols(x)
        return np.stack([(steps == k).sum(axis=1) for k in range(3)], axis=1).astype(np.float64)
    inc = np.clip(np.rint(np.diff(x, axis=1, prepend=0.0)), -3, 3).astype(np.int64)
    return np.stack([(inc == k).sum(axis=1) for k in range(-3, 4)], axis=1).astype(np.float64)
