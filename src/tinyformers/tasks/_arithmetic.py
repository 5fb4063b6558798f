"""Arithmetic problems: what is asked, how it is written, how it is drawn (the ``arithmetic`` task's data).

How the answer is written matters more than the model for small transformers (Lee et al. 2023, "Teaching
Arithmetic to Small Transformers"; Nogueira et al. 2021, "Investigating the Limitations of Transformers with Simple
Arithmetic Tasks"); docs/tasks/arithmetic.md measures it. ``format`` is one of:

* ``plain``: the answer in the usual order, ``123+045=0168``. The first character already needs every carry.
* ``reversed``: the answer least-significant digit first, ``123+045=8610``. Digit ``i`` of a sum depends on digits
  ``<= i`` of the operands and on the carry from digit ``i - 1``, which is then already written. The sign of a
  difference still comes first, so subtraction needs the comparison of the operands before anything else.
* ``scratchpad``: as ``reversed`` for + and -; a product is preceded by the intermediate steps the model writes
  itself (Lee et al.'s "detailed scratchpad", simplified): the partial products ``a * b_i * 10^i`` for each digit
  ``b_i`` of ``b`` (least significant first) and, after the second one on, their running sum, each reversed and
  zero-padded to the width of the product, so ``12*34=`` is answered ``8400+0630=8040`` (48, then 360, then their
  sum 408). Each step is one-digit-times-number or number-plus-number, written units first, and the last number
  is the answer; only that is scored (:func:`final_answer`).

``pad_operands`` zero-pads operands (and the answer) to a fixed width, so digit ``i`` of every operand sits at the
same position in every problem and attention can find it at a fixed offset. A padded difference always writes its
sign (``+`` or ``-``), so its answer digits sit at fixed positions too: written only when negative, every digit
moved one place in half of the problems, and 3-digit subtraction reached 12.9% test exact match where addition
reached 100% (docs/tasks/arithmetic.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tinyformers.engine.task import ModelSizes, TrainConfig

OP_NAMES = {"+": "add", "-": "sub", "*": "mul"}
FORMATS = ("plain", "reversed", "scratchpad")

Problem = tuple[int, str, int]  # (a, op, b)


@dataclass
class ArithmeticConfig(ModelSizes, TrainConfig):
    """Attributes:
    ops: the operations, comma-separated, from + - *. digits: operand width for + and -; mul_digits: for *.
        Operands are uniform in [0, 10^width) for training, validation and test.
    format: how the answer is written: 'plain' (usual digit order), 'reversed' (least-significant digit first;
        the sign, if any, still comes first) or 'scratchpad' (reversed, and a product preceded by its partial
        products and running sums; only the final answer is scored). See the module docstring.
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
    format: str = "scratchpad"
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
    # The recipe: one model for + - * in 10 minutes of CPU time (measured 2026-12-04: 100% of the 1,000 test
    # problems of each in 10,180 steps, docs/tasks/arithmetic.md); the lr schedule follows the CPU clock.
    max_time: float = 600.0
    clock: str = "cpu"
    max_steps: int = 100_000
    cpu_bf16: bool = True  # bf16 autocast on a CPU with native bf16: faster at equal steps (docs/speed.md)
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
        if self.format not in FORMATS:
            raise ValueError(f"format={self.format!r}: one of {', '.join(FORMATS)}")
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


# --- writing a problem -----------------------------------------------------------------------------------
def width_of(cfg: ArithmeticConfig, problem: Problem) -> int:
    """The width a problem is written at: the trained one, or wider for longer operands (length test)."""
    a, op, b = problem
    return max(cfg.width(op), len(str(a)), len(str(b)))


def format_problem(cfg: ArithmeticConfig, problem: Problem) -> tuple[str, str]:
    """``(prompt, answer)`` strings, e.g. ``('123+045=', '8610')`` padded and reversed (168 = 0168)."""
    a, op, b = problem
    width = width_of(cfg, problem)
    sa, sb = (str(a).zfill(width), str(b).zfill(width)) if cfg.pad_operands else (str(a), str(b))
    value = solve_exactly(a, op, b)
    magnitude = str(abs(value)).zfill(result_width(op, width)) if cfg.pad_operands else str(abs(value))
    if cfg.format != "plain":
        magnitude = magnitude[::-1]
    sign = "-" if value < 0 else ("+" if op == "-" and cfg.pad_operands else "")
    steps = scratchpad(a, b, width) if cfg.format == "scratchpad" and op == "*" else ""
    return f"{sa}{op}{sb}=", steps + sign + magnitude


def scratchpad(a: int, b: int, width: int) -> str:
    """The steps written before a product's answer: ``P0+P1=S1+P2=...+P{w-1}=``, where ``Pi = a * b_i * 10^i`` for
    the ``w = width`` digits ``b_i`` of ``b`` (least significant first) and ``Si = P0 + ... + Pi``; each number
    reversed and zero-padded to ``2 * width`` digits. The answer that follows is the last sum ``S{w-1}`` (for
    ``width`` 1 there are no steps: the answer is ``P0``)."""
    n = 2 * width
    digits = [int(c) for c in str(b).zfill(width)[::-1]]
    steps, total = "", 0
    for i, d in enumerate(digits):
        partial = a * d * 10**i
        total += partial
        if i:
            steps += f"+{str(partial).zfill(n)[::-1]}="
            if i < width - 1:
                steps += str(total).zfill(n)[::-1]
        elif width > 1:
            steps += str(partial).zfill(n)[::-1]
    return steps


def final_answer(cfg: ArithmeticConfig, answer: str) -> str:
    """The part of a written answer that is scored: what follows a product's steps (after the last '='), or the
    whole answer in the other formats."""
    return answer[answer.rfind("=") + 1 :] if cfg.format == "scratchpad" else answer


def read_answer(cfg: ArithmeticConfig, answer: str) -> int | None:
    """The integer an answer string (as formatted by :func:`format_problem`) stands for; None if it is not a number."""
    answer = final_answer(cfg, answer)
    sign, digits = (-1 if answer[0] == "-" else 1, answer[1:]) if answer[:1] in ("-", "+") else (1, answer)
    if not digits.isdigit():
        return None
    return sign * int(digits if cfg.format == "plain" else digits[::-1])


# --- drawing problems -----------------------------------------------------------------------------------
def draw_problems(cfg: ArithmeticConfig, n: int, gen: torch.Generator, longer: bool = False) -> list[Problem]:
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


def problem_key(problem: Problem) -> tuple[str, int, int]:
    """A problem and its swapped variant share a key: holding out one holds out both."""
    a, op, b = problem
    return op, min(a, b), max(a, b)


def close_differences(cfg: ArithmeticConfig, problems: list[Problem], gen: torch.Generator) -> list[Problem]:
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
