"""The task registry: ``tinyformers list`` shows these, ``tinyformers train NAME`` runs one.

The registry lives here, with the plug-ins it lists, and not in ``engine/``: the engine works on a task it is
given and never imports a task module. Loading a saved run by its directory alone needs both (the task's name is
in the run's ``config.json``), so :func:`load_run` is here too, on top of :class:`~tinyformers.engine.rundir.RunDir`.

A task is one module in this package that lists its task classes in ``TASKS = (...)``; the registry
finds them, so adding a task touches no shared file. Task modules import their heavy dependencies
(scikit-learn, music21, ...) inside functions, so discovering every task stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

from torch import nn

from tinyformers.core.interop import config_from_hf_causal_lm, hf_model_type
from tinyformers.engine.rundir import RunDir
from tinyformers.engine.task import Task, TaskData, TrainConfig, apply_overrides, build_model
from tinyformers.errors import UserError
from tinyformers.tasks._lm import hf_meta
from tinyformers.tasks.shakespeare import ShakespeareConfig, ShakespeareTask


def _discover() -> dict[str, type[Task]]:
    found: dict[str, type[Task]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for cls in getattr(module, "TASKS", ()):
            if cls.name in found:
                raise RuntimeError(f"task name {cls.name!r} defined twice ({module.__name__})")
            found[cls.name] = cls
    return found


TASKS: dict[str, type[Task]] = _discover()


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]()


def read_run_config(run_dir: str | Path) -> tuple[Task, Any, dict]:
    """``(task, config, meta)`` from a run's ``config.json``, validated; anything wrong is a :class:`UserError`."""
    run = RunDir(run_dir)
    task = get_task(run.task_name())
    return (task, *run.read_config(task))


def load_run(run_dir: str | Path, overrides: list[str] | None = None) -> tuple[Task, Any, dict, nn.Module]:
    """Rebuild ``(task, config, meta, model with its best weights)`` from a run directory.

    A Hugging Face causal-LM folder (``config.json`` with a ``model_type``, ``model.safetensors``,
    ``tokenizer.json``) loads too, as the shakespeare task started from it (``init=FOLDER``, no training), so
    ``generate`` and ``serve`` take a downloaded Llama, Qwen2 or GPT-2 checkpoint as they take a run.
    """
    if hf_model_type(run_dir) is not None:
        hf_task = ShakespeareTask()
        meta = hf_meta(str(run_dir))
        defaults = ShakespeareConfig()
        window = min(defaults.block_size, config_from_hf_causal_lm(meta["hf_config"]).max_len)  # training only
        cfg = apply_overrides(defaults, [f"init={run_dir}", f"block_size={window}", *(overrides or [])])
        return hf_task, cfg, meta, build_model(hf_task, cfg, meta).eval()
    run = RunDir(run_dir)
    task = get_task(run.task_name())
    return (task, *run.load_model(task, overrides))


def load_adapted(run_dir: str | Path) -> tuple[Task, Any, dict, nn.Module]:
    """A ``finetune=lora`` run rebuilt from its base model plus ``adapters.safetensors`` alone
    (:meth:`~tinyformers.engine.rundir.RunDir.load_adapted`)."""
    run = RunDir(run_dir)
    task = get_task(run.task_name())
    return (task, *run.load_adapted(task))


__all__ = ["TASKS", "Task", "TaskData", "TrainConfig", "get_task", "load_adapted", "load_run", "read_run_config"]
