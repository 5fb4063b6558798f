"""Which of three artificial "languages" produced a sequence? (The first example of "Pytorch Transformer Minimal
Examples"; its README promised three languages, its code had two, no fixed test set and no ceiling.)

The languages are random walks (:mod:`tinyformers.data.walks`): ``down`` and ``up`` differ in their step
frequencies, ``sticky`` has exactly ``up``'s frequencies and differs only in the order of its steps (a step
repeats the previous one with probability ``stick``), so a model that counts steps (or symbols) without looking at
neighbours cannot tell ``sticky`` from ``up``. ``p`` is the source's difficulty knob: the probability that a step
moves at all. A sequence is shown as

* ``variant=symbols``: ``(c + w_t) mod 10`` for t = 0..L-1, with an offset ``c`` uniform in 0..9 (the same for
  every language, so the first symbol carries no information), embedded as tokens;
* ``variant=floats``: ``y_t = w_t + noise * eps_t``, eps_t ~ N(0, 1) i.i.d., t = 0..L-1.

The Bayes-optimal classifier picks the language of largest likelihood (the classes are equally likely), and
its accuracy on the test set is the ceiling no model can beat in expectation; the likelihoods are exact
(:func:`~tinyformers.data.walks.symbol_log_likelihoods`, :func:`~tinyformers.data.walks.float_log_likelihoods`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinyformers.core.blocks import CoreConfig
from tinyformers.core.models import WalkClassifier
from tinyformers.data.userfiles import finite_number
from tinyformers.data.walks import (
    expected_accuracy,
    float_log_likelihoods,
    increment_counts,
    sample_steps,
    steps_from_symbols,
    symbol_log_likelihoods,
)
from tinyformers.engine.task import ModelSizes, Predicts, Scorecard, Task, TaskData, TrainConfig
from tinyformers.errors import UserError

LANGUAGES = ("down", "up", "sticky")
SPLITS = ("train", "val", "test")


@dataclass
class LanguagesConfig(ModelSizes, TrainConfig):
    """Attributes:
    variant: 'symbols' (walk position mod 10, embedded) or 'floats' (walk + Gaussian noise).
    p: probability that a step moves (the difficulty knob; smaller is harder). stick: probability that a
        ``sticky`` step repeats the previous one. noise: standard deviation of the float noise (walk units).
    length: values per sequence (L). n_train, n_val, n_test: sequences per split (languages take turns, so
        the splits are balanced). data_seed: fixes all three splits.
    d_model, n_heads, d_ff: the encoder's sizes (:class:`~tinyformers.engine.task.ModelSizes`; rotary positions).
    inputs: 'differences' (the model sees x_t - x_{t-1}, mod 10 for symbols: the steps, read off exactly for
        symbols and noisily for floats) or 'values' (the sequence as given). window: each position is embedded
        from its last ``window`` inputs (a Conv1d front end, as the source had for floats); 0 = the recommended
        one: 3 for symbols (two consecutive steps), 8 for floats (room to average the noise). pooling: 'sum'
        (the evidence of the positions adds up, like a log-likelihood) or 'mean'. See
        :class:`~tinyformers.core.models.WalkClassifier`.
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
    d_ff: int = 64
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


class LanguagesTask(Task[LanguagesConfig], Predicts):
    name = "languages"
    summary = "which of 3 artificial languages (random walks) made a sequence, against the exact Bayes ceiling"
    Config: ClassVar[type[TrainConfig]] = LanguagesConfig
    metric: ClassVar[str] = "loss"  # smoother than accuracy for picking the checkpoint
    predict_options: ClassVar[tuple[str, ...]] = ()
    scorecard: ClassVar[Scorecard | None] = Scorecard(
        "test_accuracy",
        baselines=("baseline_accuracy",),
        limit="bayes_accuracy",
        quick=("length=12", "n_train=600", "n_val=60", "n_test=90", "d_model=16", "n_heads=2", "n_layers=1", "d_ff=32"),
        summary="Which of three random-walk 'languages' made a 100-symbol sequence (two differ in step frequencies, "
        "the third only in the order of its steps), against the exact Bayes-optimal accuracy and a logistic "
        "regression on step counts, which cannot see order.",
    )

    def data(self, cfg: LanguagesConfig, meta: dict[str, Any] | None = None) -> TaskData:
        splits: dict[str, Any] = {name: make_split(cfg, name) for name in SPLITS}
        splits["cache"] = {}  # per split: Bayes log-likelihoods and baseline predictions, computed once
        return TaskData(splits, {"languages": list(LANGUAGES), "variant": cfg.variant})

    def model(self, cfg: LanguagesConfig, meta: dict[str, Any]) -> nn.Module:
        # rotary: relative positions make "compare with the previous value" one lookup
        core = CoreConfig(**cfg.sizes(), positions="rotary", max_len=cfg.length)
        window = cfg.window or (3 if cfg.variant == "symbols" else 8)
        return WalkClassifier(core, cfg.variant, cfg.inputs, window, cfg.pooling, len(LANGUAGES))

    @staticmethod
    def inputs(cfg: LanguagesConfig, x: np.ndarray) -> dict[str, Tensor]:
        return {"x": torch.as_tensor(x, dtype=torch.long if cfg.variant == "symbols" else torch.float32)}

    def batch(self, data: TaskData, cfg: LanguagesConfig, generator: torch.Generator) -> dict[str, Tensor]:
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
        # imported here, not at the top: scikit-learn is heavy and only needed now
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

    def evaluate(self, model: nn.Module, data: TaskData, split: str, cfg: LanguagesConfig) -> dict[str, float]:
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

    def plots(self, model: nn.Module, data: TaskData, cfg: LanguagesConfig, run_dir: str) -> list[str]:
        """The model's probability of the true language against the exact Bayes posterior, per test sequence."""
        # imported here, not at the top: matplotlib is heavy and only needed now
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
                values.append(finite_number(item))
            except ValueError as e:
                raise UserError(f"{text!r}: value {i} ({item!r}) {e}") from None
        return np.array(values, dtype=np.float32)

    def predict(
        self, model: nn.Module, cfg: LanguagesConfig, meta: dict[str, Any], inputs: list[str], **options: Any
    ) -> list[str]:
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
