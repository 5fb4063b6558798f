"""One trainer for every task: AdamW, warmup + cosine, clipping, accumulation, held-out evaluation, best
checkpoint, time budget, progress bar and exact resume.

Reproducibility: the batch and the dropout noise of step ``s`` come from generators seeded with
``(seed, s)``, so a run resumed from the checkpoint of step ``s`` replays exactly what an uninterrupted
run would have done (bit-identical weights on CPU, with a step budget).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from tinyformers.core.models.ensemble import Ensemble
from tinyformers.engine import accel, distributed
from tinyformers.engine.averaging import WeightEMA
from tinyformers.engine.distributed import Dist
from tinyformers.engine.loggers import Logger, check_logger, hyperparameters, make_logger
from tinyformers.engine.rundir import RunDir
from tinyformers.engine.task import Batch, Pretrains, Task, TaskData, TrainConfig, build_model, lora_config
from tinyformers.errors import Interrupted, UserError


def pick_device(name: str) -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an explicit device that is absent is a :class:`UserError`."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device here")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("--device mps: no MPS device here")
    return torch.device(name)


def optimizer_for(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices (linear and embedding weights) only, not on biases and norm gains.

    The fused implementation (one kernel for all parameters) where the device has it; on this project's
    2-core CPU it measured no faster than the per-parameter loop (benchmarks/step_variants.py), and no slower.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = bool(params) and params[0].device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, cfg.beta2), fused=fused)


def learning_rate(
    cfg: TrainConfig, step: int, elapsed: float, max_steps: int | None = None, max_time: float | None = None
) -> float:
    """Linear warmup over ``warmup_steps``, then cosine decay to ``lr * min_lr_ratio``.

    Progress is the larger of the step fraction and, with a time budget, the time fraction, so a
    time-limited run still ends its schedule at the budget. ``max_steps``/``max_time`` replace the config's
    for a phase of the run (see :func:`phase_learning_rate`).
    """
    max_steps = cfg.max_steps if max_steps is None else max_steps
    max_time = cfg.max_time if max_time is None else max_time
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, max_steps - cfg.warmup_steps)
    if max_time > 0:
        progress = max(progress, elapsed / max_time)
    progress = min(1.0, progress)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))


def pretraining(cfg: TrainConfig, state: TrainState) -> bool:
    """Whether the next step belongs to the ``pretrain`` phase (the first share of the budget)."""
    if cfg.pretrain <= 0:
        return False
    if cfg.max_time > 0:
        return state.elapsed < cfg.pretrain * cfg.max_time
    return state.step < round(cfg.pretrain * cfg.max_steps)


def phase_learning_rate(cfg: TrainConfig, state: TrainState, pre: bool) -> float:
    """The learning rate of the next step: the pretraining phase and the task's phase each have their own warmup
    and cosine over their share of the budget (one schedule over the whole run without ``pretrain``)."""
    if pre:
        return learning_rate(
            cfg, state.step, state.elapsed, max(1, round(cfg.pretrain * cfg.max_steps)), cfg.pretrain * cfg.max_time
        )
    return learning_rate(
        cfg,
        state.step - state.pretrain_steps,
        state.elapsed - state.pretrain_seconds,
        max(1, cfg.max_steps - state.pretrain_steps),
        max(0.0, cfg.max_time - state.pretrain_seconds) if cfg.max_time > 0 else 0.0,
    )


@contextlib.contextmanager
def stop_on_first_sigint() -> Iterator[Callable[[], bool]]:
    """The first Ctrl-C asks the loop to stop after the current step; a second one interrupts at once."""
    requested = False

    def handler(signum: int, frame: object) -> None:
        nonlocal requested
        if requested:
            raise KeyboardInterrupt
        requested = True

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: leave Ctrl-C alone
        yield lambda: False
        return
    try:
        yield lambda: requested
    finally:
        signal.signal(signal.SIGINT, previous)


def seconds_since_process_start() -> float:
    """Wall seconds since this process started (Linux: from ``/proc``), else since this module was imported."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED_AT


def step_seed(seed: int, step: int, micro: int = 0) -> int:
    return (seed * 1_000_003 + step * 97 + micro) % (2**63 - 1)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Parameters counted once each (tied weights are one); ``trainable_only``: those with ``requires_grad``."""
    unique = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in unique if p.requires_grad or not trainable_only)


@dataclass
class TrainState:
    """The trainer's counters, saved in every checkpoint so ``--resume`` continues exactly.

    Attributes:
        step: optimizer steps done. elapsed: training seconds so far (``cfg.clock``; evaluation excluded).
        best: best validation metric so far, at ``best_step``; best_loss: the validation loss there (a tie of the
            metric goes to the lower loss: a saturated metric, e.g. exact match 1.0 from some step on, would
            otherwise keep its first, least trained checkpoint). stale: evaluations since the metric improved.
        tokens: input tokens seen (tasks whose batches have ``input_ids``).
        pretrain_steps, pretrain_seconds: the steps and training seconds of the ``pretrain`` phase so far;
        pretrain_loss: its mean loss over the last reads (the last ``SYNC_EVERY`` steps or so).
    """

    step: int = 0
    elapsed: float = 0.0
    best: float | None = None
    best_step: int = -1
    best_loss: float | None = None
    stale: int = 0
    tokens: int = 0
    pretrain_steps: int = 0
    pretrain_seconds: float = 0.0
    pretrain_loss: float | None = None

    def out_of_budget(self, cfg: TrainConfig) -> bool:
        return self.step >= cfg.max_steps or (cfg.max_time > 0 and self.elapsed >= cfg.max_time)


@dataclass
class Training:
    """One training run: what the loop and its helpers work on."""

    task: Task
    cfg: TrainConfig
    run: RunDir
    data: TaskData
    model: nn.Module
    optimizer: torch.optim.Optimizer
    dist: Dist
    device: torch.device
    state: TrainState = field(default_factory=TrainState)
    tracker: Logger = field(default_factory=Logger)
    batch_gen: torch.Generator = field(default_factory=torch.Generator)  # reseeded per micro-batch: (seed, step)
    first_step_at: float | None = None  # seconds_since_process_start() when this process's first step was done
    ema: WeightEMA | None = None  # with cfg.ema: the weight average that evaluation and the best checkpoint use


_IMPORTED_AT = time.monotonic()
SYNC_EVERY = 10  # steps between reads of the training loss (each read waits for the device: a host sync)


@dataclass
class Losses:
    """The training loss of each step, left on the device (``pending``) and read to the host together every
    ``SYNC_EVERY`` steps, at each evaluation and before any checkpoint; ``since_eval`` holds the values read since
    the last evaluation (their mean is the log's ``train_loss``)."""

    pending: list[tuple[int, float, Tensor, str]] = field(default_factory=list)  # (steps done, lr, loss, phase)
    since_eval: list[float] = field(default_factory=list)


@dataclass
class StepModel:
    """The model the training step calls: the compiler's choice (eager, or ``torch.compile`` of it once
    compile=auto finds it repays its compile time), or under torchrun the DDP-wrapped model fixed at the start
    (compile=auto stays eager there: swapping a DDP-wrapped model mid-run is unsafe)."""

    compiler: accel.AutoCompile
    ddp: nn.Module | None = None

    def __call__(self, t: Training, batch: Batch) -> nn.Module:
        if self.ddp is not None:
            return self.ddp
        return self.compiler.model_for(batch, t.state.step, t.cfg.max_steps, t.cfg.max_time, t.state.elapsed)


def _to(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def _evaluate(task: Task, model: nn.Module, data: TaskData, split: str, cfg: TrainConfig) -> dict[str, float]:
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode() if task.eval_inference_mode else torch.no_grad():
            return task.evaluate(model, data, split, cfg)
    finally:
        model.train(was_training)


def train(
    task: Task,
    cfg: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    logger: str = "none",
) -> dict[str, float]:
    """Train ``task`` with ``cfg`` into ``run_dir``; return the final held-out metrics (also in metrics.json).

    The run directory and the logger are checked first and the directory is written only once the data and the
    model are built, so a run that fails on its data or its logger leaves no directory behind (and an existing run
    untouched, even with ``overwrite``; only a tracker that fails as it starts comes after ``overwrite``'s clearing).
    Under ``torchrun`` every process calls this; see :mod:`tinyformers.engine.distributed`. Only rank 0 writes
    and returns the metrics (the others return an empty dict), and only rank 0 sends them to ``logger``
    (:mod:`tinyformers.engine.loggers`: 'none', 'tensorboard' or 'wandb').
    """
    run = RunDir(run_dir)
    dist = distributed.from_environment(pick_device(cfg.device))
    try:
        if dist.main:
            run.check_writable(resume, overwrite)
            check_logger(logger)
        t = _setup(task, cfg, run, dist, resume)
        if dist.main:
            run.create(resume, overwrite)
            try:
                t.tracker = make_logger(logger, run.path, hyperparameters(task.name, cfg))
            except BaseException:  # e.g. W&B online without a login: no half-made run stays behind
                run.undo_create()
                raise
            if resume:
                run.trim_log(t.state.step)
            run.write_config(task.name, cfg, t.data.meta)  # on resume: records a changed budget
        dist.barrier()
        try:
            metrics = _train(t, progress and dist.main)
        except BaseException:
            t.tracker.close(failed=True)
            raise
        t.tracker.close()
        return metrics
    finally:
        dist.close()


def _setup(task: Task, cfg: TrainConfig, run: RunDir, dist: Dist, resume: bool) -> Training:
    """Data, model and optimizer (from the checkpoint with ``resume``); writes nothing."""
    status = task.data_status(cfg)
    if status:
        raise UserError(status)
    if cfg.pretrain > 0:
        if not isinstance(task, Pretrains):
            raise UserError(f"--set pretrain: task {task.name} has no self-supervised objective to pretrain with")
        if cfg.finetune == "lora":
            raise UserError("--set pretrain: pretraining trains every weight; it cannot be combined with finetune=lora")
        if dist.active:
            raise UserError("--set pretrain: not supported under torchrun yet; train with one process")
    torch.manual_seed(cfg.seed)
    # resuming: the data as the checkpoint's weights know it (the run's vocabulary, not one trained again)
    data = task.data(cfg, run.read_config(task)[1] if resume else None)
    device = dist.device(pick_device(cfg.device))
    model = build_model(task, cfg, data.meta).to(device)
    optimizer = optimizer_for(model, cfg)
    t = Training(task, cfg, run, data, model, optimizer, dist, device)
    if cfg.ema > 0:
        t.ema = WeightEMA(model, cfg.ema)
    if resume:
        t.state = TrainState(**run.load_checkpoint(model, optimizer, t.ema))
    return t


def _train(t: Training, progress: bool) -> dict[str, float]:
    """The loop: steps until the budget (or early stopping, or Ctrl-C), evaluating every ``eval_every`` steps."""
    cfg, state, dist = t.cfg, t.state, t.dist
    autocast, use_scaler = accel.autocast_for(cfg, t.device)
    scaler = torch.amp.GradScaler(t.device.type) if use_scaler else None
    bar = progress_bar(cfg, state, t.task.name, progress)
    step_model = _step_model(t, bar)
    losses = Losses()
    t.model.train()
    clock = time.perf_counter if cfg.clock == "wall" else time.process_time
    with stop_on_first_sigint() as stop_requested:
        # the checkpoint's clock is the same on every rank; later stops are rank 0's decisions
        done = state.out_of_budget(cfg)
        if pretraining(cfg, state):
            bar.set_description(f"{t.task.name} (pretraining)")
        while not done:
            pre = pretraining(cfg, state)
            t0, wall0 = clock(), time.monotonic()
            lr = phase_learning_rate(cfg, state, pre)
            loss = _optimizer_step(t, step_model, autocast, scaler, lr, pre)
            losses.pending.append((state.step + 1, lr, loss, "pretrain" if pre else "train"))
            state.step += 1
            seconds = clock() - t0
            if t.first_step_at is None:
                t.first_step_at = seconds_since_process_start()
            state.elapsed += seconds
            if pre:
                state.pretrain_steps, state.pretrain_seconds = state.step, state.elapsed
            else:
                step_model.compiler.observe(time.monotonic() - wall0)  # wall time: a compile runs g++ subprocesses
            bar.update(min(seconds, max(0.0, bar.total - bar.n)) if cfg.max_time > 0 else 1)  # never past the budget
            done = dist.decide(state.out_of_budget(cfg))
            if pre and not pretraining(cfg, state):  # the phase ends: its losses are not the task's train_loss
                _read_losses(t, losses, bar)
                recent = losses.since_eval[-SYNC_EVERY:]
                state.pretrain_loss = sum(recent) / max(1, len(recent))
                losses.since_eval.clear()
                bar.set_description(t.task.name)
            evaluate = (not pre and state.step % cfg.eval_every == 0) or done
            if evaluate or state.step % SYNC_EVERY == 0:
                _read_losses(t, losses, bar)  # before any checkpoint: a non-finite loss must never be saved
            if evaluate:
                stop = dist.main and _eval_and_checkpoint(t, losses.since_eval, bar)
                done = dist.decide(stop) or done
                losses.since_eval.clear()
            if dist.decide(stop_requested()) and not done:  # Ctrl-C: the step is complete, resume is exact
                _read_losses(t, losses, bar)
                bar.close()
                if dist.main:
                    t.run.save_checkpoint(t.model, t.optimizer, asdict(state), t.ema)
                raise Interrupted(
                    f"interrupted at step {state.step}; checkpoint saved. Continue with: "
                    f"tinyformers train {t.task.name} --out {t.run} --resume"
                )
    bar.close()
    metrics = finish(t, step_model.compiler.compiled_steps) if dist.main else {}
    dist.barrier()
    return metrics


def progress_bar(cfg: TrainConfig, state: TrainState, name: str, enabled: bool) -> tqdm:
    """Steps out of ``max_steps``; with a time budget, training seconds out of ``max_time`` instead (that budget
    ends the run, and the step count is shown beside it)."""
    if cfg.max_time > 0:
        return tqdm(
            total=cfg.max_time,
            initial=state.elapsed,
            disable=not enabled,
            desc=name,
            unit="s",
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]",
        )
    return tqdm(total=cfg.max_steps, initial=state.step, disable=not enabled, desc=name, unit="step")


def _postfix(cfg: TrainConfig, state: TrainState, **values: str) -> dict[str, Any]:
    return {"step": state.step, **values} if cfg.max_time > 0 else values


def _step_model(t: Training, bar: tqdm) -> StepModel:
    """The training step's model for ``cfg.compile``; a compile in progress shows in the progress bar."""
    name = t.task.name
    compiler = accel.AutoCompile(
        t.cfg.compile, t.model, name, t.cfg.amp, t.device, t.dist.world, lambda text: bar.set_description(text or name)
    )
    if not t.dist.active:
        return StepModel(compiler)
    return StepModel(compiler, t.dist.wrap(compiler.compiled if compiler.compiled is not None else t.model, t.device))


def _read_losses(t: Training, losses: Losses, bar: tqdm) -> None:
    """Read the pending losses (their mean over ranks) in one host sync, log them; a non-finite one stops the run."""
    if not losses.pending:
        return
    values = t.dist.mean_all(torch.stack([loss for _, _, loss, _ in losses.pending]))
    for (step, lr, _, phase), value in zip(losses.pending, values, strict=True):
        if not math.isfinite(value):
            raise UserError(
                f"loss became {value} at step {step - 1}; the last good checkpoint is kept. "
                "Usual causes: learning rate too high (try --set lr=...), fp16 overflow (try --set amp=off)"
            )
        losses.since_eval.append(value)
        t.tracker.log(step, {f"{phase}/loss": value, f"{phase}/lr": lr})
    bar.set_postfix(_postfix(t.cfg, t.state, loss=f"{values[-1]:.4f}", lr=f"{losses.pending[-1][1]:.2e}"))
    losses.pending.clear()


def clip_gradients(model: nn.Module, max_norm: float) -> None:
    """Scale the gradients so that their norm is at most ``max_norm``. An
    :class:`~tinyformers.core.models.ensemble.Ensemble`'s members are clipped each on its own, as if trained alone:
    its loss is the members' mean, so a member's gradient is ``1/k`` of its own loss's, and its clip ``max_norm/k``."""
    if isinstance(model, Ensemble):
        for params in model.members_parameters():
            nn.utils.clip_grad_norm_(params, max_norm / len(model.members))
    else:
        nn.utils.clip_grad_norm_(model.parameters(), max_norm)


def _optimizer_step(
    t: Training, step_model: StepModel, autocast: Any, scaler: Any, lr: float, pre: bool = False
) -> Tensor:
    """One optimizer step at ``lr`` over ``grad_accum`` micro-batches; returns this rank's loss of the step, on the
    device (read later with the others: see :class:`Losses`). ``pre``: a step of the pretraining phase (the task's
    :class:`Pretrains` batch and loss, on the eager model)."""
    cfg, step = t.cfg, t.state.step
    for group in t.optimizer.param_groups:
        group["lr"] = lr
    parts: list[Tensor] = []
    for micro in range(cfg.grad_accum):
        gen = t.batch_gen.manual_seed(step_seed(cfg.seed, step, micro))  # reseeded: the draws of a new generator
        pretrainer = t.task if pre and isinstance(t.task, Pretrains) else None  # _setup checked: always one
        batch = pretrainer.pretrain_batch(t.data, cfg, gen) if pretrainer else t.task.batch(t.data, cfg, gen)
        ids = batch.get("input_ids")
        t.state.tokens += ids.numel() if torch.is_tensor(ids) else 0  # of the global batch
        batch = _to(t.dist.shard(batch), t.device)
        # dropout noise of this micro-batch (and rank: shards must not share masks)
        torch.manual_seed(step_seed(cfg.seed + 1 + 7919 * t.dist.rank, step, micro))
        with autocast:
            if pretrainer:
                loss = pretrainer.pretrain_loss(t.model, batch, cfg) / cfg.grad_accum
            else:
                loss = t.task.loss(step_model(t, batch), batch, cfg) / cfg.grad_accum
        (scaler.scale(loss) if scaler else loss).backward()
        parts.append(loss.detach().float())
    if scaler:
        scaler.unscale_(t.optimizer)
    if cfg.grad_clip > 0:
        clip_gradients(t.model, cfg.grad_clip)
    if scaler:
        scaler.step(t.optimizer)
        scaler.update()
    else:
        t.optimizer.step()
    t.optimizer.zero_grad(set_to_none=True)
    if t.ema is not None and not pre:  # the average follows the task's phase only; its cost is the step's
        t.ema.update(t.model, step + 1 - t.state.pretrain_steps)
    return torch.stack(parts).sum()


def _eval_and_checkpoint(t: Training, train_losses: list[float], bar: tqdm) -> bool:
    """Evaluate on validation, keep the best weights, write the checkpoint; True = stop early."""
    task, state = t.task, t.state
    with t.ema.applied(t.model) if t.ema is not None else contextlib.nullcontext():
        metrics = _evaluate(task, t.model, t.data, "val", t.cfg)
        key = f"val_{task.metric}"
        if key not in metrics:
            raise RuntimeError(f"task {task.name} evaluate() returned no {key!r}")
        value, loss = metrics[key], metrics.get("val_loss")
        improved = state.best is None or (value > state.best if task.maximize else value < state.best)
        state.stale = 0 if improved else state.stale + 1  # patience waits for the metric, not the loss
        if improved or (value == state.best and _lower(loss, state.best_loss)):
            state.best, state.best_step, state.best_loss = value, state.step, loss
            t.run.save_weights(t.model, task.name, t.data.meta)  # load_model checks both
    entry = {
        "step": state.step,
        "train_seconds": round(state.elapsed, 3),
        "train_loss": sum(train_losses) / max(1, len(train_losses)),
        **metrics,
    }
    t.run.append_log(entry)
    t.tracker.log(state.step, {f"eval/{k}": v for k, v in entry.items() if k != "step"})
    t.run.save_checkpoint(t.model, t.optimizer, asdict(state), t.ema)
    bar.set_postfix(_postfix(t.cfg, state, loss=f"{entry['train_loss']:.4f}", **{key: f"{value:.4f}"}))
    return t.cfg.patience > 0 and state.stale >= t.cfg.patience


def _lower(loss: float | None, best_loss: float | None) -> bool:
    """True when a validation ``loss`` breaks a tie of the metric: it exists and is below the best's (or the
    best has none)."""
    return loss is not None and (best_loss is None or loss < best_loss)


def finish(t: Training, compiled_steps: int) -> dict[str, float]:
    """Reload the best weights, evaluate the held-out split, write metrics.json and the plots (and send
    both to the tracker). ``compiled_steps``: how many of this process's training steps ran the ``torch.compile``d
    model (0: all eager), so a run says what ``compile=auto`` chose."""
    task, cfg, state = t.task, t.cfg, t.state
    t.run.load_weights(t.model)
    metrics = _evaluate(task, t.model, t.data, task.final_split, cfg)
    seconds = state.elapsed
    metrics.update(params=count_parameters(t.model))
    if cfg.finetune == "lora":  # the adapters and head; params counts the frozen base too
        metrics.update(trainable_params=count_parameters(t.model, trainable_only=True))
    metrics.update(
        train_seconds=round(seconds, 2), steps=state.step, best_step=state.best_step, compiled_steps=compiled_steps
    )
    if cfg.pretrain > 0:
        metrics.update(
            pretrain_steps=state.pretrain_steps,
            pretrain_seconds=round(state.pretrain_seconds, 2),
        )
        if state.pretrain_loss is not None:
            metrics.update(pretrain_loss=state.pretrain_loss)
    if t.first_step_at is not None:  # what a user waits before training runs: imports, data, model, a compile
        metrics.update(first_step_seconds=round(t.first_step_at, 2))
    if state.tokens:
        metrics.update(train_tokens=state.tokens, tokens_per_s=round(state.tokens / max(seconds, 1e-9), 1))
    t.run.write_metrics(metrics)
    if cfg.finetune == "lora":  # what training changed, alone: ships on top of the base model (RunDir.load_adapted)
        t.run.save_adapters(t.model, lora_config(task, cfg))
    loss_plot = t.run.plot_loss(task.metric)
    plots = task.plots(t.model, t.data, cfg, str(t.run.path))
    t.tracker.final(state.step, metrics, loss_plot + list(plots))
    return metrics


def evaluate_run(task: Task, run_dir: str | Path, overrides: list[str] | None = None) -> dict[str, float]:
    """Re-evaluate a saved run of ``task`` on its held-out split; write and return the metrics."""
    run = RunDir(run_dir)
    cfg, meta, model = run.load_model(task, overrides)
    data = task.data(cfg, meta)
    metrics = _evaluate(task, model, data, task.final_split, cfg)
    saved = run.read_metrics()
    if not overrides:  # re-evaluating on the run's own data refreshes metrics.json; other data does not
        run.write_metrics({**saved, **metrics})
    return metrics
