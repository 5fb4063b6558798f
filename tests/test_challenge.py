"""``tinyformers challenge``: verdicts, the report, skipping finished tasks, --force, bad options."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

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


def test_a_lead_inside_the_margin_is_level_not_a_win():
    """mnist-words: 98.6% vs the classifier's 98.5% on 1,000 images is one run's draw; the verdict says so."""
    card = get_task("mnist-words").scorecard
    assert card.margin == 0.005
    ahead = verdict(card, {"test_word_accuracy": 0.986, "classifier_word_accuracy": 0.985})["verdict"]
    assert ahead.startswith("level with classifier_word_accuracy (0.985): 0.001 ahead of it") and "beats" not in ahead
    behind = verdict(card, {"test_word_accuracy": 0.982, "classifier_word_accuracy": 0.986})["verdict"]
    assert behind.startswith("level with") and "0.004 behind it" in behind
    assert verdict(card, {"test_word_accuracy": 0.992, "classifier_word_accuracy": 0.986})["verdict"].startswith(
        "beats"
    )
    assert verdict(card, {"test_word_accuracy": 0.98, "classifier_word_accuracy": 0.986})["verdict"].startswith(
        "does NOT"
    )
    mae = Scorecard("test_mae", higher_is_better=False, baselines=("linear_mae",), margin=0.1)
    assert verdict(mae, {"test_mae": 1.05, "linear_mae": 1.0})["verdict"].startswith("level with linear_mae")
    assert verdict(mae, {"test_mae": 0.8, "linear_mae": 1.0})["verdict"].startswith("beats")


def test_a_win_needs_every_also_metric_ahead_of_its_own_baseline():
    """translate: a BLEU far above the lookup's is no win while the lookup's chrF is higher."""
    card = Scorecard("test_bleu", baselines=("lookup_bleu",), also=(("test_chrf", ("copy_chrf", "lookup_chrf")),))
    metrics = {"test_bleu": 6.5, "lookup_bleu": 3.8, "copy_chrf": 15.0, "lookup_chrf": 29.2}
    row = verdict(card, {**metrics, "test_chrf": 29.7})
    assert row["verdict"] == "beats every baseline (best: lookup_bleu 3.8); test_chrf 29.7 beats lookup_chrf 29.2 too"
    assert row["also"]["test_chrf"] == {"value": 29.7, "best_baseline": "lookup_chrf", "baseline_value": 29.2}
    assert row["baselines"] == {"lookup_bleu": 3.8, "copy_chrf": 15.0, "lookup_chrf": 29.2}
    level = verdict(card, {**metrics, "test_chrf": 29.2})["verdict"]  # a tie is not ahead
    assert level.startswith("does NOT beat lookup_chrf (29.2) on test_chrf (29.2)") and "test_bleu beats" in level
    missing = verdict(card, {**metrics})["verdict"]
    assert "no test_chrf in metrics.json" in missing and not missing.startswith("beats")
    assert verdict(card, {**metrics, "test_bleu": 3.0, "test_chrf": 30.0})["verdict"].startswith(
        "does NOT beat lookup_bleu"
    )  # the main metric decides first
    mae = Scorecard("test_mae", higher_is_better=False, baselines=("zero",), also=(("test_rmse", ("zero_rmse",)),))
    assert verdict(mae, {"test_mae": 1.0, "zero": 2.0, "test_rmse": 1.5, "zero_rmse": 2.5})["verdict"].startswith(
        "beats every baseline"
    )
    assert verdict(mae, {"test_mae": 1.0, "zero": 2.0, "test_rmse": 3.0, "zero_rmse": 2.5})["verdict"].startswith(
        "does NOT beat zero_rmse"
    )


def test_reaching_a_constant_limit_is_never_a_failure():
    """Copy's baseline (the input unchanged) is perfect: a perfect model cannot beat it, it reaches the limit."""
    card = get_task("copy").scorecard
    assert card.limit_value == 1.0 and card.tolerance > 0
    row = verdict(card, {"test_exact_match": 1.0, "baseline_exact_match": 1.0})
    assert row["verdict"].startswith("reaches the limit 1 (within 0.005)") and "reaches it too" in row["verdict"]
    assert (row["limit"], row["limit_value"]) == ("constant", 1.0)
    near = verdict(card, {"test_exact_match": 1.0 - card.tolerance / 2, "baseline_exact_match": 1.0})
    assert near["verdict"].startswith("reaches the limit")
    short = verdict(card, {"test_exact_match": 0.9, "baseline_exact_match": 1.0})["verdict"]
    assert "NOT" not in short and short.startswith("does not reach the limit") and "0.1 from the limit" in short
    # reverse: the same scorecard, a baseline far from the limit; beating it is not reaching the limit
    assert verdict(card, {"test_exact_match": 0.9, "baseline_exact_match": 0.1})["verdict"].startswith("beats")
    assert verdict(card, {"test_exact_match": 0.999, "baseline_exact_match": 0.1})["verdict"].startswith("reaches")
    strict = Scorecard("test_accuracy", baselines=("majority",), limit_value=1.0)  # tolerance 0: only exactly 1
    assert verdict(strict, {"test_accuracy": 0.999, "majority": 0.5})["verdict"].startswith("beats")
    mae = Scorecard("test_mae", higher_is_better=False, baselines=("zero",), limit_value=0.0, tolerance=0.01)
    assert verdict(mae, {"test_mae": 0.005, "zero": 0.0})["verdict"].startswith("reaches the limit")


def test_quick_report_skip_and_force(tmp_path, capsys):
    out = tmp_path / "ch"
    assert main(["challenge", "--tasks", "copy", "--quick", "--out", str(out)]) == 0
    report = (out / "REPORT.md").read_text()
    assert "| copy | test_exact_match |" in report and "Quick mode" in report
    header = report.split("| task |")[0]  # the calibration and the load verdict come before the table
    assert torch.backends.cpu.get_cpu_capability() in header and "matmul not measured" in header
    assert "Load: quiet | others used" in header or "Load: LOADED | others used" in header
    saved = json.loads((out / "report.json").read_text())["header"]
    assert saved["calibration"]["capability"] == torch.backends.cpu.get_cpu_capability()
    assert saved["load"]["verdict"] in ("quiet", "LOADED")
    assert (out / "copy" / "loss.png").exists()
    metrics = out / "runs" / "copy" / "metrics.json"
    first = metrics.stat().st_mtime_ns
    assert "Reused" not in report and json.loads((out / "report.json").read_text())["rows"][0]["reused"] == []
    assert main(["challenge", "--tasks", "copy", "--quick", "--out", str(out)]) == 0
    assert metrics.stat().st_mtime_ns == first  # finished: not trained again, and the report says so
    assert "Reused, not trained by this invocation (a finished run was in `runs/`" in (out / "REPORT.md").read_text()
    assert json.loads((out / "report.json").read_text())["rows"][0]["reused"] == ["copy"]
    assert main(["challenge", "--tasks", "copy", "--quick", "--out", str(out), "--force"]) == 0
    assert metrics.stat().st_mtime_ns != first
    assert "Reused" not in (out / "REPORT.md").read_text()


def test_the_report_is_its_json_rendered(tmp_path):
    """docs/challenge.md's report is rendered from the committed report.json (scripts/publish.py): REPORT.md must be
    exactly the title and what ``report_markdown`` makes of report.json, plots under the prefix asked for."""
    from tinyformers.apps.challenge import TITLE, report_markdown

    out = tmp_path / "ch"
    assert main(["challenge", "--tasks", "copy", "--quick", "--out", str(out)]) == 0
    saved = json.loads((out / "report.json").read_text())
    assert (out / "REPORT.md").read_text() == "\n".join(TITLE) + "\n" + report_markdown(saved["rows"], saved["header"])
    page = report_markdown(saved["rows"], saved["header"], plots_under="challenge/")
    assert "![loss](challenge/copy/loss.png)" in page and "](copy/loss.png)" not in page


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--tasks", "nope"], "unknown task"),
        (["--budget-minutes", "0"], "--budget-minutes"),
        (["--tolerance", "2"], "--tolerance"),
        (["--budget-ref-minutes", "-1"], "--budget-ref-minutes"),
        (["--budget-ref-minutes", "1", "--budget-minutes", "1"], "not both"),
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
    apply_overrides(task.Config(), [*card.recipe, *card.quick])
    for _, overrides in card.baseline_runs:
        apply_overrides(task.Config(), [*card.recipe, *overrides, *card.quick])
    assert card.budget_minutes > 0
    assert card.metric.startswith(task.final_split + "_")
    names = [*card.baselines, *(n for n, _ in card.baseline_runs)]
    assert len(set(names)) == len(names) and card.metric not in names
    for metric, baselines in card.also:
        assert metric.startswith(task.final_split + "_") and baselines and metric not in (card.metric, *names)
    assert card.summary


def test_loaded_run_says_so_in_the_header(tmp_path, monkeypatch, capsys):
    from tinyformers.engine import calibration

    busy = {"verdict": "LOADED", "others_cpu_share": 0.35, "host_steal_share": 0.0, "cpus": 2, "wall_s": 9.0}
    monkeypatch.setattr(calibration.LoadMeter, "read", lambda self: busy)
    out = tmp_path / "ch"
    assert main(["challenge", "--tasks", "copy", "--quick", "--out", str(out)]) == 0
    header = (out / "REPORT.md").read_text().split("| task |")[0]
    assert "**LOADED**: other processes used 35% of the CPUs" in header and "others used 35% of 2 CPUs" in header


def test_reference_minutes_are_scaled_by_the_measured_rate(tmp_path, monkeypatch, capsys):
    """On a machine measuring 4x the reference fp32 rate, 0.02 reference minutes are 0.005 actual (0.3 s)."""
    from tinyformers.apps import challenge

    fast = {**challenge.calibration.cpu_info(), "fp32_gflops": 4 * challenge.calibration.REFERENCE_FP32_GFLOPS}
    monkeypatch.setattr(
        challenge.calibration, "calibrate", lambda: {**fast, "fp32_gflops_1t": 1.0, "bf16_gflops": None}
    )
    out = tmp_path / "ch"
    assert main(["challenge", "--tasks", "copy", "--budget-ref-minutes", "0.02", "--out", str(out)]) == 0
    config = json.loads((out / "runs" / "copy" / "config.json").read_text())["config"]
    assert config["max_time"] == pytest.approx(0.3)
    report = (out / "REPORT.md").read_text()
    assert "0.02 reference min (at 100 fp32 GFLOP/s) = 0.005 min actual here (measured fp32 400 GFLOP/s)" in report


def test_reference_minutes_need_the_calibration(tmp_path, capsys):
    assert main(["challenge", "--tasks", "copy", "--budget-ref-minutes", "1", "--out", str(tmp_path / "c")]) == 2
    assert "TINYFORMERS_CALIBRATION" in capsys.readouterr().err


def test_each_task_gets_its_stated_budget_and_recipe_unless_one_budget_is_given(tmp_path, monkeypatch, capsys):
    """Without --budget-minutes a task trains its scorecard's recipe for its scorecard's budget (baselines too);
    --budget-minutes caps every task alike; the report shows each task's budget and recipe."""
    from tinyformers.tasks import get_task

    task = type(get_task("copy"))
    card = dataclasses.replace(
        task.scorecard,
        recipe=("d_model=16", "n_heads=2", "max_steps=3"),
        budget_minutes=0.01,
        baseline_runs=(("wide_exact_match", ("d_model=32",)),),
    )
    monkeypatch.setattr(task, "scorecard", card)
    out = tmp_path / "ch"
    assert main(["challenge", "--tasks", "copy", "--clock", "cpu", "--out", str(out)]) == 0
    config = json.loads((out / "runs" / "copy" / "config.json").read_text())["config"]
    assert (config["d_model"], config["max_steps"], config["max_time"], config["clock"]) == (16, 3, 0.6, "cpu")
    baseline = json.loads((out / "runs" / "copy" / "baselines" / "wide_exact_match" / "config.json").read_text())
    assert (baseline["config"]["d_model"], baseline["config"]["max_time"]) == (32, 0.6)
    report = (out / "REPORT.md").read_text()
    assert "| 0.01 |" in report and "`--set d_model=16 n_heads=2 max_steps=3`" in report
    assert "each task's stated budget" in report
    out2 = tmp_path / "ch2"
    assert main(["challenge", "--tasks", "copy", "--budget-minutes", "0.005", "--out", str(out2)]) == 0
    config = json.loads((out2 / "runs" / "copy" / "config.json").read_text())["config"]
    assert (config["d_model"], config["max_time"]) == (16, 0.3)
