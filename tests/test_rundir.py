"""The run directory and the trainer's bookkeeping: what ``--overwrite`` clears, what a failed run leaves, the
parameters a LoRA run reports, byte-reproducible weight files, and the progress bar of a time-limited run."""

from __future__ import annotations

import json
import sys
import time

import pytest
from tqdm.auto import tqdm

from tinyformers.engine import trainer
from tinyformers.engine.rundir import TRAINER_STATE, RunDir, read_safetensors
from tinyformers.engine.task import apply_overrides
from tinyformers.engine.trainer import count_parameters, train
from tinyformers.errors import UserError
from tinyformers.tasks import get_task, load_run

TINY = ["d_model=16", "n_heads=2", "n_layers=1", "d_ff=32", "max_digits=4", "n_val=16", "n_test=16", "batch_size=8"]


def tiny(task: str = "copy", *extra: str):
    t = get_task(task)
    return t, apply_overrides(t.Config(), [*TINY, "max_steps=2", "eval_every=2", "warmup_steps=1", *extra])


def test_overwrite_clears_every_file_of_the_old_run_and_keeps_the_users(tmp_path):
    task, cfg = tiny()
    run = tmp_path / "run"
    train(task, cfg, run, progress=False)
    for old in ("tensorboard/events.out", "wandb/offline-run/run.wandb", "confusion.png"):
        (run / old).parent.mkdir(parents=True, exist_ok=True)
        (run / old).write_text("from the old run")
    (run / "notes.txt").write_text("the user's")
    train(task, cfg, run, overwrite=True, progress=False)
    assert not (run / "tensorboard").exists() and not (run / "wandb").exists()
    assert not (run / "confusion.png").exists() and (run / "loss.png").exists()
    assert (run / "notes.txt").read_text() == "the user's"
    assert [e["step"] for e in RunDir(run).read_log()] == [2]  # the new run's log alone


def test_a_run_failing_on_its_data_leaves_nothing_behind(tmp_path):
    task = get_task("sentiment")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    cfg = apply_overrides(task.Config(), [f"csv={empty}", "max_steps=1"])
    with pytest.raises(UserError, match="empty file"):
        train(task, cfg, tmp_path / "new" / "run", progress=False)
    assert not (tmp_path / "new").exists()
    mine = tmp_path / "mine"  # a directory the user had stays, as it was
    mine.mkdir()
    with pytest.raises(UserError, match="empty file"):
        train(task, cfg, mine, progress=False)
    assert mine.is_dir() and not any(mine.iterdir())
    copy, copy_cfg = tiny()  # an old run stays whole when its replacement fails before the first step
    train(copy, copy_cfg, tmp_path / "old", progress=False)
    before = sorted(p.name for p in (tmp_path / "old").iterdir())
    with pytest.raises(UserError, match="empty file"):
        train(task, cfg, tmp_path / "old", overwrite=True, progress=False)
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == before


def files_of(run) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_a_logger_that_cannot_start_leaves_nothing_behind(tmp_path, monkeypatch):
    task, cfg = tiny()
    train(task, cfg, tmp_path / "old", progress=False)
    old = files_of(tmp_path / "old")
    (tmp_path / "mine").mkdir()
    # not installed: found before anything is written, so even the run --overwrite would replace stays whole
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    for run, kwargs in ((tmp_path / "new" / "run", {}), (tmp_path / "old", {"overwrite": True})):
        with pytest.raises(UserError, match="tensorboard package is not installed"):
            train(task, cfg, run, progress=False, logger="tensorboard", **kwargs)
    assert not (tmp_path / "new").exists() and files_of(tmp_path / "old") == old

    def failing_start(name, run_dir, params):  # as W&B online without a login: its folder made, then an error
        (run_dir / "wandb").mkdir()
        (run_dir / "wandb" / "debug.log").write_text("starting")
        raise UserError("--logger wandb: could not start a run (no login)")

    monkeypatch.setattr(trainer, "make_logger", failing_start)
    for run, kwargs in (
        (tmp_path / "new" / "run", {}),
        (tmp_path / "mine", {}),
        (tmp_path / "old", {"resume": True}),
    ):
        with pytest.raises(UserError, match="could not start"):
            train(task, cfg, run, progress=False, logger="wandb", **kwargs)
    assert not (tmp_path / "new").exists()
    assert (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())
    assert files_of(tmp_path / "old") == old  # the resumed run: its log and config not rewritten, no wandb/


def test_lora_runs_report_trainable_and_total_parameters(tmp_path):
    task, cfg = tiny("copy", "finetune=lora", "lora_r=2")
    metrics = train(task, cfg, tmp_path / "lora", progress=False)
    _, _, _, model = load_run(tmp_path / "lora")
    assert metrics["params"] == count_parameters(model)
    assert metrics["trainable_params"] == count_parameters(model, trainable_only=True)
    assert 0 < metrics["trainable_params"] < metrics["params"]
    full_task, full_cfg = tiny()
    assert "trainable_params" not in train(full_task, full_cfg, tmp_path / "full", progress=False)


def test_two_identical_runs_write_identical_weight_and_checkpoint_files(tmp_path, monkeypatch):
    """Bytes, not just values: the trainer state and optimizer settings are ONE metadata key (safetensors writes
    several in hash-map order). The clock is simulated: the checkpoint records the training seconds."""
    task, cfg = tiny()
    files = []
    for name in ("a", "b"):
        ticks = iter(range(10_000))
        monkeypatch.setattr(time, "perf_counter", lambda: float(next(ticks)))  # noqa: B023 - used in this run
        train(task, cfg, tmp_path / name, progress=False)
        files.append({f: (tmp_path / name / f).read_bytes() for f in ("checkpoint.safetensors", "model.safetensors")})
    assert files[0] == files[1]
    _, meta = read_safetensors(tmp_path / "a" / "checkpoint.safetensors")
    assert list(meta) == [TRAINER_STATE] and json.loads(meta[TRAINER_STATE])["trainer"]["step"] == 2


class RecordingBar(tqdm):
    made: list[RecordingBar] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **{**kwargs, "disable": True})
        self.asked = kwargs
        self.postfixes: list[dict] = []
        RecordingBar.made.append(self)

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs) -> None:
        self.postfixes.append(dict(ordered_dict or {}, **kwargs))


def test_a_time_limited_run_shows_the_time_left_not_the_step_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "tqdm", RecordingBar)
    RecordingBar.made = []
    task, cfg = tiny("copy", "max_time=480", "max_steps=5000", "eval_every=3")
    cfg = apply_overrides(cfg, ["max_steps=3"])  # ends on steps here; the bar still counts the 480 s budget
    train(task, cfg, tmp_path / "timed", progress=True)
    (bar,) = RecordingBar.made
    assert bar.asked["total"] == 480 and bar.asked["unit"] == "s"
    assert bar.postfixes[-1]["step"] == 3 and "val_exact_match" in bar.postfixes[-1]
    RecordingBar.made = []
    task, cfg = tiny()
    train(task, cfg, tmp_path / "steps", progress=True)
    (bar,) = RecordingBar.made
    assert bar.asked["total"] == 2 and bar.asked["unit"] == "step" and "step" not in bar.postfixes[-1]
