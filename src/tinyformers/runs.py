"""A run directory: everything needed to rebuild, resume, evaluate and use a trained model.

```
RUN/
  config.json          task name, full config, meta (vocabulary, classes...) — rebuilds model + tokenizer
  model.safetensors    the best weights (by the task's validation metric)
  checkpoint.safetensors  last weights + optimizer state + trainer state, for --resume
  log.jsonl            one line per evaluation
  metrics.json         final held-out metrics, a flat JSON object
  loss.png             training and validation loss
```

Every file is written atomically (temp file + ``os.replace``): a run killed at any moment keeps the
previous complete version of each file. Nothing is ever unpickled: tensors are safetensors, the rest JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from tinyformers.errors import UserError

CONFIG, WEIGHTS, CHECKPOINT, LOG, METRICS = (
    "config.json",
    "model.safetensors",
    "checkpoint.safetensors",
    "log.jsonl",
    "metrics.json",
)


def atomic_write(path: str | Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: readers see the old file or the new one, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")

    atomic_write(path, write)


def read_json(path: str | Path) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None


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


def save_weights(model: nn.Module, path: str | Path) -> None:
    atomic_write(path, lambda tmp: save_file(unique_tensors(model), tmp))


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Weights, AdamW moments and trainer state in one safetensors file (tensors + JSON metadata)."""
    tensors = {f"model.{k}": v for k, v in unique_tensors(model).items()}
    opt = optimizer.state_dict()
    for idx, s in opt["state"].items():
        for k, v in s.items():
            tensors[f"optim.{idx}.{k}"] = v.detach().contiguous().cpu() if torch.is_tensor(v) else torch.tensor(v)
    meta = {"trainer": json.dumps(state), "param_groups": json.dumps(opt["param_groups"])}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore model and optimizer in place; return the trainer state."""
    tensors, meta = read_safetensors(path)
    load_tensors(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, str(path))
    state: dict[int, dict[str, Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    try:
        optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
        return json.loads(meta["trainer"])
    except (KeyError, ValueError) as e:
        raise UserError(f"{path}: checkpoint does not fit this model/optimizer ({e})") from None


def save_run_config(run_dir: Path, task_name: str, cfg: Any, meta: dict) -> None:
    from tinyformers import __version__

    write_json(
        run_dir / CONFIG,
        {"task": task_name, "config": dataclasses.asdict(cfg), "meta": meta, "tinyformers_version": __version__},
    )


def read_run_config(run_dir: str | Path) -> tuple[Any, Any, dict]:
    """``(task, config, meta)`` from a run's ``config.json``, validated; anything wrong is a :class:`UserError`."""
    from tinyformers.tasks import get_task

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    saved = read_json(run_dir / CONFIG)
    if not isinstance(saved, dict) or not {"task", "config", "meta"} <= set(saved):
        raise UserError(f"{run_dir / CONFIG}: not a tinyformers run config (needs task, config, meta)")
    task = get_task(saved["task"])
    known = {f.name for f in dataclasses.fields(task.Config)}
    unknown = sorted(set(saved["config"]) - known)
    if unknown:
        raise UserError(f"{run_dir / CONFIG}: unknown keys for task {task.name!r}: {', '.join(unknown)}")
    try:
        cfg = task.Config(**saved["config"])
    except (TypeError, ValueError) as e:
        raise UserError(f"{run_dir / CONFIG}: invalid config ({e})") from None
    return task, cfg, saved["meta"]


def load_run(run_dir: str | Path, overrides: list[str] | None = None) -> tuple[Any, Any, dict, nn.Module]:
    """Rebuild ``(task, config, meta, model with its best weights)`` from a run directory."""
    from tinyformers.tasks.base import apply_overrides, build_model

    task, cfg, meta = read_run_config(run_dir)
    cfg = apply_overrides(cfg, overrides or [])
    model = build_model(task, cfg, meta)
    weights = Path(run_dir) / WEIGHTS
    tensors, _ = read_safetensors(weights)
    load_tensors(model, tensors, str(weights))
    model.eval()
    return task, cfg, meta, model
