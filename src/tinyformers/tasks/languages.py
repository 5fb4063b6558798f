"""Which of three artificial "languages" produced a sequence? (The first example of "Pytorch Transformer Minimal
Examples"; its README promised three languages, its code had two, no fixed test set and no ceiling.)

The generative rules. A walk starts at ``w_0 = 0`` and moves by a step ``s_t`` in {-1, 0, +1}, t = 1..L-1:

* ``down``: steps i.i.d. with P(-1, 0, +1) = (0.8 p, 1 - p, 0.2 p)   (the source's DOWN)
* ``up``:   steps i.i.d. with P(-1, 0, +1) = (0.2 p, 1 - p, 0.8 p)   (the source's UP)
* ``sticky``: a Markov chain with the *same* step frequencies as ``up``: the first step is drawn from them,
  and each later step repeats the previous one with probability ``stick``, else is drawn afresh from them.
  Its stationary distribution is ``up``'s, so every step has exactly ``up``'s marginal law: only the order of
  the steps differs, and a model that counts steps (or symbols) without looking at neighbours cannot tell
  ``sticky`` from ``up``.

``p`` is the source's difficulty knob: the probability that a step moves at all. A sequence is shown as

* ``variant=symbols``: ``(c + w_t) mod 10`` for t = 0..L-1, with an offset ``c`` uniform in 0..9 (the same for
  every language, so the first symbol carries no information), embedded as tokens;
* ``variant=floats``: ``y_t = w_t + noise * eps_t``, eps_t ~ N(0, 1) i.i.d., t = 0..L-1.

The Bayes-optimal classifier picks the language of largest likelihood (the classes are equally likely), and
its accuracy on the test set is the ceiling no model can beat in expectation. For symbols the steps are read
off exactly (consecutive symbols differ by 0, 1 or 9 mod 10), so the likelihood is a product of step
probabilities. For floats the walk is hidden: an HMM forward pass (Rabiner 1989, eq. 19-20) sums over the
hidden state (w_t, s_t). Since |s_t| <= 1 and w_0 = 0, |w_t| <= t <= L-1, so the state space
{-(L-1)..L-1} x {-1, 0, +1} is finite and the forward pass is exact — no truncation.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinyformers.core.blocks import CoreConfig, EncoderStack
from tinyformers.core.models import ModelOutput
from tinyformers.core.models.base import init_gpt2, make_rotary
from tinyformers.engine.task import Scorecard, Task, TaskData, TrainConfig
from tinyformers.errors import UserError

LANGUAGES = ("down", "up", "sticky")
SPLITS = ("train", "val", "test")


@dataclass
class LanguagesConfig(TrainConfig):
    """Attributes:
    variant: 'symbols' (walk position mod 10, embedded) or 'floats' (walk + Gaussian noise).
    p: probability that a step moves (the difficulty knob; smaller is harder). stick: probability that a
        ``sticky`` step repeats the previous one. noise: standard deviation of the float noise (walk units).
    length: values per sequence (L). n_train, n_val, n_test: sequences per split (languages take turns, so
        the splits are balanced). data_seed: fixes all three splits.
    d_model, n_heads, n_layers, d_ff, dropout: the encoder (rotary positions).
    inputs: 'differences' (the model sees x_t - x_{t-1}, mod 10 for symbols: the steps, read off exactly for
        symbols and noisily for floats) or 'values' (the sequence as given). window: each position is embedded
        from its last ``window`` inputs (a Conv1d front end, as the source had for floats); 0 = the recommended
        one: 3 for symbols (two consecutive steps), 8 for floats (room to average the noise). pooling: 'sum'
        (the evidence of the positions adds up, like a log-likelihood) or 'mean'. See :class:`WalkClassifier`.
    """

    variant: str = "symbols"
    p: float = 0.1
    stick: float = 0.5
    noise: float = 0.5
    length: int = 100
    n_train: int = 60000
    n_val: int = 3000
    n_test: int = 6000
    data_seed: int = 0
    d_model: int = 32
    n_heads: int = 2
    n_layers: int = 2
    d_ff: int = 64
    dropout: float = 0.0
    inputs: str = "differences"
    window: int = 0
    pooling: str = "sum"
    max_steps: int = 1000
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 50
    eval_every: int = 100
    weight_decay: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = {
            "variant": self.variant in ("symbols", "floats"),
            "p": 0 < self.p <= 1,
            "stick": 0 <= self.stick < 1,
            "noise": self.noise > 0,
            "length": self.length >= 2,
            "n_train": self.n_train >= 3,
            "n_val": self.n_val >= 3,
            "n_test": self.n_test >= 3,
            "window": self.window >= 0,
            "inputs": self.inputs in ("values", "differences"),
            "pooling": self.pooling in ("mean", "sum"),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(", ".join(f"{k}={getattr(self, k)!r} is out of range" for k in bad))


# --- the generative model ------------------------------------------------------------------------------
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


def make_split(cfg: LanguagesConfig, split: str) -> dict[str, np.ndarray]:
    """One split: labels (N,), steps (N, L-1) and the observed sequences (N, L), from its own seeded stream."""
    n = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}[split]
    rng = np.random.default_rng([cfg.data_seed, SPLITS.index(split)])
    labels = np.arange(n) % 3
    steps = sample_steps(labels, cfg.length, cfg.p, cfg.stick, rng)
    walk = np.concatenate([np.zeros((n, 1), dtype=np.int64), np.cumsum(steps - 1, axis=1)], axis=1)  # (N, L)
    if cfg.variant == "symbols":
        offset = rng.integers(0, 10, size=(n, 1))
        x = (offset + walk) % 10
    else:
        x = (walk + cfg.noise * rng.standard_normal(walk.shape)).astype(np.float32)
    return {"labels": labels, "steps": steps, "x": x}


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


# --- the model ---------------------------------------------------------------------------------------
class WalkClassifier(nn.Module):
    """A sequence -> language: a local front end, a rotary pre-norm encoder, pooling and a linear head.

    The front end embeds each position from its last ``window`` inputs (a Conv1d with kernel ``window``, as the
    source used for floats). An input is the value itself (``inputs='values'``) or its first difference
    (``inputs='differences'``: ``(x_t - x_{t-1}) mod 10`` for symbols, ``y_t - y_{t-1}`` for floats, none at
    position 0). The languages are defined by their steps, and from positions mod 10 the model would first have
    to learn subtraction mod 10; this input choice is the only knowledge of the task built in (both are
    options, both measured in docs/tasks/languages.md). For symbols the window is one embedding table per
    slot, summed (a convolution over one-hot inputs); for floats a two-layer MLP of the window: the blocks
    begin with LayerNorm, which divides out the scale of its input (up to its epsilon), so after one linear map
    (bias zero at init) a small wiggle and a full step would look alike; the GELU keeps the size visible.

    The encoder then sees how the steps around a position go (with ``window`` >= 3 a position already sees
    whether a step repeats the one before: the evidence for ``sticky``). Pooling is a *sum* by default: the
    Bayes log-likelihood ratio is a sum of one term per step, so it grows with the length, and a linear head
    on the sum represents it with weights of order 1, where on the mean its weights must grow L-fold —
    slowly, with AdamW's steps of about ``lr``.
    """

    def __init__(self, cfg: CoreConfig, variant: str, inputs: str, window: int, pooling: str, num_classes: int) -> None:
        super().__init__()
        self.variant, self.inputs, self.window, self.pooling = variant, inputs, window, pooling
        if variant == "symbols":
            self.embed: nn.Module = nn.Embedding(11 * window, cfg.d_model)  # slot k, value v -> 11 k + v
        else:
            self.embed = nn.Sequential(nn.Linear(window, cfg.d_model), nn.GELU(), nn.Linear(cfg.d_model, cfg.d_model))
        self.stack = EncoderStack(cfg, rotary=make_rotary(cfg))
        self.head = nn.Linear(cfg.d_model, num_classes)
        init_gpt2(self, cfg.n_layers)

    def front(self, x: Tensor) -> Tensor:
        """(B, L) symbols or values -> (B, L, d_model)."""
        if self.variant == "symbols":
            if self.inputs == "differences":  # (x_t - x_{t-1}) mod 10; position 0 has none: 10
                x = F.pad((x[:, 1:] - x[:, :-1]) % 10, (1, 0), value=10)
            # x shifted right by k (10 = none), cut to L: also right when the sequence is shorter than the window
            ids = [F.pad(x, (k, 0), value=10)[:, : x.size(1)] + 11 * k for k in range(self.window)]
            return sum(self.embed(i) for i in ids)  # slot k holds the value k positions back; 10 = none
        if self.inputs == "differences":
            x = torch.diff(x, dim=1, prepend=torch.zeros_like(x[:, :1]))  # (B, L); the walk starts at 0
        return self.embed(F.pad(x, (self.window - 1, 0)).unfold(1, self.window, 1))  # (B, L, window) -> (B, L, d)

    def forward(self, x: Tensor, labels: Tensor | None = None, output_attentions: bool = False) -> ModelOutput:
        h, attentions = self.stack(self.front(x), output_attentions=output_attentions)  # (B, L, d)
        logits = self.head(h.sum(1) if self.pooling == "sum" else h.mean(1))  # (B, d) -> (B, classes)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return ModelOutput(logits=logits, loss=loss, last_hidden_state=h, attentions=attentions)


# --- the task ------------------------------------------------------------------------------------------
class LanguagesTask(Task):
    name = "languages"
    summary = "which of 3 artificial languages (random walks) made a sequence, against the exact Bayes ceiling"
    Config: ClassVar[type[TrainConfig]] = LanguagesConfig
    metric: ClassVar[str] = "loss"  # smoother than accuracy for picking the checkpoint
    scorecard: ClassVar[Scorecard | None] = Scorecard(
        "test_accuracy",
        baselines=("baseline_accuracy",),
        limit="bayes_accuracy",
        quick=("length=12", "n_train=600", "n_val=60", "n_test=90", "d_model=16", "n_heads=2", "n_layers=1", "d_ff=32"),
        summary="Which of three random-walk 'languages' made a 100-symbol sequence (two differ in step frequencies, "
        "the third only in the order of its steps), against the exact Bayes-optimal accuracy and a logistic "
        "regression on step counts, which cannot see order.",
    )

    def data(self, cfg: LanguagesConfig, meta: dict[str, Any] | None = None) -> TaskData:  # type: ignore[override]
        splits: dict[str, Any] = {name: make_split(cfg, name) for name in SPLITS}
        splits["cache"] = {}  # per split: Bayes log-likelihoods and baseline predictions, computed once
        return TaskData(splits, {"languages": list(LANGUAGES), "variant": cfg.variant})

    def model(self, cfg: LanguagesConfig, meta: dict[str, Any]) -> nn.Module:  # type: ignore[override]
        core = {
            "d_model": cfg.d_model,
            "n_heads": cfg.n_heads,
            "n_layers": cfg.n_layers,
            "d_ff": cfg.d_ff,
            "dropout": cfg.dropout,
            "positions": "rotary",  # relative positions: "compare with the previous value" is one lookup
            "max_len": cfg.length,
        }
        window = cfg.window or (3 if cfg.variant == "symbols" else 8)
        return WalkClassifier(CoreConfig(**core), cfg.variant, cfg.inputs, window, cfg.pooling, len(LANGUAGES))

    @staticmethod
    def inputs(cfg: LanguagesConfig, x: np.ndarray) -> dict[str, Tensor]:
        return {"x": torch.as_tensor(x, dtype=torch.long if cfg.variant == "symbols" else torch.float32)}

    def batch(self, data: TaskData, cfg: LanguagesConfig, generator: torch.Generator) -> dict[str, Tensor]:  # type: ignore[override]
        train = data.splits["train"]
        idx = torch.randint(len(train["labels"]), (cfg.batch_size,), generator=generator).numpy()
        return {**self.inputs(cfg, train["x"][idx]), "labels": torch.as_tensor(train["labels"][idx])}

    def logits(self, model: nn.Module, cfg: LanguagesConfig, x: np.ndarray) -> Tensor:
        """Model logits (N, 3) for sequences (N, L), in batches."""
        device = next(model.parameters()).device
        with torch.no_grad():
            parts = [
                model(**{k: v.to(device) for k, v in self.inputs(cfg, x[i : i + 512]).items()}).logits.float().cpu()
                for i in range(0, len(x), 512)
            ]
        return torch.cat(parts)

    def bayes_log_likelihoods(self, data: TaskData, cfg: LanguagesConfig, split: str) -> np.ndarray:
        """Exact log-likelihoods (N, 3) of the split under each language (cached)."""
        key = f"bayes_{split}"
        if key not in data.splits["cache"]:
            part = data.splits[split]
            if cfg.variant == "symbols":
                ll = symbol_log_likelihoods(part["steps"], cfg.p, cfg.stick)
            else:
                ll = float_log_likelihoods(part["x"], cfg.p, cfg.stick, cfg.noise)
            data.splits["cache"][key] = ll
        return data.splits["cache"][key]

    def baseline_predictions(self, data: TaskData, cfg: LanguagesConfig, split: str) -> np.ndarray:
        """Logistic regression on the bag of increment counts, fitted on the training split (cached)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        cache = data.splits["cache"]
        if "baseline" not in cache:
            train = data.splits["train"]
            cache["baseline"] = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(
                increment_counts(train["x"], cfg.variant), train["labels"]
            )
        key = f"baseline_{split}"
        if key not in cache:
            cache[key] = cache["baseline"].predict(increment_counts(data.splits[split]["x"], cfg.variant))
        return cache[key]

    def evaluate(self, model: nn.Module, data: TaskData, split: str, cfg: LanguagesConfig) -> dict[str, float]:  # type: ignore[override]
        part = data.splits[split]
        labels = torch.as_tensor(part["labels"])
        logits = self.logits(model, cfg, part["x"])
        bayes = self.bayes_log_likelihoods(data, cfg, split)
        # the Bayes posterior's cross-entropy: the lowest loss any model can reach in expectation
        bayes_loss = F.cross_entropy(torch.as_tensor(bayes), labels).item()
        return {
            f"{split}_loss": F.cross_entropy(logits, labels).item(),
            f"{split}_accuracy": (logits.argmax(1) == labels).float().mean().item(),
            "bayes_accuracy": expected_accuracy(bayes, part["labels"]),
            "bayes_loss": bayes_loss,
            "baseline_accuracy": float((self.baseline_predictions(data, cfg, split) == part["labels"]).mean()),
        }

    def plots(self, model: nn.Module, data: TaskData, cfg: LanguagesConfig, run_dir: str) -> list[str]:  # type: ignore[override]
        """The model's probability of the true language against the exact Bayes posterior, per test sequence."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        part = data.splits["test"]
        labels = part["labels"]
        rows = np.arange(len(labels))
        model_p = torch.softmax(self.logits(model, cfg, part["x"]), dim=1).numpy()[rows, labels]
        bayes = torch.softmax(torch.as_tensor(self.bayes_log_likelihoods(data, cfg, "test")), dim=1).numpy()
        fig, ax = plt.subplots(figsize=(5, 5))
        for c, name in enumerate(LANGUAGES):
            sel = labels == c
            ax.scatter(bayes[rows[sel], labels[sel]], model_p[sel], s=3, alpha=0.4, label=name)
        ax.plot([0, 1], [0, 1], color="black", lw=0.8)
        ax.set(
            xlabel="Bayes posterior of the true language",
            ylabel="model probability of the true language",
            title=f"languages ({cfg.variant}, p={cfg.p}): test set",
        )
        ax.legend(markerscale=4)
        path = str(Path(run_dir) / "posterior.png")
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        return [path]

    # --- predict ---------------------------------------------------------------------------------------
    def parse(self, cfg: LanguagesConfig, text: str) -> np.ndarray:
        """One sequence typed by a user ("3 4 5 4 ..." or "0.1, -0.3, ...") -> (L,) array, or a UserError."""
        items = [t for t in re.split(r"[\s,]+", text.strip()) if t]
        if not 2 <= len(items) <= cfg.length:
            raise UserError(f"{text!r}: give 2 to {cfg.length} values separated by spaces (got {len(items)})")
        if cfg.variant == "symbols":
            for i, item in enumerate(items, 1):
                if not (item.isascii() and item.isdigit() and len(item) == 1):
                    raise UserError(f"{text!r}: value {i} ({item!r}) is not a symbol 0-9")
            symbols = np.array([[int(t) for t in items]])
            bad = np.flatnonzero(steps_from_symbols(symbols)[0] < 0)
            if len(bad):
                i = int(bad[0])
                raise UserError(
                    f"{text!r}: values {i + 1} and {i + 2} ({items[i]} -> {items[i + 1]}) are not one step apart; "
                    "a walk moves by -1, 0 or +1 (mod 10)"
                )
            return symbols[0]
        values = []
        for i, item in enumerate(items, 1):
            try:
                v = float(item)
            except ValueError:
                raise UserError(f"{text!r}: value {i} ({item!r}) is not a number") from None
            if not math.isfinite(v):
                raise UserError(f"{text!r}: value {i} ({item!r}) is not a finite number")
            values.append(v)
        return np.array(values, dtype=np.float32)

    def predict(self, model: nn.Module, cfg: LanguagesConfig, meta: dict[str, Any], inputs: list[str]) -> list[str]:  # type: ignore[override]
        """The most likely language, the model's probabilities of all three and the exact Bayes posterior."""
        lines = []
        for text in inputs:
            x = self.parse(cfg, text)
            probs = torch.softmax(self.logits(model, cfg, x[None]), dim=1)[0].numpy()
            if cfg.variant == "symbols":
                ll = symbol_log_likelihoods(steps_from_symbols(x[None]), cfg.p, cfg.stick)
            else:
                ll = float_log_likelihoods(x[None], cfg.p, cfg.stick, cfg.noise)
            bayes = torch.softmax(torch.as_tensor(ll[0]), dim=0).numpy()

            def show(q: np.ndarray) -> str:
                return ", ".join(f"{name} {v:.3f}" for name, v in zip(LANGUAGES, q, strict=True))

            lines.append(f"{LANGUAGES[int(np.argmax(probs))]} ({show(probs)}; Bayes: {show(bayes)})")
        return lines


TASKS = (LanguagesTask,)
