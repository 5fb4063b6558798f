"""``tinyformers challenge``: the "Pytorch Transformer Minimal Examples" Challenge, answered by measurement.

*For each example, what is the minimal transformer — no pre-trained or rule-based parts — that trains in
reasonable time on a consumer laptop CPU and achieves good performance? If there is none, why?*

For every task with a :class:`~tinyformers.engine.task.Scorecard`, this trains the task's recommended recipe
(its config defaults) within the CPU budget, reads its held-out metrics, puts them next to the baselines and
known limits the task measures on the same split, and writes ``REPORT.md`` (a table and a verdict per task)
with the task's plots. Each finished task is kept: a rerun skips it (``--force`` redoes it) and Ctrl-C keeps
every task that finished. ``--search`` sweeps depth and width and names the smallest model within a
tolerance of the best — the "minimal" answer.

The report's header carries the machine's calibration (CPU kind, measured matmul GFLOP/s) and how much of the
CPUs other processes used during the run (:mod:`tinyformers.engine.calibration`); ``--budget-ref-minutes``
states the budget in reference minutes, scaled by the measured fp32 rate so it means the same compute anywhere.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tinyformers.engine import calibration
from tinyformers.engine.rundir import RunDir
from tinyformers.engine.task import Scorecard, Task, apply_overrides
from tinyformers.engine.trainer import train
from tinyformers.errors import Interrupted, UserError
from tinyformers.io import atomic_write, read_json, write_json
from tinyformers.tasks import TASKS, get_task

QUICK_STEPS = 20
SEARCH_GRID = [(n_layers, d_model) for n_layers in (1, 2, 4) for d_model in (32, 64, 128)]


def scorecard(task: Task) -> Scorecard:
    """The task's scorecard; a task without one has nothing to be compared with (a :class:`UserError`)."""
    if task.scorecard is None:
        raise UserError(f"task {task.name!r} has no challenge scorecard (nothing to compare it with)")
    return task.scorecard


def challenge_tasks(names: str | None) -> list[str]:
    """The tasks asked for (comma-separated), or every task with a scorecard."""
    if not names:
        return sorted(n for n, cls in TASKS.items() if cls.scorecard is not None)
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    for n in chosen:
        scorecard(get_task(n))
    return chosen


@dataclasses.dataclass(frozen=True)
class Budget:
    """How every training of one challenge run is limited: ``minutes`` of ``clock`` time ('wall' or 'cpu'; None =
    each task's own ``Scorecard.budget_minutes``), or ``quick`` (a few steps of a tiny model); ``force`` retrains
    finished runs."""

    minutes: float | None = None
    quick: bool = False
    clock: str = "wall"
    force: bool = False


def _recipe(task: Task, budget: Budget, extra: list[str]) -> Any:
    """The task's defaults, then its scorecard's recipe, then the quick or budget settings, then ``extra`` (a
    baseline's or the search's). The budget caps the recipe's own ``max_time``; ``max_steps`` still ends sooner."""
    card = scorecard(task)
    cfg = apply_overrides(task.Config(), list(card.recipe))
    settings = []
    if budget.quick:
        settings += [*card.quick, f"max_steps={QUICK_STEPS}", "max_time=0"]
        settings += [f"eval_every={QUICK_STEPS}"]
    else:
        seconds = task_minutes(task, budget) * 60
        settings += [f"max_time={min(cfg.max_time, seconds) if cfg.max_time else seconds}", f"clock={budget.clock}"]
    return apply_overrides(cfg, [*settings, *extra])


def task_minutes(task: Task, budget: Budget) -> float:
    """The minutes each training of ``task`` gets: the run's one budget, else the task's stated one."""
    return budget.minutes if budget.minutes else scorecard(task).budget_minutes


def reusable(run_dir: Path, budget: Budget) -> bool:
    """A finished run is in ``run_dir`` and ``budget.force`` does not ask to retrain it: ``run_task`` reuses it."""
    return RunDir(run_dir).metrics.exists() and not budget.force


def baseline_dir(run_dir: Path, name: str) -> Path:
    """Where the scorecard's baseline run ``name`` of the task trained in ``run_dir`` lives."""
    return run_dir / "baselines" / name


def run_task(
    task: Task, run_dir: Path, budget: Budget, progress: bool, extra: tuple[str, ...] | list[str] = ()
) -> dict[str, Any]:
    """Train (unless a finished run is there and not ``budget.force``) and return its metrics."""
    if reusable(run_dir, budget):
        return read_json(RunDir(run_dir).metrics)
    status = task.data_status(task.Config())
    if status:
        raise UserError(status)
    cfg = _recipe(task, budget, list(extra))
    return train(task, cfg, run_dir, overwrite=True, progress=progress)


def run_baselines(task: Task, run_dir: Path, budget: Budget, progress: bool) -> dict[str, Any]:
    """Train the scorecard's ``baseline_runs`` (the task with other settings, e.g. ``model=cnn``) next to the
    transformer, each in ``run_dir/baselines/<name>`` with the same budget; ``{name: its metric}``."""
    card = scorecard(task)
    found = {}
    for name, overrides in card.baseline_runs:
        m = run_task(task, baseline_dir(run_dir, name), budget, progress, overrides)
        found[name] = m.get(card.metric)
    return found


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "—" if v is None else str(v)


def _best(
    names: Iterable[str], metrics: dict[str, Any], higher: bool
) -> tuple[str | None, float | None, dict[str, float]]:
    """The best of the baselines ``names`` that ``metrics`` has: (its name, its value, every measured one)."""
    measured = {b: metrics[b] for b in names if isinstance(metrics.get(b), int | float)}
    if not measured:
        return None, None, measured
    name = (max if higher else min)(measured, key=lambda b: measured[b])
    return name, measured[name], measured


def verdict(card: Scorecard, metrics: dict[str, Any]) -> dict[str, Any]:
    """The task's row: its metric, the best baseline on the same split, the limit, and a one-line verdict.

    A metric within ``card.tolerance`` of the limit "reaches the limit", even when a baseline does too: a toy
    whose baseline is already perfect (copy: the input is the answer) is a success when the model is perfect,
    and when it is not, the verdict says how far from the limit it is, never that it failed to beat a baseline
    nothing can beat. A metric closer than ``card.margin`` to the best baseline, on either side, is "level with"
    it: within the noise the task page states, neither a win nor a loss. A win on the metric is a win only if
    every metric of ``card.also`` is ahead of its own best baseline as well; otherwise the verdict names the
    first one that is not."""
    value = metrics.get(card.metric)
    better = (lambda a, b: a > b) if card.higher_is_better else (lambda a, b: a < b)
    names = (*card.baselines, *(name for name, _ in card.baseline_runs))
    best_name, best, measured = _best(names, metrics, card.higher_is_better)
    limit = metrics.get(card.limit) if card.limit else card.limit_value
    limit_text = f"{card.limit} ({_fmt(limit)})" if card.limit else _fmt(limit)
    also = {}
    for metric, baselines in card.also:
        a_name, a_best, a_measured = _best(baselines, metrics, card.higher_is_better)
        measured.update(a_measured)
        also[metric] = {"value": metrics.get(metric), "best_baseline": a_name, "baseline_value": a_best}

    def reaches(v: float | None) -> bool:
        return v is not None and limit is not None and abs(limit - v) <= card.tolerance

    within = f" (within {_fmt(card.tolerance)})" if card.tolerance else ""
    if value is None:
        text = f"no {card.metric} in metrics.json"
    elif reaches(value):
        text = f"reaches the limit {limit_text}{within}"
        if best is not None:
            text += f"; {best_name} {_fmt(best)}" + (" reaches it too" if reaches(best) else "")
    elif best is None:
        text = "no baseline measured"
    elif reaches(best):
        text = f"does not reach the limit {limit_text}{within}, which {best_name} reaches"
    elif abs(value - best) < card.margin:
        lead = "ahead of" if better(value, best) else "behind"
        text = (
            f"level with {best_name} ({_fmt(best)}): {_fmt(abs(value - best))} {lead} it, "
            f"inside the {_fmt(card.margin)} a win needs"
        )
    elif better(value, best):
        text = f"beats every baseline (best: {best_name} {_fmt(best)})"
        ahead = []
        for metric, row in also.items():
            v, b, b_name = row["value"], row["baseline_value"], row["best_baseline"]
            if v is None or b is None:
                text = f"{card.metric} beats every baseline (best: {best_name} {_fmt(best)}), but no {metric}"
                text += " in metrics.json" if v is None else " baseline measured"
                break
            if not better(v, b):
                text = (
                    f"does NOT beat {b_name} ({_fmt(b)}) on {metric} ({_fmt(v)}), "
                    f"though {card.metric} beats every baseline (best: {best_name} {_fmt(best)})"
                )
                break
            ahead.append(f"{metric} {_fmt(v)} beats {b_name} {_fmt(b)} too")
        else:
            text += "".join(f"; {a}" for a in ahead)
    else:
        text = f"does NOT beat {best_name} ({_fmt(best)})"
    if value is not None and limit is not None and not reaches(value):
        text += f"; {_fmt(abs(limit - value))} from the limit {limit_text}"
    row = {
        "metric": card.metric,
        "value": value,
        "best_baseline": best_name,
        "baseline_value": best,
        "limit": (card.limit or "constant") if limit is not None else None,
        "limit_value": limit,
        "params": metrics.get("params"),
        "train_seconds": metrics.get("train_seconds"),
        "verdict": text,
        "baselines": measured,
    }
    if also:
        row["also"] = also
    return row


def budget_text(header: dict[str, Any]) -> str:
    """The training budget in words, for the report."""
    if header.get("quick"):
        return f"{QUICK_STEPS} steps (quick mode)"
    clock = (
        "of CPU time of the training process (what it takes on an idle core with one thread)"
        if header.get("clock") == "cpu"
        else "of wall-clock time"
    )
    if not header.get("budget_minutes"):
        return (
            f"each task's stated budget (the 'budget min' column) {clock}, or the recipe's max_steps if sooner; "
            "'train s' counts the same clock"
        )
    minutes = f"{_fmt(header['budget_minutes'])} min"
    if header.get("budget_ref_minutes"):
        minutes = (
            f"{_fmt(header['budget_ref_minutes'])} reference min (at {_fmt(header['reference_fp32_gflops'])} fp32 "
            f"GFLOP/s) = {minutes} actual here (measured fp32 {_fmt(header['calibration']['fp32_gflops'])} GFLOP/s)"
        )
    return f"{minutes} {clock}, or the recipe's max_steps if sooner; 'train s' counts the same clock"


TITLE = [
    "# The Challenge, answered by measurement",
    "",
    "> For each example, what is the minimal transformer — no pre-trained or rule-based parts — that trains",
    "> in reasonable time on a consumer laptop CPU and achieves good performance? If there is none, why?",
    "",
]


def report_markdown(rows: list[dict[str, Any]], header: dict[str, Any], plots_under: str = "") -> str:
    """The report of ``report.json``'s ``rows`` and ``header`` without its title: calibration, load, budget, the
    table, a section per task. Plots are linked as ``plots_under`` + the path the row keeps (``<task>/x.png``,
    relative to the report's directory); ``scripts/publish.py`` renders docs/challenge.md's report with it from
    benchmarks/results/challenge.json, so the page cannot drift from the JSON."""
    load = header.get("load") or {}
    lines = [
        f"Command: `{header['command']}`  ",
        f"Date: {header['date']}; machine: {header['machine']}  ",
        f"Load: {calibration.load_text(load)}  " if load else "Load: not measured  ",
        f"Budget per training: {budget_text(header)}",
        "",
        *(
            [
                f"**LOADED**: other processes used {100 * load['others_cpu_share']:.0f}% of the CPUs during this run "
                "(>= 10%): every time below is an upper bound; do not publish it as a speed.",
                "",
            ]
            if load.get("verdict") == "LOADED"
            else []
        ),
        *(
            ["**Quick mode**: tiny models trained for a few steps. This checks the pipeline; it answers nothing.", ""]
            if header.get("quick")
            else []
        ),
        "| task | metric | transformer | best baseline | limit | params | budget min | train s | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        baseline = f"{r['best_baseline']} {_fmt(r['baseline_value'])}" if r["best_baseline"] else "—"
        limit = f"{r['limit']} {_fmt(r['limit_value'])}" if r["limit_value"] is not None else "—"
        lines.append(
            f"| {r['task']} | {r['metric']} | {_fmt(r['value'])} | {baseline} | {limit} | {_fmt(r['params'])} "
            f"| {_fmt(r.get('budget_minutes'))} | {_fmt(r['train_seconds'])} | {r['verdict']} |"
        )
    reused = [label for r in rows for label in r.get("reused", [])]
    if reused:
        lines += [
            "",
            f"Reused, not trained by this invocation (a finished run was in `runs/`; `--force` retrains): "
            f"{', '.join(reused)}. Their rows are the earlier run's, on whatever machine and code it had.",
        ]
    for r in rows:
        lines += ["", f"## {r['task']}", "", r["summary"], ""]
        if r.get("recipe"):
            lines += [f"Recipe: the task's defaults with `--set {' '.join(r['recipe'])}`.", ""]
        if r.get("baselines"):
            measured = ", ".join(f"{k} {_fmt(v)}" for k, v in r["baselines"].items())
            lines += [f"{r['metric']} {_fmt(r['value'])}; every baseline on the same split: {measured}.", ""]
        for metric, a in r.get("also", {}).items():
            best = f"{a['best_baseline']} {_fmt(a['baseline_value'])}" if a["best_baseline"] else "no baseline"
            lines += [f"A win needs {metric} ahead too: {_fmt(a['value'])} against the best, {best}.", ""]
        lines += [f"![{Path(p).stem}]({plots_under}{p})" for p in r["plots"]]
        if r.get("search"):
            lines += ["", "Minimal-architecture search:", "", r["search"]]
    return "\n".join(lines) + "\n"


def write_report(out: Path, rows: list[dict[str, Any]], header: dict[str, Any]) -> Path:
    """``REPORT.md`` (and ``report.json``) for the finished tasks, plots linked from ``DIR/<task>/``."""
    text = "\n".join(TITLE) + "\n" + report_markdown(rows, header)
    report = out / "REPORT.md"
    atomic_write(report, lambda tmp: Path(tmp).write_text(text))
    write_json(out / "report.json", {"header": header, "rows": rows})
    return report


def _copy_plots(run_dir: Path, dest: Path, out: Path) -> list[str]:
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for png in sorted(run_dir.glob("*.png")):
        shutil.copy(png, dest / png.name)
        paths.append(str((dest / png.name).relative_to(out)))
    return paths


def search(task: Task, out: Path, budget: Budget, tolerance: float) -> tuple[str, list[dict[str, Any]]]:
    """Sweep depth x width (heads: d_model / 16) with the task's recipe; plot metric vs parameters and vs
    time; name the smallest model within ``tolerance`` (relative) of the best."""
    card = scorecard(task)
    fields = {f.name for f in dataclasses.fields(task.Config)}
    if not {"n_layers", "d_model", "n_heads"} <= fields:
        return "(this task's model has no n_layers / d_model / n_heads settings to sweep)", []
    points = []
    for n_layers, d_model in SEARCH_GRID:
        extra = [f"n_layers={n_layers}", f"d_model={d_model}", f"n_heads={max(1, d_model // 16)}"]
        if "d_ff" in fields:
            extra.append(f"d_ff={4 * d_model}")
        run_dir = out / "runs" / f"{task.name}-search-L{n_layers}-d{d_model}"
        m = run_task(task, run_dir, budget, False, extra)
        points.append({"n_layers": n_layers, "d_model": d_model, "value": m.get(card.metric), **m})
    values = [p["value"] for p in points if p["value"] is not None]
    best = max(values) if card.higher_is_better else min(values)
    ok = [p for p in points if p["value"] is not None and abs(p["value"] - best) <= tolerance * abs(best)]
    smallest = min(ok, key=lambda p: p["params"])
    _plot_search(points, card, out / task.name / "search.png")
    rows = [
        f"| {p['n_layers']} | {p['d_model']} | {_fmt(p['value'])} | {p['params']} | {_fmt(p['train_seconds'])} |"
        for p in points
    ]
    text = "\n".join(
        [
            "| layers | d_model | " + card.metric + " | params | train s |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"Smallest within {tolerance:.0%} of the best ({_fmt(best)}): {smallest['n_layers']} layers x "
            f"{smallest['d_model']} dims, {smallest['params']} parameters, {_fmt(smallest['train_seconds'])} s.",
            "",
            f"![search]({task.name}/search.png)",
        ]
    )
    return text, points


def _plot_search(points: list[dict[str, Any]], card: Scorecard, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "params", "parameters"), (axes[1], "train_seconds", "training seconds")):
        for p in points:
            ax.scatter(p[key], p["value"], color=f"C{[1, 2, 4].index(p['n_layers'])}")
            ax.annotate(f"{p['n_layers']}x{p['d_model']}", (p[key], p["value"]), fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(card.metric)
        ax.grid(alpha=0.3)
    fig.suptitle("minimal-architecture search (label: layers x d_model)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_challenge(
    names: str | None,
    out: Path,
    budget_minutes: float | None = None,
    quick: bool = False,
    force: bool = False,
    do_search: bool = False,
    tolerance: float = 0.01,
    command: str = "tinyformers challenge",
    clock: str = "wall",
    budget_ref_minutes: float | None = None,
) -> Path:
    """Run the challenge over the tasks and write ``out/REPORT.md`` (after every task, so an interrupted
    run still reports what finished); return its path. ``budget_ref_minutes`` (instead of ``budget_minutes``)
    is a budget on a :data:`~tinyformers.engine.calibration.REFERENCE_FP32_GFLOPS` machine, scaled here by
    the measured fp32 matmul rate."""
    chosen = challenge_tasks(names)
    meter = calibration.LoadMeter()
    cal = calibration.calibrate()
    if budget_ref_minutes is not None:
        if cal["fp32_gflops"] is None:
            raise UserError("--budget-ref-minutes needs the matmul calibration: unset TINYFORMERS_CALIBRATION")
        budget_minutes = calibration.scaled_minutes(budget_ref_minutes, cal["fp32_gflops"])
    budget = Budget(budget_minutes, quick, clock, force)
    out.mkdir(parents=True, exist_ok=True)
    header = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": calibration.calibration_text(cal),
        "calibration": cal,
        "load": meter.read(),
        "budget_minutes": budget_minutes,
        "budget_ref_minutes": budget_ref_minutes,
        "reference_fp32_gflops": calibration.REFERENCE_FP32_GFLOPS,
        "clock": clock,
        "quick": quick,
    }
    rows: list[dict[str, Any]] = []
    try:
        for i, name in enumerate(chosen, start=1):
            task = get_task(name)
            print(f"[{i}/{len(chosen)}] {name}: {task.summary}", file=sys.stderr, flush=True)
            run_dir = out / "runs" / name
            card = scorecard(task)
            runs = [(name, run_dir)] + [(f"{name} ({b})", baseline_dir(run_dir, b)) for b, _ in card.baseline_runs]
            reused = [label for label, d in runs if reusable(d, budget)]
            try:
                metrics = run_task(task, run_dir, budget, progress=True)
                metrics = {**metrics, **run_baselines(task, run_dir, budget, progress=True)}
            except UserError as e:  # e.g. its data is not installed: report it, go on with the others
                print(f"[{i}/{len(chosen)}] {name}: skipped ({e})", file=sys.stderr)
                continue
            row = {"task": name, **verdict(card, metrics)}
            row["reused"] = reused
            row["summary"] = card.summary or task.summary
            row["recipe"] = list(card.recipe)
            row["budget_minutes"] = None if quick else task_minutes(task, budget)
            row["plots"] = _copy_plots(run_dir, out / name, out)
            if do_search:
                row["search"], row["search_points"] = search(task, out, budget, tolerance)
            rows.append(row)
            header["load"] = meter.read()
            write_report(out, rows, header)
            print(f"[{i}/{len(chosen)}] {name}: {row['verdict']}", file=sys.stderr, flush=True)
    except Interrupted:
        header["load"] = meter.read()
        write_report(out, rows, header)  # finished tasks are kept; rerunning skips them
        raise
    header["load"] = meter.read()
    return write_report(out, rows, header)
