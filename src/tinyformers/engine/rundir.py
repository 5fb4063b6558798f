"""A run directory: everything needed to rebuild, resume, evaluate and use a trained model.

```
RUN/
  config.json          task name, full config, meta (vocabulary, classes...) — rebuilds model + tokenizer
  model.safetensors    the best weights (by the task's validation metric)
  checkpoint.safetensors  last weights + optimizer state + trainer state, for --resume
  log.jsonl            one line per evaluation
  metrics.json         final held-out metrics, a flat JSON object
  adapters.safetensors with finetune=lora: the best adapters + task head alone (load_adapted puts them on the base)
  loss.png             training and validation loss
```

Every file is written atomically (temp file + ``os.replace``): a run killed at any moment keeps the
previous complete version of each file. Nothing is ever unpickled: tensors are safetensors, the rest JSON.
"""

from __future__ import annotations

import dataclasses
import hashlib
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

CONFIG, WEIGHTS, CHECKPOINT, LOG, METRICS, ADAPTERS = (
    "config.json",
    "model.safetensors",
    "checkpoint.safetensors",
    "log.jsonl",
    "metrics.json",
    "adapters.safetensors",
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


RUN_INFO = "tinyformers"  # the weights' metadata key: JSON {"task", "meta_sha256"}


def meta_fingerprint(meta: dict) -> str:
    """SHA-256 of a run's ``meta`` (vocabulary, classes...) as JSON, stored beside the weights it was trained with:
    a ``config.json`` whose tokenizer has the right size but other tokens would otherwise load silently."""
    return hashlib.sha256(json.dumps(meta).encode()).hexdigest()


def save_weights(model: nn.Module, path: str | Path, task: str = "", meta: dict | None = None) -> None:
    """The weights alone; with ``task`` and ``meta``, also what they were trained for (checked by :func:`load_run`)."""
    # ONE metadata key: safetensors writes several in hash-map order, and the file's bytes must be reproducible
    info = {RUN_INFO: json.dumps({"task": task, "meta_sha256": meta_fingerprint(meta)})} if meta is not None else None
    atomic_write(path, lambda tmp: save_file(unique_tensors(model), tmp, metadata=info))


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
    defaults = dataclasses.asdict(task.Config())
    if isinstance(saved["config"].get("compile"), bool):  # runs saved when compile was true/false
        saved["config"]["compile"] = "on" if saved["config"]["compile"] else "off"
    for key, value in saved["config"].items():  # a hand-edited "d_model": "wide" fails here, not deep in the model
        want = type(defaults[key])
        if not (type(value) is want or (want is float and type(value) is int)):
            kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[want]
            raise UserError(f"{run_dir / CONFIG}: {key}={value!r} should be {kind}")
    try:
        cfg = task.Config(**saved["config"])
    except (TypeError, ValueError) as e:
        raise UserError(f"{run_dir / CONFIG}: invalid config ({e})") from None
    if not isinstance(saved["meta"], dict):
        raise UserError(f"{run_dir / CONFIG}: meta should be a JSON object")
    return task, cfg, saved["meta"]


def load_run(run_dir: str | Path, overrides: list[str] | None = None) -> tuple[Any, Any, dict, nn.Module]:
    """Rebuild ``(task, config, meta, model with its best weights)`` from a run directory."""
    from tinyformers.engine.task import apply_overrides, build_model

    task, cfg, meta = read_run_config(run_dir)
    cfg = apply_overrides(cfg, overrides or [])
    config, weights = Path(run_dir) / CONFIG, Path(run_dir) / WEIGHTS
    tensors, header = read_safetensors(weights)
    try:
        info = json.loads(header.get(RUN_INFO, "{}"))
    except json.JSONDecodeError:
        info = {}
    info = info if isinstance(info, dict) else {}
    if info.get("task") and info["task"] != task.name:
        raise UserError(
            f"{config}: a config of task {task.name!r}, but {weights.name} holds a model of task {info['task']!r}; "
            "put back the run's own config.json"
        )
    if "meta_sha256" in info and info["meta_sha256"] != meta_fingerprint(meta):
        raise UserError(
            f"{config}: its meta (tokenizer, classes, ...) is not the one {weights.name} was trained with; "
            "put back the run's own config.json"
        )
    try:
        model = build_model(task, cfg, meta)
    except (KeyError, TypeError, AttributeError) as e:  # a meta entry missing or of the wrong kind
        raise UserError(f"{config}: its meta does not fit task {task.name!r} ({type(e).__name__}: {e})") from None
    load_tensors(model, tensors, str(weights))
    model.eval()
    return task, cfg, meta, model


def save_run_adapters(model: nn.Module, run_dir: str | Path, lora: Any) -> None:
    """Write ``ADAPTERS``: the LoRA adapters and fully trained head of ``model`` (a few % of its weights)."""
    from tinyformers.core.lora import save_adapters

    atomic_write(Path(run_dir) / ADAPTERS, lambda tmp: save_adapters(model, tmp, lora))


def load_adapted(run_dir: str | Path) -> tuple[Any, Any, dict, nn.Module]:
    """Rebuild a ``finetune=lora`` run from its base model plus ``adapters.safetensors`` alone.

    The base is what the task's ``model()`` builds from the run's ``init`` (the pretrained MiniLM for
    ``init=minilm``, another run's weights for ``init=RUN_DIR``); :func:`tinyformers.core.lora.load_adapters` adds the
    adapters and head on top. The result computes what :func:`load_run` gives from the full ``model.safetensors``.
    """
    from tinyformers.core.lora import load_adapters

    task, cfg, meta = read_run_config(run_dir)
    if cfg.finetune != "lora":
        raise UserError(f"{run_dir}: not a LoRA run (finetune={cfg.finetune}); load it with its model.safetensors")
    if getattr(cfg, "init", "") in ("", "scratch"):
        raise UserError(f"{run_dir}: its base model was random (no init=...), so its adapters alone cannot rebuild it")
    path = Path(run_dir) / ADAPTERS
    if not path.exists():
        raise UserError(f"{path}: not found")
    model = task.model(cfg, meta)  # the base, without adapters (build_model would add fresh ones)
    load_adapters(model, path)
    model.eval()
    return task, cfg, meta, model
