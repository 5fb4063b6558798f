"""A run directory: everything needed to rebuild, resume, evaluate and use a trained model.

```
RUN/
  config.json          task name, full config, meta (vocabulary, classes...) — rebuilds model + tokenizer
  model.safetensors    the best weights (by the task's validation metric)
  checkpoint.safetensors  last weights + optimizer state (+ weight average) + trainer state, for --resume
  log.jsonl            one line per evaluation
  metrics.json         final held-out metrics, a flat JSON object
  adapters.safetensors with finetune=lora: the best adapters + task head alone (load_adapted puts them on the base)
  loss.png             training and validation loss; the task's own figures (*.png) beside it
  tensorboard/, wandb/ with --logger: the trackers' files
```

:class:`RunDir` owns these files: it names, creates, clears, writes and reads them; the trainer never names or
deletes a file itself. It knows files, not tasks: reading a config needs the :class:`Task` it belongs to, and
finding that task by name is the registry's job (:func:`tinyformers.tasks.load_run`), one layer up.

Every file is written atomically (:mod:`tinyformers.io`): a run killed at any moment keeps the previous complete
version of each file. Nothing is ever unpickled: tensors are safetensors, the rest JSON.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from tinyformers import __version__
from tinyformers.core.lora import LoRAConfig, load_adapters, save_adapters
from tinyformers.engine.averaging import WeightEMA
from tinyformers.engine.task import Task, TrainConfig, apply_overrides, build_model
from tinyformers.errors import UserError
from tinyformers.io import atomic_write, read_json, write_json

CONFIG, WEIGHTS, CHECKPOINT, LOG, METRICS, ADAPTERS, LOSS_PLOT = (
    "config.json",
    "model.safetensors",
    "checkpoint.safetensors",
    "log.jsonl",
    "metrics.json",
    "adapters.safetensors",
    "loss.png",
)
TRACKER_DIRS = ("tensorboard", "wandb")  # written by the --logger trackers (engine.loggers)


def unique_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The state dict with tied weights stored once (safetensors refuses shared storage)."""
    seen: set[tuple[int, tuple[int, ...]]] = set()
    out = {}
    for name, t in model.state_dict().items():
        key = (t.data_ptr(), tuple(t.shape))
        if key in seen:
            continue
        seen.add(key)
        out[name] = t.detach().contiguous().cpu()
    return out


def load_tensors(model: nn.Module, tensors: dict[str, Tensor], source: str) -> None:
    """Load weights saved by :func:`unique_tensors`; a mismatch is a one-line :class:`UserError`."""
    expected = unique_tensors(model)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(model.state_dict()))
    if missing or unexpected:
        raise UserError(f"{source}: weights do not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, t in tensors.items():
        if name in expected and tuple(t.shape) != tuple(expected[name].shape):
            raise UserError(
                f"{source}: {name} has shape {tuple(t.shape)}, the model needs {tuple(expected[name].shape)}"
            )
    model.load_state_dict(tensors, strict=False)


def read_safetensors(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and string metadata of a safetensors file; anything unreadable is a :class:`UserError`."""
    if not os.path.exists(path):
        raise UserError(f"{path}: not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118
    except Exception as e:  # safetensors raises several types for truncated or foreign files
        raise UserError(f"{path}: not a valid safetensors file ({str(e).splitlines()[0][:120]})") from None


RUN_INFO = "tinyformers"  # the weights' metadata key: JSON {"task", "meta_sha256"}
TRAINER_STATE = "tinyformers_checkpoint"  # the checkpoint's metadata key: JSON {"trainer", "param_groups"}


def meta_fingerprint(meta: dict) -> str:
    """SHA-256 of a run's ``meta`` (vocabulary, classes...) as JSON, stored beside the weights it was trained with:
    a ``config.json`` whose tokenizer has the right size but other tokens would otherwise load silently."""
    return hashlib.sha256(json.dumps(meta).encode()).hexdigest()


def save_weights(model: nn.Module, path: str | Path, task: str = "", meta: dict | None = None) -> None:
    """The weights alone; with ``task`` and ``meta``, also what they were trained for (checked by
    :meth:`RunDir.load_model`)."""
    # ONE metadata key: safetensors writes several in hash-map order, and the file's bytes must be reproducible
    info = {RUN_INFO: json.dumps({"task": task, "meta_sha256": meta_fingerprint(meta)})} if meta is not None else None
    atomic_write(path, lambda tmp: save_file(unique_tensors(model), tmp, metadata=info))


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict,
    ema: WeightEMA | None = None,
) -> None:
    """Weights, AdamW moments, the weight average (with ``ema``) and trainer state in one safetensors file
    (tensors + JSON metadata)."""
    tensors = {f"model.{k}": v for k, v in unique_tensors(model).items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.state().items()})
    opt = optimizer.state_dict()
    for idx, s in opt["state"].items():
        for k, v in s.items():
            tensors[f"optim.{idx}.{k}"] = v.detach().contiguous().cpu() if torch.is_tensor(v) else torch.tensor(v)
    # ONE metadata key, as in save_weights: two identical runs give identical bytes
    meta = {TRAINER_STATE: json.dumps({"trainer": state, "param_groups": opt["param_groups"]})}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_checkpoint(
    path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, ema: WeightEMA | None = None
) -> dict:
    """Restore model, optimizer (and the weight average, with ``ema``) in place; return the trainer state."""
    tensors, meta = read_safetensors(path)
    load_tensors(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, str(path))
    if ema is not None:
        try:
            ema.load_state({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}, str(path))
        except ValueError as e:
            raise UserError(str(e)) from None
    state: dict[int, dict[str, Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    try:
        # checkpoints written before the single key kept the two parts as separate keys
        saved = json.loads(meta[TRAINER_STATE]) if TRAINER_STATE in meta else {k: json.loads(meta[k]) for k in meta}
        optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
        return saved["trainer"]
    except (KeyError, ValueError) as e:
        raise UserError(f"{path}: checkpoint does not fit this model/optimizer ({e})") from None


def save_run_config(run_dir: Path, task_name: str, cfg: Any, meta: dict) -> None:
    write_json(
        run_dir / CONFIG,
        {"task": task_name, "config": dataclasses.asdict(cfg), "meta": meta, "tinyformers_version": __version__},
    )


def plot_loss(log: list[dict], path: str | Path, metric: str = "loss") -> None:
    """Training loss and validation loss (and the selection metric, if not the loss) against steps."""
    if not log:
        return
    import matplotlib  # lazy: heavy, and only the end of a run draws

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    steps = [e["step"] for e in log]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, [e["train_loss"] for e in log], label="train loss (mean since previous evaluation)")
    if "val_loss" in log[0]:
        ax.plot(steps, [e["val_loss"] for e in log], label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if metric != "loss" and f"val_{metric}" in log[0]:
        ax2 = ax.twinx()
        ax2.plot(steps, [e[f"val_{metric}"] for e in log], color="tab:green", label=f"validation {metric}")
        ax2.set_ylabel(metric)
        ax2.legend(loc="center right")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class RunDir:
    """The files of one run directory (``RunDir("runs/reverse").weights`` is its ``model.safetensors``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config = self.path / CONFIG
        self.weights = self.path / WEIGHTS
        self.checkpoint = self.path / CHECKPOINT
        self.log = self.path / LOG
        self.metrics = self.path / METRICS
        self.adapters = self.path / ADAPTERS
        self.loss_plot = self.path / LOSS_PLOT
        self._made: Path | None = None
        self._trackers_before: set[str] = set()

    def __str__(self) -> str:
        return str(self.path)

    # creating and clearing

    def check_writable(self, resume: bool, overwrite: bool) -> None:
        """Never clobber a user's run: an existing run needs ``--resume`` or an explicit ``--overwrite``.
        Writes nothing, so a run that then fails on its data leaves the directory as it was."""
        if resume:
            if not self.checkpoint.exists():
                raise UserError(f"{self.path}: nothing to resume (no {CHECKPOINT})")
            return
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"{self.path}: exists and is not a directory")
        if self.config.exists() and not overwrite:
            raise UserError(
                f"{self.path}: a run is already there; use --resume to continue it or --overwrite to replace it"
            )

    def create(self, resume: bool, overwrite: bool) -> None:
        """Make the directory; with ``overwrite``, first delete every file and folder of the run that was there.
        Remembers what it made, for :meth:`undo_create`."""
        if overwrite and not resume and self.config.exists():
            self.clear()
        missing = [p for p in (self.path, *self.path.parents) if not p.exists()]
        self._made = missing[-1] if missing else None  # the topmost directory mkdir creates
        self._trackers_before = {name for name in TRACKER_DIRS if (self.path / name).exists()}
        self.path.mkdir(parents=True, exist_ok=True)

    def undo_create(self) -> None:
        """After a failure between :meth:`create` and the run's first file (a tracker that could not start): remove
        the directories ``create`` made, or, in a directory that was there, the tracker folders that were not.
        A run cleared by ``overwrite`` stays cleared: :func:`~tinyformers.engine.loggers.check_logger` catches
        what it can before that."""
        if self._made is not None:
            shutil.rmtree(self._made, ignore_errors=True)
            return
        for name in set(TRACKER_DIRS) - self._trackers_before:
            shutil.rmtree(self.path / name, ignore_errors=True)

    def clear(self) -> None:
        """Delete the run's files: the named ones, the trackers' folders and the figures (``*.png``, drawn from
        the old model). Anything else the user keeps in the directory stays."""
        for name in (CONFIG, WEIGHTS, ADAPTERS, CHECKPOINT, LOG, METRICS):
            (self.path / name).unlink(missing_ok=True)
        for png in self.path.glob("*.png"):
            png.unlink()
        for name in TRACKER_DIRS:
            if (self.path / name).is_dir():
                shutil.rmtree(self.path / name)

    # config.json

    def write_config(self, task_name: str, cfg: TrainConfig, meta: dict) -> None:
        save_run_config(self.path, task_name, cfg, meta)

    def _saved_config(self) -> dict[str, Any]:
        if not self.path.is_dir():
            raise UserError(f"{self.path}: no such run directory")
        saved = read_json(self.config)
        if not isinstance(saved, dict) or not {"task", "config", "meta"} <= set(saved):
            raise UserError(f"{self.config}: not a tinyformers run config (needs task, config, meta)")
        return saved

    def task_name(self) -> str:
        """The name of the task the run trained (its ``config.json``'s ``task``)."""
        return str(self._saved_config()["task"])

    def read_config(self, task: Task) -> tuple[Any, dict]:
        """``(config, meta)`` from ``config.json``, validated against ``task``'s config; anything wrong is a
        :class:`UserError`."""
        saved = self._saved_config()
        known = {f.name for f in dataclasses.fields(task.Config)}
        unknown = sorted(set(saved["config"]) - known)
        if unknown:
            raise UserError(f"{self.config}: unknown keys for task {task.name!r}: {', '.join(unknown)}")
        defaults = dataclasses.asdict(task.Config())
        if isinstance(saved["config"].get("compile"), bool):  # runs saved when compile was true/false
            saved["config"]["compile"] = "on" if saved["config"]["compile"] else "off"
        for key, value in saved["config"].items():  # a hand-edited "d_model": "wide" fails here, not deep in the model
            want = type(defaults[key])
            if not (type(value) is want or (want is float and type(value) is int)):
                kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[want]
                raise UserError(f"{self.config}: {key}={value!r} should be {kind}")
        try:
            cfg = task.Config(**saved["config"])
        except (TypeError, ValueError) as e:
            raise UserError(f"{self.config}: invalid config ({e})") from None
        if not isinstance(saved["meta"], dict):
            raise UserError(f"{self.config}: meta should be a JSON object")
        return cfg, saved["meta"]

    # the weights

    def save_weights(self, model: nn.Module, task_name: str, meta: dict) -> None:
        save_weights(model, self.weights, task_name, meta)

    def load_weights(self, model: nn.Module) -> None:
        """Put the best weights (``model.safetensors``) into ``model``."""
        tensors, _ = read_safetensors(self.weights)
        load_tensors(model, tensors, str(self.weights))

    def load_model(self, task: Task, overrides: list[str] | None = None) -> tuple[Any, dict, nn.Module]:
        """Rebuild ``(config, meta, model with its best weights)`` of a run of ``task``."""
        cfg, meta = self.read_config(task)
        cfg = apply_overrides(cfg, overrides or [])
        tensors, header = read_safetensors(self.weights)
        try:
            info = json.loads(header.get(RUN_INFO, "{}"))
        except json.JSONDecodeError:
            info = {}
        info = info if isinstance(info, dict) else {}
        if info.get("task") and info["task"] != task.name:
            raise UserError(
                f"{self.config}: a config of task {task.name!r}, but {WEIGHTS} holds a model of task "
                f"{info['task']!r}; put back the run's own config.json"
            )
        if "meta_sha256" in info and info["meta_sha256"] != meta_fingerprint(meta):
            raise UserError(
                f"{self.config}: its meta (tokenizer, classes, ...) is not the one {WEIGHTS} was trained with; "
                "put back the run's own config.json"
            )
        try:
            model = build_model(task, cfg, meta)
        except (KeyError, TypeError, AttributeError) as e:  # a meta entry missing or of the wrong kind
            raise UserError(
                f"{self.config}: its meta does not fit task {task.name!r} ({type(e).__name__}: {e})"
            ) from None
        load_tensors(model, tensors, str(self.weights))
        model.eval()
        return cfg, meta, model

    def save_checkpoint(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict, ema: WeightEMA | None = None
    ) -> None:
        save_checkpoint(self.checkpoint, model, optimizer, state, ema)

    def load_checkpoint(self, model: nn.Module, optimizer: torch.optim.Optimizer, ema: WeightEMA | None = None) -> dict:
        return load_checkpoint(self.checkpoint, model, optimizer, ema)

    def save_adapters(self, model: nn.Module, lora: LoRAConfig) -> None:
        """Write ``ADAPTERS``: the LoRA adapters and fully trained head of ``model`` (a few % of its weights)."""
        atomic_write(self.adapters, lambda tmp: save_adapters(model, tmp, lora))

    def load_adapted(self, task: Task) -> tuple[Any, dict, nn.Module]:
        """Rebuild a ``finetune=lora`` run from its base model plus ``adapters.safetensors`` alone.

        The base is what the task's ``model()`` builds from the run's ``init`` (the pretrained MiniLM for
        ``init=minilm``, another run's weights for ``init=RUN_DIR``); :func:`tinyformers.core.lora.load_adapters`
        adds the adapters and head on top. The result computes what :meth:`load_model` gives from the full
        ``model.safetensors``.
        """
        cfg, meta = self.read_config(task)
        if cfg.finetune != "lora":
            raise UserError(
                f"{self.path}: not a LoRA run (finetune={cfg.finetune}); load it with its model.safetensors"
            )
        if getattr(cfg, "init", "") in ("", "scratch"):
            raise UserError(
                f"{self.path}: its base model was random (no init=...), so its adapters alone cannot rebuild it"
            )
        if not self.adapters.exists():
            raise UserError(f"{self.adapters}: not found")
        model = task.model(cfg, meta)  # the base, without adapters (build_model would add fresh ones)
        load_adapters(model, self.adapters)
        model.eval()
        return cfg, meta, model

    # log.jsonl, metrics.json, figures

    def read_log(self) -> list[dict]:
        entries = []
        for line in self.log.read_text().splitlines() if self.log.exists() else []:
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:  # a line torn by a kill (older runs appended in place)
                continue
        return entries

    def write_log(self, entries: list[dict]) -> None:
        """The whole log, atomically: a kill leaves the previous complete log, never a torn line."""
        atomic_write(self.log, lambda tmp: Path(tmp).write_text("".join(json.dumps(e) + "\n" for e in entries)))

    def append_log(self, entry: dict) -> None:
        self.write_log([*self.read_log(), entry])

    def trim_log(self, step: int) -> None:
        """On resume, drop log lines written after the checkpoint (they will be written again)."""
        self.write_log([e for e in self.read_log() if e["step"] <= step])

    def read_metrics(self) -> dict[str, Any]:
        return read_json(self.metrics) if self.metrics.exists() else {}

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_json(self.metrics, metrics)

    def plot_loss(self, metric: str) -> list[str]:
        """Draw ``loss.png`` from the log; return it as a list (empty when there is no log)."""
        plot_loss(self.read_log(), self.loss_plot, metric)
        return [str(self.loss_plot)] if self.loss_plot.exists() else []
