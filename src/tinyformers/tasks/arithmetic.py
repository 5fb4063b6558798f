"""Arithmetic by sequence modelling: a decoder-only LM reads ``123+045=`` and writes the answer, one character
at a time, for addition, subtraction and multiplication.

The model is a GPT over ``<bos> A op B = answer <eos>`` with the prompt masked out of the loss (-100), so it
is graded only on the answer. Two formatting options are reported to matter for small transformers (Lee et al.
2023, "Teaching Arithmetic to Small Transformers"; Nogueira et al. 2021, "Investigating the Limitations of
Transformers with Simple Arithmetic Tasks"); docs/tasks/arithmetic.md measures them:

* ``reverse_answer``: write the answer least-significant digit first. Digit ``i`` of a sum depends on digits
  ``<= i`` of the operands and on the carry from digit ``i - 1``, which is then already written; in the usual
  order the model must compute every carry in its head before the first character. The sign of a difference
  still comes first, so subtraction needs the comparison of the operands before anything else.
* ``pad_operands``: zero-pad operands (and the answer) to a fixed width, so digit ``i`` of every operand sits
  at the same position in every problem and attention can find it at a fixed offset. A padded difference
  always writes its sign (``+`` or ``-``), so its answer digits sit at fixed positions too: written only when
  negative, every digit moved one place in half of the problems, and 3-digit subtraction reached 12.9% test
  exact match where addition reached 100% (docs/tasks/arithmetic.md).

Held-out problems (validation and test) are fixed by ``data_seed`` and never drawn for training, and neither
is their swapped variant (``b+a`` for ``a+b``). A length-generalisation set (operands one digit longer than
any in training) is scored at test time only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from tinyformers.core.models import DecoderConfig, DecoderLM
from tinyformers.core.tokenizers import CharTokenizer
from tinyformers.engine.task import IGNORE_INDEX, ModelSizes, Predicts, Scorecard, Task, TaskData, TrainConfig
from tinyformers.errors import UserError

SPECIALS = ["<pad>", "<bos>", "<eos>"]
PAD, BOS, EOS = range(3)
CHARS = "0123456789+-*="
OP_NAMES = {"+": "add", "-": "sub", "*": "mul"}
PROBLEM = re.compile(r"^\s*(\d+)\s*([-+*])\s*(\d+)\s*=?\s*$")

Problem = tuple[int, str, int]  # (a, op, b)
QUICK_MODEL = ("d_model=32", "n_heads=2", "n_layers=1", "d_ff=64")


@dataclass
class ArithmeticConfig(ModelSizes, TrainConfig):
    """Attributes:
    ops: the operations, comma-separated, from + - *. digits: operand width for + and -; mul_digits: for *.
        Operands are uniform in [0, 10^width) for training, validation and test.
    reverse_answer: write the answer's digits least-significant first (the sign, if any, still comes first).
    pad_operands: zero-pad operands to the width and the answer to the widest possible result; a difference
        then always starts with its sign, '+' or '-'.
    close_sub: fraction of training differences whose operands share their first k digits (k uniform in
        1..digits), so the comparison that decides the sign is also trained where it is decided late; validation
        and test problems stay uniform.
    n_val, n_test: held-out problems per operation. n_longer: per operation, with operands of width + 1 digits.
    data_seed: fixes the held-out sets.
    d_model, n_heads, d_ff: the model's sizes (:class:`~tinyformers.engine.task.ModelSizes`).
    positions: 'learned' (with padded operands digit i of each operand has a fixed position; after 1,000 steps
        of 3-digit + with a 64-wide, 4-head, 2-layer model the units digit was right for 100% of validation
        problems with learned positions and for 10.7% — chance — with 'rotary'), 'rotary' or 'sinusoidal'.
    """

    ops: str = "+,-,*"
    digits: int = 3
    mul_digits: int = 2
    reverse_answer: bool = True
    pad_operands: bool = True
    close_sub: float = 0.2
    n_val: int = 300
    n_test: int = 1000
    n_longer: int = 500
    data_seed: int = 0
    d_model: int = 128
    n_heads: int = 8
    d_ff: int = 512
    positions: str = "learned"
    max_steps: int = 6000
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    eval_every: int = 250
    weight_decay: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        ops = self.op_list()
        if not ops or any(op not in OP_NAMES for op in ops) or len(set(ops)) != len(ops):
            raise ValueError(f"ops={self.ops!r}: give distinct operations from + - * separated by commas")
        if not (1 <= self.digits <= 9 and 1 <= self.mul_digits <= 9):
            raise ValueError("digits and mul_digits must be between 1 and 9")
        if not 0 <= self.close_sub <= 1:
            raise ValueError(f"close_sub={self.close_sub}: a fraction between 0 and 1")
        if self.n_val < 1 or self.n_test < 1 or self.n_longer < 0:
            raise ValueError("n_val and n_test must be >= 1, n_longer >= 0")
        for op in ops:
            distinct = 10 ** self.width(op) * (10 ** self.width(op) + 1) // 2  # unordered operand pairs
            if 2 * (self.n_val + self.n_test) > distinct:
                raise ValueError(
                    f"n_val + n_test = {self.n_val + self.n_test} held-out {op} problems leave too few to train on "
                    f"({distinct} distinct at width {self.width(op)}); use at most {distinct // 2}"
                )

    def op_list(self) -> list[str]:
        return [op.strip() for op in self.ops.split(",") if op.strip()]

    def width(self, op: str) -> int:
        """Operand width (digits) trained for ``op``."""
        return self.mul_digits if op == "*" else self.digits


def _tokenizer() -> CharTokenizer:
    return CharTokenizer(CHARS, SPECIALS)


def result_width(op: str, width: int) -> int:
    """Most digits the magnitude of ``a op b`` can have for operands below ``10**width``."""
    return {"+": width + 1, "-": width, "*": 2 * width}[op]


def solve_exactly(a: int, op: str, b: int) -> int:
    return {"+": a + b, "-": a - b, "*": a * b}[op]


def carry_free(a: int, op: str, b: int) -> int:
    """The answer with every carry (and borrow) dropped: digit-wise ``(a_i + b_i) mod 10``, ``(a_i - b_i) mod 10``
    on the larger minus the smaller, or column sums ``sum_{i+j=k} a_i b_j mod 10``. It equals the true answer
    exactly when the problem needs no carry, so its accuracy is what "digits right, carries never learned"
    scores (the failure the source project showed on the middle digits of products)."""
    sign = -1 if op == "-" and a < b else 1
    if sign < 0:
        a, b = b, a
    xs, ys = [int(c) for c in str(a)[::-1]], [int(c) for c in str(b)[::-1]]  # least significant first
    n = max(len(xs), len(ys))
    xs, ys = xs + [0] * (n - len(xs)), ys + [0] * (n - len(ys))
    if op == "+":
        cols = [x + y for x, y in zip(xs, ys, strict=True)]
    elif op == "-":
        cols = [x - y for x, y in zip(xs, ys, strict=True)]
    else:
        cols = [sum(xs[i] * ys[k - i] for i in range(n) if 0 <= k - i < n) for k in range(2 * n - 1)]
    return sign * sum((c % 10) * 10**k for k, c in enumerate(cols))


class ArithmeticTask(Task[ArithmeticConfig], Predicts):
    name = "arithmetic"
    summary = "add, subtract and multiply digit strings with a decoder-only LM (answer reversed, operands padded)"
    Config: ClassVar[type[TrainConfig]] = ArithmeticConfig
    metric: ClassVar[str] = "selection"  # exact match, ties broken by the loss (see evaluate)
    maximize: ClassVar[bool] = True
    predict_options: ClassVar[tuple[str, ...]] = ()
    scorecard: ClassVar[Scorecard | None] = Scorecard(
        "test_acc_min",
        baselines=("carryfree_acc_min",),
        quick=(*QUICK_MODEL, "digits=2", "mul_digits=1", "n_val=5", "n_test=10", "n_longer=10", "batch_size=16"),
        summary="Held-out exact match of the hardest operation for one model of + and - (3-digit) and * (2-digit), "
        "against the same answers computed with every carry dropped; test_acc_longer is length generalisation.",
    )

    # --- formatting -------------------------------------------------------------------------------
    @staticmethod
    def width_of(cfg: ArithmeticConfig, problem: Problem) -> int:
        """The width a problem is written at: the trained one, or wider for longer operands (length test)."""
        a, op, b = problem
        return max(cfg.width(op), len(str(a)), len(str(b)))

    @staticmethod
    def format(cfg: ArithmeticConfig, problem: Problem) -> tuple[str, str]:
        """``(prompt, answer)`` strings, e.g. ``('123+045=', '8610')`` padded and reversed (168 = 0168)."""
        a, op, b = problem
        width = ArithmeticTask.width_of(cfg, problem)
        sa, sb = (str(a).zfill(width), str(b).zfill(width)) if cfg.pad_operands else (str(a), str(b))
        value = solve_exactly(a, op, b)
        magnitude = str(abs(value)).zfill(result_width(op, width)) if cfg.pad_operands else str(abs(value))
        if cfg.reverse_answer:
            magnitude = magnitude[::-1]
        sign = "-" if value < 0 else ("+" if op == "-" and cfg.pad_operands else "")
        return f"{sa}{op}{sb}=", sign + magnitude

    @staticmethod
    def read_answer(cfg: ArithmeticConfig, answer: str) -> int | None:
        """The integer an answer string (as formatted by :meth:`format`) stands for; None if it is not a number."""
        sign, digits = (-1 if answer[0] == "-" else 1, answer[1:]) if answer[:1] in ("-", "+") else (1, answer)
        if not digits.isdigit():
            return None
        return sign * int(digits[::-1] if cfg.reverse_answer else digits)

    # --- data -------------------------------------------------------------------------------------
    @staticmethod
    def _draw(cfg: ArithmeticConfig, n: int, gen: torch.Generator, longer: bool = False) -> list[Problem]:
        """``n`` problems, the operation uniform over ``cfg.ops``; operands uniform in [0, 10^w), or with
        exactly w + 1 digits if ``longer``."""
        ops = cfg.op_list()
        which = torch.randint(0, len(ops), (n,), generator=gen).tolist()
        u = torch.rand(n, 2, generator=gen, dtype=torch.float64).tolist()  # float64: exact for 10^10
        problems = []
        for k, (ua, ub) in zip(which, u, strict=True):
            op = ops[k]
            w = cfg.width(op)
            low, high = (10**w, 10 ** (w + 1)) if longer else (0, 10**w)
            problems.append((low + int(ua * (high - low)), op, low + int(ub * (high - low))))
        return problems

    @staticmethod
    def _key(problem: Problem) -> tuple[str, int, int]:
        """A problem and its swapped variant share a key: holding out one holds out both."""
        a, op, b = problem
        return op, min(a, b), max(a, b)

    def data(self, cfg: ArithmeticConfig, meta: dict[str, Any] | None = None) -> TaskData:
        gen = torch.Generator().manual_seed(cfg.data_seed)
        held: dict[str, list[Problem]] = {op: [] for op in cfg.op_list()}
        seen: set[tuple[str, int, int]] = set()
        while any(len(v) < cfg.n_val + cfg.n_test for v in held.values()):
            for p in self._draw(cfg, 1000, gen):
                if self._key(p) not in seen and len(held[p[1]]) < cfg.n_val + cfg.n_test:
                    seen.add(self._key(p))
                    held[p[1]].append(p)
        longer_gen = torch.Generator().manual_seed(cfg.data_seed + 1)
        longer: dict[str, list[Problem]] = {op: [] for op in held}
        while any(len(v) < cfg.n_longer for v in longer.values()):
            for p in self._draw(cfg, 1000, longer_gen, longer=True):
                if len(longer[p[1]]) < cfg.n_longer:
                    longer[p[1]].append(p)
        splits = {
            "val": {op: v[: cfg.n_val] for op, v in held.items()},
            "test": {op: v[cfg.n_val :] for op, v in held.items()},
            "longer": longer,
            "exclude": seen,
        }
        return TaskData(splits, {"tokenizer": _tokenizer().to_dict()})

    @staticmethod
    def _close(cfg: ArithmeticConfig, problems: list[Problem], gen: torch.Generator) -> list[Problem]:
        """A fraction ``close_sub`` of the differences get operands sharing their first k digits (k uniform in
        1..width): the sign of ``a - b`` is decided by the first digit where the operands differ, and uniform
        operands differ in the first one 90% of the time, so ties further down are otherwise too rare to learn."""
        n = len(problems)
        pick = (torch.rand(n, generator=gen) < cfg.close_sub).tolist()
        shared = torch.randint(1, cfg.digits + 1, (n,), generator=gen).tolist()
        out = []
        for (a, op, b), close, k in zip(problems, pick, shared, strict=True):
            if op == "-" and close:
                sa, sb = str(a).zfill(cfg.digits), str(b).zfill(cfg.digits)
                b = int(sa[:k] + sb[k:])
            out.append((a, op, b))
        return out

    def batch(self, data: TaskData, cfg: ArithmeticConfig, generator: torch.Generator) -> dict[str, Tensor]:
        problems: list[Problem] = []
        while len(problems) < cfg.batch_size:  # training never sees a held-out problem or its swapped variant
            drawn = self._close(cfg, self._draw(cfg, cfg.batch_size, generator), generator)
            problems += [p for p in drawn if self._key(p) not in data.splits["exclude"]]
        return self.encode(cfg, problems[: cfg.batch_size])

    def encode(self, cfg: ArithmeticConfig, problems: list[Problem]) -> dict[str, Tensor]:
        """``input_ids`` (B, T) = ``<bos> prompt answer`` and ``labels`` (B, T) = ``prompt answer <eos>`` with the
        prompt and the padding set to -100: the loss grades the answer and its end only."""
        tok = _tokenizer()
        rows, prompt_lens = [], []
        for p in problems:
            prompt, answer = self.format(cfg, p)
            rows.append([BOS, *tok.encode(prompt + answer), EOS])
            prompt_lens.append(len(prompt))
        width = max(map(len, rows))
        ids = torch.tensor([r + [PAD] * (width - len(r)) for r in rows], dtype=torch.long)  # (B, T + 1)
        labels = ids[:, 1:].clone()
        for i, n in enumerate(prompt_lens):
            labels[i, :n] = IGNORE_INDEX  # the prompt is given; labels[i, n] is the answer's first character
        labels[labels == PAD] = IGNORE_INDEX
        return {"input_ids": ids[:, :-1], "labels": labels}

    # --- model ------------------------------------------------------------------------------------
    @staticmethod
    def max_len(cfg: ArithmeticConfig) -> int:
        """Longest sequence: operands one digit wider than trained (the length test), sign, answer, specials."""
        longest = 0
        for op in cfg.op_list():
            w = cfg.width(op) + 1
            longest = max(longest, 2 * w + 2 + 1 + result_width(op, w))
        return longest + 2  # <bos>, <eos>

    def model(self, cfg: ArithmeticConfig, meta: dict[str, Any]) -> nn.Module:
        return DecoderLM(
            DecoderConfig(
                **cfg.sizes(),
                positions=cfg.positions,
                max_len=self.max_len(cfg),
                vocab_size=len(_tokenizer()),
            )
        )

    # --- evaluation -------------------------------------------------------------------------------
    def solve(self, model: nn.Module, cfg: ArithmeticConfig, problems: list[Problem]) -> list[str]:
        """Greedy answer strings (in the trained format), batched by prompt length so no prompt needs padding."""
        tok = _tokenizer()
        prompts = [tok.encode(self.format(cfg, p)[0]) for p in problems]
        answers = [""] * len(problems)
        groups: dict[int, list[int]] = {}
        for i, ids in enumerate(prompts):
            groups.setdefault(len(ids), []).append(i)
        device = next(model.parameters()).device
        for idx in groups.values():
            for start in range(0, len(idx), 1024):
                chunk = idx[start : start + 1024]
                prompt = torch.tensor([[BOS, *prompts[i]] for i in chunk], device=device)  # (b, 1 + prompt)
                new = 2 + max(
                    result_width(problems[i][1], self.width_of(cfg, problems[i])) for i in chunk
                )  # sign, <eos>
                out = model.generate(prompt, max_new_tokens=new, eos_token_id=EOS, pad_token_id=PAD)
                for i, row in zip(chunk, out[:, prompt.size(1) :].tolist(), strict=True):
                    row = row[: row.index(EOS)] if EOS in row else row
                    answers[i] = tok.decode(row)
        return answers

    def evaluate(self, model: nn.Module, data: TaskData, split: str, cfg: ArithmeticConfig) -> dict[str, float]:
        """Exact-match accuracy per operation (``{split}_acc_add``...), their mean (``{split}_acc``) and minimum
        (``{split}_acc_min``, the hardest operation), the held-out loss, the carry-free baseline on the same
        problems (per operation and its minimum) and, on the test split, the length-generalisation accuracy
        (``test_acc_longer``: operands one digit longer than any trained on)."""
        device = next(model.parameters()).device
        by_op: dict[str, list[Problem]] = data.splits[split]
        problems = [p for ps in by_op.values() for p in ps]
        losses = []
        for i in range(0, len(problems), 512):
            batch = {k: v.to(device) for k, v in self.encode(cfg, problems[i : i + 512]).items()}
            losses.append(model(**batch).loss.item())
        metrics = {f"{split}_loss": sum(losses) / len(losses)}
        metrics.update(self._accuracy(model, cfg, by_op, f"{split}_acc"))
        # Selects the checkpoint. 300 validation problems hit 100% long before every test problem is right, and
        # the first 100% checkpoint (step 1,500 of 6,000) scored 99.4% on 3-digit + test: later ties win on loss.
        metrics[f"{split}_selection"] = metrics[f"{split}_acc"] - 1e-4 * min(metrics[f"{split}_loss"], 10.0)
        for op, ps in by_op.items():
            metrics[f"carryfree_acc_{OP_NAMES[op]}"] = sum(carry_free(*p) == solve_exactly(*p) for p in ps) / len(ps)
        metrics["carryfree_acc_min"] = min(metrics[f"carryfree_acc_{OP_NAMES[op]}"] for op in by_op)
        if split == "test" and cfg.n_longer:
            metrics.update(self._accuracy(model, cfg, data.splits["longer"], "test_acc_longer"))
        return metrics

    def _accuracy(
        self, model: nn.Module, cfg: ArithmeticConfig, by_op: dict[str, list[Problem]], prefix: str
    ) -> dict[str, float]:
        problems = [p for ps in by_op.values() for p in ps]
        answers = self.solve(model, cfg, problems)
        right = [a == self.format(cfg, p)[1] for a, p in zip(answers, problems, strict=True)]
        metrics, start = {}, 0
        for op, ps in by_op.items():
            metrics[f"{prefix}_{OP_NAMES[op]}"] = sum(right[start : start + len(ps)]) / len(ps)
            start += len(ps)
        per_op = [metrics[f"{prefix}_{OP_NAMES[op]}"] for op in by_op]
        metrics[prefix] = sum(per_op) / len(per_op)
        metrics[f"{prefix}_min"] = min(per_op)  # the hardest operation: every target is per operation
        return metrics

    # --- use --------------------------------------------------------------------------------------
    def parse(self, cfg: ArithmeticConfig, text: str) -> Problem:
        """``'123+456='`` -> ``(123, '+', 456)``; anything else is a :class:`UserError` saying what is wrong."""
        match = PROBLEM.match(text)
        if not match:
            raise UserError(f"{text!r}: expected a problem like 123+456= (digits, one of + - *, digits)")
        a, op, b = match.groups()
        if op not in cfg.op_list():
            raise UserError(f"{text!r}: this model was trained on {' '.join(cfg.op_list())} only, not {op}")
        w = cfg.width(op)
        if max(len(a), len(b)) > w + 1:
            raise UserError(f"{text!r}: operands of at most {w + 1} digits for {op} (trained on up to {w})")
        return int(a), op, int(b)

    def predict(
        self, model: nn.Module, cfg: ArithmeticConfig, meta: dict[str, Any], inputs: list[str], **options: Any
    ) -> list[str]:
        """The model's answer to each problem, in the usual digit order (a reversed answer is read back)."""
        problems = [self.parse(cfg, text) for text in inputs]
        outputs = []
        for answer in self.solve(model, cfg, problems):
            value = self.read_answer(cfg, answer)
            outputs.append(str(value) if value is not None else f"? (not a number: {answer!r})")
        return outputs


TASKS = (ArithmeticTask,)
