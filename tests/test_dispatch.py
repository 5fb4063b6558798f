"""The CLI finds a task's optional capabilities by the protocols it subclasses (``isinstance``), and refuses a
flag the task does not declare with one line naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

import tinyformers.tasks
from tinyformers.apps.cli import main
from tinyformers.engine.task import GeneratesFiles, GeneratesText, Predicts, Task, TrainConfig, ViewsAttention

CALLS: list[tuple[str, dict[str, Any]]] = []


class Plain(Task[TrainConfig]):
    name = "plain"


class Beams(Task[TrainConfig], Predicts, GeneratesText, ViewsAttention):
    name = "beams"
    predict_options: ClassVar[tuple[str, ...]] = ("num_beams",)

    def predict(self, model: Any, cfg: Any, meta: dict, inputs: list[str], **options: Any) -> list[str]:
        CALLS.append(("predict", options))
        return [x.upper() for x in inputs]

    def generate(self, model: Any, cfg: Any, meta: dict, prompt: str, **decoding: Any) -> list[str]:
        CALLS.append(("generate", decoding))
        return ["!"]

    def attention(self, model: Any, cfg: Any, meta: dict, text: str, out: Path, html: Path | None = None) -> list[str]:
        CALLS.append(("attention", {"out": out, "html": html}))
        return [str(out)]


class Pictures(Task[TrainConfig], GeneratesFiles):
    name = "pictures"
    file_options: ClassVar[tuple[str, ...]] = ("class_label",)

    def generate_file(self, model: Any, cfg: Any, meta: dict, out: Path | None, **options: Any) -> list[str]:
        CALLS.append(("generate_file", {"out": out, **options}))
        return [f"wrote {out}"]


@pytest.fixture
def fake_runs(monkeypatch):
    """``tinyformers CMD RUN``, where RUN is the name of one of the fake tasks above."""
    tasks = {cls.name: cls() for cls in (Plain, Beams, Pictures)}
    monkeypatch.setattr(tinyformers.tasks, "load_run", lambda run: (tasks[str(run)], TrainConfig(), {}, None))
    CALLS.clear()


def one_line_error(capsys, argv: list[str], message: str) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_a_missing_capability_is_refused_with_the_old_messages(fake_runs, capsys):
    one_line_error(capsys, ["predict", "plain", "x"], "task 'plain' has no predict")
    one_line_error(capsys, ["attention", "plain", "x"], "task 'plain' has no attention view")
    one_line_error(
        capsys, ["generate", "plain", "--prompt", "x"], "task 'plain' does not generate; try `tinyformers predict`"
    )
    assert CALLS == []


def test_undeclared_options_are_refused_by_flag_and_declared_ones_arrive(fake_runs, capsys):
    one_line_error(
        capsys, ["predict", "beams", "x", "--length-penalty", "2"], "task 'beams' does not take --length-penalty"
    )
    one_line_error(capsys, ["generate", "beams", "--prompt", "a", "--class", "3"], "task 'beams' does not take --class")
    one_line_error(
        capsys, ["generate", "pictures", "--prompt-chorale", "1"], "task 'pictures' does not take --prompt-chorale"
    )
    assert CALLS == []
    assert main(["predict", "beams", "ab", "--num-beams", "3"]) == 0
    assert capsys.readouterr().out == "ab\tAB\n" and CALLS[-1] == ("predict", {"num_beams": 3})
    assert main(["generate", "beams", "--prompt", "a", "--no-stream", "--top-k", "5"]) == 0
    assert CALLS[-1][0] == "generate" and CALLS[-1][1]["top_k"] == 5 and "class_label" not in CALLS[-1][1]
    assert main(["generate", "pictures", "--class", "7", "--out", "p.png"]) == 0
    name, options = CALLS[-1]
    assert name == "generate_file" and options["class_label"] == "7" and options["out"] == Path("p.png")
    assert main(["attention", "beams", "hi", "--out", "a.png"]) == 0
    assert CALLS[-1] == ("attention", {"out": Path("a.png"), "html": None})
