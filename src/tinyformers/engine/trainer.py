"""One trainer for every task: AdamW, warmup + cosine, clipping, accumulation, held-out evaluation, best
checkpoint, time budget, progress bar and exact resume.

Reproducibility: the batch and the dropout noise of step ``s`` come from generators seeded with
``(seed, s)``, so a run resumed from the checkpoint of step ``s`` replays exactly what an uninterrupted
run would have done (bit-identical weights on CPU, with a step budget).
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from tinyformers.engine import accel, distributed
from tinyformers.engine import rundir as runs
from tinyformers.engine.distributed import Dist
from tinyformers.engine.loggers import Logger, hyperparameters, make_logger
from tinyformers.engine.task import Task, TaskData, TrainConfig, build_model, lora_config
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


def learning_rate(cfg: TrainConfig, step: int, elapsed: float) -> float:
    """Linear warmup over ``warmup_steps``, then cosine decay to ``lr * min_lr_ratio``.

    Progress is the larger of the step fraction and, with a time budget, the time fraction, so a
    time-limited run still ends its schedule at the budget.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    if cfg.max_time > 0:
        progress = max(progress, elapsed / cfg.max_time)
    progress = min(1.0, progress)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))


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


def step_seed(seed: int, step: int, micro: int = 0) -> int:
    return (seed * 1_000_003 + step * 97 + micro) % (2**63 - 1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Never clobber a user's run: an existing run needs ``--resume`` or an explicit ``--overwrite``."""
    exists = (run_dir / runs.CONFIG).exists()
    if resume:
        if not (run_dir / runs.CHECKPOINT).exists():
            raise UserError(f"{run_dir}: nothing to resume (no {runs.CHECKPOINT})")
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir}: exists and is not a directory")
    if exists and not overwrite:
        raise UserError(f"{run_dir}: a run is already there; use --resume to continue it or --overwrite to replace it")
    if exists and overwrite:
        for name in (runs.CONFIG, runs.WEIGHTS, runs.ADAPTERS, runs.CHECKPOINT, runs.LOG, runs.METRICS, "loss.png"):
            (run_dir / name).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


SYNC_EVERY = 10  # steps between reads of the loss (each read waits for the device: a host sync)


def _evaluate(task: Task, model: nn.Module, data: TaskData, split: str, cfg: TrainConfig) -> dict[str, float]:
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode() if task.eval_inference_mode else torch.no_grad():
            return task.evaluate(model, data, split, cfg)
    finally:
        model.train(was_training)


def _log_entries(path: Path) -> list[dict]:
    entries = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:  # a line torn by a kill (older runs appended in place)
            continue
    return entries


def _write_log(path: Path, entries: list[dict]) -> None:
    """The whole log, atomically: a kill leaves the previous complete log, never a torn line."""
    runs.atomic_write(path, lambda tmp: Path(tmp).write_text("".join(json.dumps(e) + "\n" for e in entries)))


def _trim_log(path: Path, step: int) -> None:
    """On resume, drop log lines written after the checkpoint (they will be written again)."""
    _write_log(path, [e for e in _log_entries(path) if e["step"] <= step])


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

    Under ``torchrun`` every process calls this; see :mod:`tinyformers.engine.distributed`. Only rank 0 writes
    and returns the metrics (the others return an empty dict), and only rank 0 sends them to ``logger``
    (:mod:`tinyformers.engine.loggers`: 'none', 'tensorboard' or 'wandb').
    """
    run_dir = Path(run_dir)
    dist = distributed.from_environment(pick_device(cfg.device))
    try:
        if dist.main:
            prepare_run_dir(run_dir, resume, overwrite)
        tracker = make_logger(logger, run_dir, hyperparameters(task.name, cfg)) if dist.main else Logger()
        dist.barrier()
        try:
            metrics = _train(task, cfg, run_dir, resume, progress and dist.main, dist, tracker)
        except BaseException:
            tracker.close(failed=True)
            raise
        tracker.close()
        return metrics
    finally:
        dist.close()


def _train(
    task: Task, cfg: TrainConfig, run_dir: Path, resume: bool, progress: bool, dist: Dist, tracker: Logger
) -> dict[str, float]:
    status = task.data_status(cfg)
    if status:
        raise UserError(status)
    torch.manual_seed(cfg.seed)
    data = task.data(cfg)
    device = dist.device(pick_device(cfg.device))
    model = build_model(task, cfg, data.meta).to(device)
    optimizer = optimizer_for(model, cfg)
    state: dict[str, Any] = {"step": 0, "elapsed": 0.0, "best": None, "best_step": -1, "stale": 0, "tokens": 0}
    if resume:
        state = runs.load_checkpoint(run_dir / runs.CHECKPOINT, model, optimizer)
    if dist.main:
        if resume:
            _trim_log(run_dir / runs.LOG, state["step"])
        runs.save_run_config(run_dir, task.name, cfg, data.meta)  # on resume: records a changed budget
    autocast, use_scaler = accel.autocast_for(cfg, device)
    scaler = torch.amp.GradScaler(device.type) if use_scaler else None
    params = count_parameters(model)

    bar = tqdm(total=cfg.max_steps, initial=state["step"], disable=not progress, desc=task.name, unit="step")
    # compile=auto compiles only the training step, when it repays its compile time; eval runs eager
    compiler = accel.AutoCompile(
        cfg.compile, model, task.name, cfg.amp, device, dist.world, lambda text: bar.set_description(text or task.name)
    )
    ddp_model = None  # under torchrun the step's model is fixed at the start (compile=auto stays eager there)
    if dist.active:
        ddp_model = dist.wrap(compiler.compiled if compiler.compiled is not None else model, device)
    train_losses: list[float] = []
    pending: list[tuple[int, float, torch.Tensor]] = []  # (step, lr, loss) not yet read from the device

    def read_losses() -> None:
        """Read the pending losses in one host sync; log them; a non-finite one stops the run."""
        if not pending:
            return
        values = dist.mean_all(torch.stack([loss for _, _, loss in pending]))
        for (at, lr_at, _), value in zip(pending, values, strict=True):
            if not math.isfinite(value):
                raise UserError(
                    f"loss became {value} at step {at}; the last good checkpoint is kept. "
                    "Usual causes: learning rate too high (try --set lr=...), fp16 overflow (try --set amp=off)"
                )
            train_losses.append(value)
            tracker.log(at + 1, {"train/loss": value, "train/lr": lr_at})
        bar.set_postfix(loss=f"{values[-1]:.4f}", lr=f"{pending[-1][1]:.2e}")
        pending.clear()

    model.train()
    clock = time.perf_counter if cfg.clock == "wall" else time.process_time
    batch_gen = torch.Generator()
    with stop_on_first_sigint() as stop_requested:
        # the checkpoint's clock is the same on every rank; later stops are rank 0's decisions
        done = state["step"] >= cfg.max_steps or (cfg.max_time > 0 and state["elapsed"] >= cfg.max_time)
        while not done:
            step = state["step"]
            t0 = clock()
            lr = learning_rate(cfg, step, state["elapsed"])
            for group in optimizer.param_groups:
                group["lr"] = lr
            total: Any = 0.0  # becomes a tensor: the step's loss on the device
            for micro in range(cfg.grad_accum):
                gen = batch_gen.manual_seed(step_seed(cfg.seed, step, micro))  # reseeded: the same draws as new
                batch = task.batch(data, cfg, gen)
                ids = batch.get("input_ids")
                state["tokens"] += ids.numel() if torch.is_tensor(ids) else 0  # of the global batch
                batch = _to(dist.shard(batch), device)
                # dropout noise of this micro-batch (and rank: shards must not share masks)
                torch.manual_seed(step_seed(cfg.seed + 1 + 7919 * dist.rank, step, micro))
                if ddp_model is not None:
                    forward_model = ddp_model
                else:
                    forward_model = compiler.model_for(batch, step, cfg.max_steps, cfg.max_time, state["elapsed"])
                with autocast:
                    loss = task.loss(forward_model, batch) / cfg.grad_accum
                (scaler.scale(loss) if scaler else loss).backward()
                # this rank's loss, left on the device: the global mean is read every SYNC_EVERY steps
                total = total + loss.detach().float()
            if scaler:
                scaler.unscale_(optimizer)
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] = step + 1
            state["elapsed"] += clock() - t0
            compiler.observe(clock() - t0)
            pending.append((step, lr, total))
            bar.update(1)

            last = state["step"] >= cfg.max_steps or (cfg.max_time > 0 and state["elapsed"] >= cfg.max_time)
            done = dist.decide(last)
            evaluate = state["step"] % cfg.eval_every == 0 or done
            if evaluate or state["step"] % SYNC_EVERY == 0:
                read_losses()  # before any checkpoint: a non-finite loss must never be saved
            if evaluate:
                stop = dist.main and _eval_and_checkpoint(
                    task, model, optimizer, data, cfg, run_dir, state, train_losses, bar, tracker
                )
                done = dist.decide(stop) or done
                train_losses.clear()
            if dist.decide(stop_requested()) and not done:  # Ctrl-C: the step is complete, resume is exact
                read_losses()
                bar.close()
                if dist.main:
                    runs.save_checkpoint(run_dir / runs.CHECKPOINT, model, optimizer, state)
                raise Interrupted(
                    f"interrupted at step {state['step']}; checkpoint saved. Continue with: "
                    f"tinyformers train {task.name} --out {run_dir} --resume"
                )
    bar.close()
    metrics = finish(task, model, data, cfg, run_dir, state, params, tracker) if dist.main else {}
    dist.barrier()
    return metrics


def _eval_and_checkpoint(
    task: Task,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: TaskData,
    cfg: TrainConfig,
    run_dir: Path,
    state: dict,
    train_losses: list[float],
    bar: tqdm,
    tracker: Logger,
) -> bool:
    """Evaluate on validation, keep the best weights, write the checkpoint; True = stop early."""
    metrics = _evaluate(task, model, data, "val", cfg)
    key = f"val_{task.metric}"
    if key not in metrics:
        raise RuntimeError(f"task {task.name} evaluate() returned no {key!r}")
    value = metrics[key]
    best = state["best"]
    improved = best is None or (value > best if task.maximize else value < best)
    if improved:
        state.update(best=value, best_step=state["step"], stale=0)
        runs.save_weights(model, run_dir / runs.WEIGHTS, task.name, data.meta)  # load_run checks both
    else:
        state["stale"] += 1
    entry = {
        "step": state["step"],
        "train_seconds": round(state["elapsed"], 3),
        "train_loss": sum(train_losses) / max(1, len(train_losses)),
        **metrics,
    }
    _write_log(run_dir / runs.LOG, [*_log_entries(run_dir / runs.LOG), entry])
    tracker.log(state["step"], {f"eval/{k}": v for k, v in entry.items() if k != "step"})
    runs.save_checkpoint(run_dir / runs.CHECKPOINT, model, optimizer, state)
    bar.set_postfix({"loss": f"{entry['train_loss']:.4f}", key: f"{value:.4f}"})
    return cfg.patience > 0 and state["stale"] >= cfg.patience


def read_log(run_dir: Path) -> list[dict]:
    return _log_entries(run_dir / runs.LOG)


def finish(
    task: Task,
    model: nn.Module,
    data: TaskData,
    cfg: TrainConfig,
    run_dir: Path,
    state: dict,
    params: int,
    tracker: Logger | None = None,
) -> dict[str, float]:
    """Reload the best weights, evaluate the held-out split, write metrics.json and the plots (and send
    both to ``tracker``)."""
    from tinyformers.viz.plots import plot_loss

    tensors, _ = runs.read_safetensors(run_dir / runs.WEIGHTS)
    runs.load_tensors(model, tensors, str(run_dir / runs.WEIGHTS))
    metrics = _evaluate(task, model, data, task.final_split, cfg)
    seconds = state["elapsed"]
    metrics.update(
        params=params,
        train_seconds=round(seconds, 2),
        steps=state["step"],
        best_step=state["best_step"],
    )
    if state["tokens"]:
        metrics.update(train_tokens=state["tokens"], tokens_per_s=round(state["tokens"] / max(seconds, 1e-9), 1))
    runs.write_json(run_dir / runs.METRICS, metrics)
    if cfg.finetune == "lora":  # what training changed, alone: ships on top of the base model (runs.load_adapted)
        runs.save_run_adapters(model, run_dir, lora_config(task, cfg))
    plot_loss(read_log(run_dir), run_dir / "loss.png", task.metric)
    plots = task.plots(model, data, cfg, str(run_dir))
    if tracker is not None:
        loss_plot = [str(run_dir / "loss.png")] if (run_dir / "loss.png").exists() else []
        tracker.final(state["step"], metrics, loss_plot + list(plots))
    return metrics


def evaluate_run(run_dir: str | Path, overrides: list[str] | None = None) -> dict[str, float]:
    """Re-evaluate a saved run on its held-out split; write and return the metrics."""
    task, cfg, meta, model = runs.load_run(run_dir, overrides)
    data = task.data(cfg, meta)
    metrics = _evaluate(task, model, data, task.final_split, cfg)
    saved = runs.read_json(Path(run_dir) / runs.METRICS) if (Path(run_dir) / runs.METRICS).exists() else {}
    if not overrides:  # re-evaluating on the run's own data refreshes metrics.json; other data does not
        runs.write_json(Path(run_dir) / runs.METRICS, {**saved, **metrics})
    return metrics
