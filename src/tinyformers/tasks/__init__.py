"""The task registry: ``tinyformers list`` shows these, ``tinyformers train NAME`` runs one."""

from __future__ import annotations

from tinyformers.errors import UserError
from tinyformers.tasks.base import Task, TaskData, TrainConfig
from tinyformers.tasks.sanity import CopyTask, ReverseTask, SortTask
from tinyformers.tasks.shakespeare import ShakespeareTask

TASKS: dict[str, type[Task]] = {t.name: t for t in (CopyTask, ReverseTask, SortTask, ShakespeareTask)}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]()


__all__ = ["TASKS", "Task", "TaskData", "TrainConfig", "get_task"]
