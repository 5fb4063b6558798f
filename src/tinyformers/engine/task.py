"""The task interface. A task answers six questions — config, data, model, loss, evaluate, predict — and the
trainer, the run directory and the CLI work through these answers only, so a new task is one new file.

Differences from a plain "dataset + model" split, and why:

* The config is one dataclass holding both the task's hyperparameters and its training recipe
  (:class:`TrainConfig` fields), because the recommended minimal recipe *is* the answer a task gives.
* ``data()`` returns ``meta``: the JSON-able facts the model and tokenizer need (vocabulary, classes).
  It is saved in the run, so ``predict``/``generate`` rebuild the model without touching the data.
* ``batch()`` draws a random training batch from a ``torch.Generator`` that the trainer seeds with (seed, step):
  any step's batch can be recomputed, which is what makes ``--resume`` bit-exact.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

import torch
from torch import Tensor, nn

from tinyformers.core.lora import LoRAConfig, apply_lora
from tinyformers.engine.accel import COMPILE_VALUES
from tinyformers.errors import UserError


@dataclass
class TrainConfig:
    """The training recipe every task config extends; a task overrides the defaults it needs.

    Attributes:
        max_steps: optimizer steps. max_time: training budget in seconds (0 = none); with a budget the
            learning-rate schedule follows elapsed time, so such runs are not bit-reproducible.
        clock: what max_time and ``train_seconds`` count: 'wall' (wall-clock) or 'cpu' (the CPU time of the
            training process: with OMP_NUM_THREADS=1, what the run takes on an idle core, even on a machine
            busy with other jobs — a fair budget there; with n threads it runs out up to n times faster).
        batch_size: examples per micro-batch. grad_accum: micro-batches per optimizer step.
        lr: peak learning rate. min_lr_ratio: final lr as a fraction of lr (cosine decay).
        warmup_steps: linear warmup. weight_decay: AdamW decay on matrices (not on biases and norms).
        beta2: AdamW's second-moment decay. grad_clip: max gradient norm (0 = off).
        eval_every: steps between held-out evaluations (a checkpoint is written at each).
        patience: stop after this many evaluations without improvement (0 = never).
        seed: seeds data, init and dropout. device: 'auto', 'cpu', 'cuda', 'mps'.
        amp: 'auto' (bf16/fp16 autocast on CUDA; on a CPU bf16 only with native bf16 and ``cpu_bf16``),
            'bf16' (also on CPU) or 'off'. cpu_bf16: the recipe measured faster with bf16 autocast on a CPU
            with native bf16, at equal steps and with the held-out metric within noise (a task opts in).
        compile: 'auto' (torch.compile the training step when it repays its compile time, see
            :class:`tinyformers.engine.accel.AutoCompile`), 'on' or 'off' (``true``/``false`` also accepted).
        finetune: 'full' trains every weight; 'lora' freezes the model the task built (pretrained, with
            ``init=...`` where the task has it) and trains low-rank adapters (:mod:`tinyformers.core.lora`) plus the
            task's head. lora_r, lora_alpha, lora_dropout: the adapters. lora_targets: comma-separated
            subset of q,k,v,o,ffn.
        pretrain: the share of the budget (of ``max_time`` with a time budget, else of ``max_steps``) spent first
            on the task's self-supervised objective (a task with :class:`Pretrains`, e.g. masked-language
            modelling of its own training texts); that phase has its own warmup and cosine, and evaluation and
            checkpoint selection start after it (0 = none).
        ema: the decay of an exponential moving average of the weights (:mod:`tinyformers.engine.averaging`),
            e.g. 0.999; evaluation, the best checkpoint and the final metrics use the average (0 = off).
    """

    max_steps: int = 1000
    max_time: float = 0.0
    clock: str = "wall"
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    beta2: float = 0.99
    grad_clip: float = 1.0
    eval_every: int = 200
    patience: int = 0
    seed: int = 1337
    device: str = "auto"
    amp: str = "auto"
    cpu_bf16: bool = False
    compile: str = "auto"
    finetune: str = "full"
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: str = "q,v"
    pretrain: float = 0.0
    ema: float = 0.0

    def __post_init__(self) -> None:
        if str(self.compile).lower() in COMPILE_VALUES:  # true/false: the values from before 'auto'
            self.compile = COMPILE_VALUES[str(self.compile).lower()]
        checks = {
            "max_steps": self.max_steps >= 1,
            "max_time": self.max_time >= 0,
            "clock": self.clock in ("wall", "cpu"),
            "batch_size": self.batch_size >= 1,
            "grad_accum": self.grad_accum >= 1,
            "lr": self.lr > 0,
            "min_lr_ratio": 0 <= self.min_lr_ratio <= 1,
            "warmup_steps": self.warmup_steps >= 0,
            "weight_decay": self.weight_decay >= 0,
            "beta2": 0 < self.beta2 < 1,
            "grad_clip": self.grad_clip >= 0,
            "eval_every": self.eval_every >= 1,
            "patience": self.patience >= 0,
            "device": self.device in ("auto", "cpu", "cuda", "mps"),
            "amp": self.amp in ("auto", "bf16", "off"),
            "compile": self.compile in ("auto", "on", "off"),
            "finetune": self.finetune in ("full", "lora"),
            "lora_r": self.lora_r >= 1,
            "lora_dropout": 0 <= self.lora_dropout < 1,
            "lora_targets": bool(self.lora_targets)
            and set(self.lora_targets.split(",")) <= {"q", "k", "v", "o", "ffn"},
            "pretrain": 0 <= self.pretrain < 1,
            "ema": 0 <= self.ema < 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(", ".join(f"{k}={getattr(self, k)!r} is out of range" for k in bad))


@dataclass
class ModelSizes:
    """The transformer's size, shared by every task config and validated here once.

    A task config extends both: ``class SanityConfig(ModelSizes, TrainConfig)`` and overrides only the defaults
    it changes; ``--set d_model=...`` (and nanoGPT's ``n_embd``...) reach these fields like any other. A task's
    ``model()`` passes :meth:`sizes` to the core config instead of copying the fields one by one.

    Attributes:
        d_model: residual width. n_heads: attention heads. n_layers: blocks (per stack).
        d_ff: feed-forward inner width; 0 = 4 d_model (the paper's ratio, nanoGPT's fixed choice).
        dropout: residual/embedding/feed-forward dropout.
    """

    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 256
    dropout: float = 0.0

    def __post_init__(self) -> None:
        parent = getattr(super(), "__post_init__", None)  # TrainConfig's checks, when mixed in with it
        if parent is not None:
            parent()
        checks = {
            "d_model": self.d_model >= 1,
            "n_heads": self.n_heads >= 1,
            "n_layers": self.n_layers >= 1,
            "d_ff": self.d_ff >= 0,
            "dropout": 0 <= self.dropout < 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ModelSizeError(", ".join(f"{k}={getattr(self, k)!r} is out of range" for k in bad))
        if self.d_model % self.n_heads:  # core's message: the same whether a task or core finds it
            raise ModelSizeError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")

    def sizes(self) -> dict[str, Any]:
        """The fields as keyword arguments for a core config (``CoreConfig``, ``DecoderConfig``...)."""
        return {
            "d_model": self.d_model,
            "n_heads": self.n_heads,
            "n_layers": self.n_layers,
            "d_ff": self.d_ff or 4 * self.d_model,
            "dropout": self.dropout,
        }


class ModelSizeError(ValueError):
    """An invalid :class:`ModelSizes` field; reported as "invalid model settings", as when core refuses a size."""


@dataclass(frozen=True)
class Scorecard:
    """How ``tinyformers challenge`` judges a task (keys of its metrics.json).

    Attributes:
        metric: the held-out metric, e.g. 'test_accuracy'. higher_is_better: its direction.
        baselines: keys of the baselines measured on the same split (persistence, n-gram, lookup...).
        limit: key of a known limit (e.g. the Bayes-optimal accuracy), if the task computes one.
        limit_value: a constant limit instead, known without measuring (1.0: exact match of a deterministic answer).
        tolerance: a metric within this (absolute) distance of the limit "reaches the limit", whatever the
            baselines score: when a baseline is itself perfect (copy's is the input), nothing can beat it.
        baseline_runs: baselines that must be trained, as (name, ``--set`` overrides) pairs: the challenge trains
            the task again with the overrides (e.g. ``("cnn_accuracy", ("model=cnn",))``) within the same budget,
            and the run's ``metric`` becomes baseline ``name``.
        quick: ``--set`` overrides for ``--quick`` (a tiny model and data; the run only checks the pipeline).
        summary: one sentence for the report: what the task asks and what to look at.
        recipe: ``--set`` overrides on top of the task's defaults that the challenge trains (the recipe the task
            page recommends when it differs from ``tinyformers train``'s quicker defaults), baselines included.
        budget_minutes: the training budget the task page states; the challenge gives every training of the task
            this much of its clock unless ``--budget-minutes`` sets one budget for all.
        margin: the lead over the best baseline that a win needs (absolute, in the metric's units): a metric
            closer to the best baseline than this, on either side, is "level with" it. For a metric whose
            test-set noise is about as large as the differences the task produces (a few images in 1,000), so
            that one run's lucky draw is not called a win; 0 = any lead wins.
        also: further held-out metrics a win needs as well, each with its baselines, as ``(metric, baselines)``
            pairs in the same direction as ``metric``: the task "beats every baseline" only when each of them is
            ahead of its own best baseline too (translate: BLEU, and chrF against the lookup's chrF, since a
            corpus BLEU can lead while the characters are no better).
    """

    metric: str
    higher_is_better: bool = True
    baselines: tuple[str, ...] = ()
    limit: str | None = None
    limit_value: float | None = None
    tolerance: float = 0.0
    baseline_runs: tuple[tuple[str, tuple[str, ...]], ...] = ()
    quick: tuple[str, ...] = ()
    summary: str = ""
    recipe: tuple[str, ...] = ()
    budget_minutes: float = 2.0
    margin: float = 0.0
    also: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass
class TaskData:
    """Fixed, seeded splits plus ``meta`` (JSON-able; saved in the run to rebuild model and tokenizer)."""

    splits: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


ConfigT = TypeVar("ConfigT", bound=TrainConfig)

Batch = dict[str, Tensor]
"""A training or evaluation batch: tensors by name. Conventions, stated once for every task:

* ``labels`` holds the targets (class ids, next tokens, tags, values), whatever the task; positions to ignore carry
  ``IGNORE_INDEX`` (-100, as ``F.cross_entropy`` and HF).
* ``attention_mask`` is HF's: 1 (True) for a real token, 0 for padding, shape (N, L). Models turn it into the
  attention's ``key_padding_mask`` (True = ignore) in one place (``core.models.base``).
"""

IGNORE_INDEX = -100


class Task(Generic[ConfigT]):
    """Base class of every task, generic over its config: ``class Reverse(Task[SanityConfig])``.

    The required methods are below. Optional capabilities are the protocols after this class
    (:class:`Predicts`, :class:`GeneratesText`, :class:`GeneratesFiles`, :class:`ViewsAttention`): a task that has
    one subclasses it as well, and the apps check ``isinstance(task, Predicts)``, never ``hasattr``.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    Config: ClassVar[type[TrainConfig]] = TrainConfig
    metric: ClassVar[str] = "loss"  # selects the best checkpoint: evaluate(...)["val_" + metric]
    maximize: ClassVar[bool] = False
    final_split: ClassVar[str] = "test"  # the held-out split metrics.json reports
    head_modules: ClassVar[tuple[str, ...]] = ()  # trained in full when finetune=lora (e.g. "classifier")
    scorecard: ClassVar[Scorecard | None] = None  # how `tinyformers challenge` reports the task
    # evaluate() under torch.inference_mode (faster than no_grad); only for tasks whose evaluate creates
    # nothing that autograd uses later (e.g. pixels trains its CNN judge inside evaluate: it must stay False)
    eval_inference_mode: ClassVar[bool] = False

    def data_status(self, cfg: ConfigT) -> str | None:
        """None when the data is available here, else one line saying how to get it."""
        return None

    def data(self, cfg: ConfigT, meta: dict[str, Any] | None = None) -> TaskData:
        """The splits. With ``meta`` (from a saved run), reuse its vocabulary/classes instead of building them."""
        raise NotImplementedError

    def model(self, cfg: ConfigT, meta: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    def batch(self, data: TaskData, cfg: ConfigT, generator: torch.Generator) -> Batch:
        """A random training batch of ``cfg.batch_size`` examples drawn with ``generator``."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Batch, cfg: ConfigT) -> Tensor:
        """A scalar; padding (``labels == IGNORE_INDEX``, ``attention_mask == 0``) excluded."""
        return model(**batch).loss

    def evaluate(self, model: nn.Module, data: TaskData, split: str, cfg: ConfigT) -> dict[str, float]:
        """Flat dict of metrics on ``split``; keys carry the split (``val_loss``, ``test_accuracy``) and
        baselines/limits computed on the same split carry their own names."""
        raise NotImplementedError

    def plots(self, model: nn.Module, data: TaskData, cfg: ConfigT, run_dir: str) -> list[str]:
        """Write task-specific PNGs into ``run_dir``; return their paths."""
        return []


@runtime_checkable
class Predicts(Protocol):
    """``tinyformers predict``: the model on the user's inputs (texts, or file paths), one output line per input.

    ``options`` are the predict flags the task declares in ``predict_options`` (e.g. ``num_beams``); the CLI refuses
    the others with a one-line error.
    """

    predict_options: ClassVar[tuple[str, ...]]

    def predict(
        self, model: nn.Module, cfg: Any, meta: dict[str, Any], inputs: list[str], **options: Any
    ) -> list[str]: ...


@runtime_checkable
class Pretrains(Protocol):
    """``--set pretrain=F``: the first share ``F`` of the budget trains a self-supervised objective on the task's
    own inputs (labels unused), e.g. BERT's masked-language model, before the task's loss. The model the task
    builds must hold what that objective needs (a task adds its pretraining head when ``cfg.pretrain > 0``)."""

    def pretrain_batch(self, data: TaskData, cfg: Any, generator: torch.Generator) -> Batch: ...

    def pretrain_loss(self, model: nn.Module, batch: Batch, cfg: Any) -> Tensor: ...


@runtime_checkable
class GeneratesText(Protocol):
    """``tinyformers generate`` / ``serve``: continue a text prompt. ``decoding`` are
    :class:`~tinyformers.core.generation.GenerationConfig`'s fields (HF's names), plus ``seed`` and ``streamer``
    (a callable receiving each new piece of text)."""

    def generate(self, model: nn.Module, cfg: Any, meta: dict[str, Any], prompt: str, **decoding: Any) -> list[str]: ...


@runtime_checkable
class GeneratesFiles(Protocol):
    """``tinyformers generate`` for tasks whose output is a file (an image grid, MIDI): writes to ``out`` and
    returns lines to print. ``file_options`` names the extra flags the task takes (e.g. ``class_label``)."""

    file_options: ClassVar[tuple[str, ...]]

    def generate_file(
        self, model: nn.Module, cfg: Any, meta: dict[str, Any], out: Path | None, **options: Any
    ) -> list[str]: ...


@runtime_checkable
class ViewsAttention(Protocol):
    """``tinyformers attention``: draw the attention of ``model`` on one input; return the files written."""

    def attention(
        self, model: nn.Module, cfg: Any, meta: dict[str, Any], text: str, out: Path, html: Path | None = None
    ) -> list[str]: ...


def config_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


# nanoGPT's names, accepted for the same settings
ALIASES = {"n_layer": "n_layers", "n_head": "n_heads", "n_embd": "d_model", "learning_rate": "lr"}


def parse_value(text: str, current: Any, key: str) -> Any:
    """Parse ``--set key=text`` to the type of the field's current value; errors name the key."""
    try:
        if isinstance(current, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
    except ValueError:
        kind = {"bool": "true or false", "int": "an integer", "float": "a number"}[type(current).__name__]
        raise UserError(f"--set {key}={text}: expected {kind}") from None
    return text


def apply_overrides(cfg: TrainConfig, pairs: list[str]) -> TrainConfig:
    """Apply ``key=value`` strings to a config; unknown keys and bad values are a :class:`UserError`."""
    fields = config_fields(type(cfg))
    changes: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        key = ALIASES.get(key, key) if key not in fields else key
        if not sep or not key:
            raise UserError(f"--set {pair!r}: expected key=value")
        if key not in fields:
            raise UserError(f"--set {key}: unknown setting; known: {', '.join(sorted(fields))}")
        changes[key] = parse_value(text.strip(), getattr(cfg, key), key)
    try:
        return dataclasses.replace(cfg, **changes)
    except ModelSizeError as e:
        raise UserError(f"invalid model settings: {e}") from None
    except (ValueError, TypeError) as e:
        raise UserError(f"invalid settings: {e}") from None


def build_model(task: Task, cfg: TrainConfig, meta: dict[str, Any]) -> nn.Module:
    """``task.model``, with LoRA adapters when ``finetune=lora``; invalid hyperparameter combinations (e.g.
    d_model % n_heads) are a :class:`UserError`."""
    try:
        model = task.model(cfg, meta)
        if cfg.finetune == "lora":
            apply_lora(model, lora_config(task, cfg))
        return model
    except ValueError as e:
        raise UserError(f"invalid model settings: {e}") from None


def lora_config(task: Task, cfg: TrainConfig) -> LoRAConfig:
    """The :class:`~tinyformers.core.lora.LoRAConfig` of ``cfg``'s lora_* settings (the task's head trains in full)."""
    return LoRAConfig(
        r=cfg.lora_r,
        alpha=cfg.lora_alpha,
        dropout=cfg.lora_dropout,
        targets=tuple(cfg.lora_targets.split(",")),
        train=task.head_modules,
    )
