"""The task registry: ``tinyformers list`` shows these, ``tinyformers train NAME`` runs one.

A task is one module in this package that lists its task classes in ``TASKS = (...)``; the registry
finds them, so adding a task touches no shared file. Task modules import their heavy dependencies
(scikit-learn, music21, ...) inside functions, so discovering every task stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil

from tinyformers.engine.task import Task, TaskData, TrainConfig
from tinyformers.errors import UserError


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


__all__ = ["TASKS", "Task", "TaskData", "TrainConfig", "get_task"]
