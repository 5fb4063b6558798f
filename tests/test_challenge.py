"""``tinyformers challenge``: verdicts, the report, skipping finished tasks, --force, bad options."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tinyformers.apps.challenge import verdict
from tinyformers.apps.cli import main
from tinyformers.engine.task import Scorecard, apply_overrides
from tinyformers.tasks import TASKS, get_task


def test_verdicts_in_both_directions_and_with_a_limit():
    acc = Scorecard("test_accuracy", baselines=("baseline_accuracy", "majority"), limit="bayes_accuracy")
    row = verdict(acc, {"test_accuracy": 0.9, "baseline_accuracy": 0.8, "majority": 0.5, "bayes_accuracy": 0.92})
    assert row["best_baseline"] == "baseline_accuracy" and row["verdict"].startswith("beats every baseline")
    assert "0.02 from the limit" in row["verdict"]
    mae = Scorecard("test_mae", higher_is_better=False, baselines=("persistence_mae", "linear_mae"))
    row = verdict(mae, {"test_mae": 1.0, "persistence_mae": 2.0, "linear_mae": 0.9})
    assert row["best_baseline"] == "linear_mae" and row["verdict"].startswith("does NOT beat linear_mae")
    assert verdict(mae, {"test_mae": 1.0})["verdict"] == "no baseline measured"


def test_quick_report_skip_and_force(tmp_path, capsys):
    out = tmp_path / "ch"
    assert main(["challenge", "--tasks", "copy", "--quick", "--out", str(out)]) == 0
    report = (out / "REPORT.md").read_text()
    assert "| copy | test_exact_match |" in report and "Quick mode" in report
    assert (out / "copy" / "loss.png").exists()
    metrics = out / "runs" / "copy" / "metrics.json"
    first = metrics.stat().st_mtime_ns
    assert main(["challenge", "--tasks", "copy", "--quick", "--out", str(out)]) == 0
    assert metrics.stat().st_mtime_ns == first  # finished: not trained again
    assert main(["challenge", "--tasks", "copy", "--quick", "--out", str(out), "--force"]) == 0
    assert metrics.stat().st_mtime_ns != first


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--tasks", "nope"], "unknown task"),
        (["--budget-minutes", "0"], "--budget-minutes"),
        (["--tolerance", "2"], "--tolerance"),
    ],
)
def test_bad_options(tmp_path, capsys, argv, match):
    assert main(["challenge", "--out", str(tmp_path / "c"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err


def test_baseline_runs_are_trained_with_their_settings_and_judged(tmp_path, monkeypatch, capsys):
    """A scorecard's baseline_runs train the task again with other settings; their metric is a baseline."""
    from tinyformers.tasks import get_task

    task = type(get_task("copy"))
    card = dataclasses.replace(
        task.scorecard, baselines=(), baseline_runs=(("narrow_exact_match", ("d_model=16", "n_heads=2")),)
    )
    monkeypatch.setattr(task, "scorecard", card)
    out = tmp_path / "ch"
    assert main(["challenge", "--tasks", "copy", "--quick", "--out", str(out)]) == 0
    baseline = json.loads((out / "runs" / "copy" / "baselines" / "narrow_exact_match" / "config.json").read_text())
    assert baseline["config"]["d_model"] == 16
    row = json.loads((out / "report.json").read_text())["rows"][0]
    assert row["best_baseline"] == "narrow_exact_match" and isinstance(row["baseline_value"], float)


@pytest.mark.parametrize("name", sorted(n for n, cls in TASKS.items() if cls.scorecard is not None))
def test_every_scorecard_is_well_formed(name):
    """Quick and baseline settings parse for the task; the metric is a held-out key; names do not collide."""
    task = get_task(name)
    card = task.scorecard
    apply_overrides(task.Config(), list(card.quick))
    for _, overrides in card.baseline_runs:
        apply_overrides(task.Config(), [*overrides, *card.quick])
    assert card.metric.startswith(task.final_split + "_")
    names = [*card.baselines, *(n for n, _ in card.baseline_runs)]
    assert len(set(names)) == len(names) and card.metric not in names
    assert card.summary
