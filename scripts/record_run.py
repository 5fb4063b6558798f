"""Record one measured training run as a row of a results file, so a page can publish it through
scripts/publish.py instead of by hand.

    ../shared/tools/measure --json M.json -- tinyformers train vision --out runs/v --set ... > v.log 2>&1
    python scripts/record_run.py vision_quiet runs/v --label "conv-stem ViT" --measure M.json --log v.log

The row is the run's metrics.json, plus its label, the exact ``tinyformers train`` command (rebuilt from the run's
config.json: the settings that differ from the task's defaults), every setting of the run (``config``, so the row
still says what ran if a default changes later), the measure verdict line and the machine it ran on (``machine``:
the CPU kind; when a file's rows come from two kinds of host, the rows recorded before get the file's old kind, so
none is mislabelled). A label names one row: recording another run under a label already there is refused unless
``--replace`` says the new run supersedes it; the old row then moves to the file's ``superseded`` list with its
command and verdict line (and the date it was superseded), so a number a page once quoted keeps its provenance.
``--curve`` also keeps the run's evaluations (``log.jsonl``) in the row, for a page's curve. Exits 1 with one line
when the run, its log (with ``--curve``) or the measure record is missing, the run was not quiet, or the label is
taken.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "src"))  # the library of this checkout, installed or not


def verdict_line(measure: dict, log: Path | None) -> str:
    """measure's own verdict line from the log when there is one, else the same line rebuilt from its JSON."""
    if log is not None:
        for line in log.read_text(errors="replace").splitlines()[::-1]:
            if line.startswith("measure: "):
                return line.strip()
    cal = measure["calibration"]
    return (
        f"measure: {measure['verdict']} | wall {measure['wall_s']} s, exit {measure['exit']} | others used "
        f"{100 * measure['others_cpu_share']:.0f}% of {measure['cpus']} CPUs, host steal "
        f"{100 * measure['host_steal_share']:.0f}% | fp32 {cal['fp32_gflops']} / bf16 {cal['bf16_gflops']} GFLOP/s "
        f"({cal['threads']} threads) | {measure['date']}"
    )


def unpublishable(measure: dict) -> str | None:
    """Why a measure record's run cannot be published (not quiet, or the command failed), or None."""
    if measure.get("verdict") != "quiet" or measure.get("exit") != 0:
        return f"verdict {measure.get('verdict')}, exit {measure.get('exit')}"
    return None


def train_command(run: Path, threads: int) -> str:
    """``tinyformers train`` with the settings of ``run`` that differ from its task's defaults."""
    from tinyformers.tasks import get_task

    saved = json.loads((run / "config.json").read_text())
    task = get_task(saved["task"])
    defaults = vars(task.Config())
    changed = [f"{k}={_text(v)}" for k, v in saved["config"].items() if k in defaults and defaults[k] != v]
    prefix = f"OMP_NUM_THREADS={threads} " if threads else ""
    sets = f" --set {' '.join(changed)}" if changed else ""
    return f"{prefix}tinyformers train {saved['task']} --out runs/{run.name}{sets}"


def _text(v: object) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="results file benchmarks/results/<name>.json")
    ap.add_argument("run", type=Path, help="the run directory (metrics.json, config.json)")
    ap.add_argument("--label", required=True, help="the row's name in tables")
    ap.add_argument("--measure", type=Path, required=True, help="the JSON that measure --json wrote")
    ap.add_argument("--log", type=Path, help="the captured output with measure's verdict line")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the run (0 = unset)")
    ap.add_argument(
        "--replace", action="store_true", help="supersede the row with the same label (kept under 'superseded')"
    )
    ap.add_argument(
        "--curve",
        action="store_true",
        help="also keep the run's evaluations (log.jsonl: step, training seconds, validation metrics) as 'curve'",
    )
    ap.add_argument(
        "--field",
        action="append",
        default=[],
        help="extra key=value for the row (e.g. dataset=fashion; numbers stay numbers)",
    )
    args = ap.parse_args(argv)
    try:
        metrics = json.loads((args.run / "metrics.json").read_text())
        measure = json.loads(args.measure.read_text())
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    curve = None
    if args.curve:
        from tinyformers.engine.rundir import RunDir

        curve = RunDir(args.run).read_log()
        if not curve:
            print(f"error: {args.run / 'log.jsonl'}: no evaluations logged", file=sys.stderr)
            return 1
    why = unpublishable(measure)
    if why:
        print(f"error: {args.measure}: {why}", file=sys.stderr)
        return 1
    row = {
        "label": args.label,
        **{k: _value(v) for k, v in (f.split("=", 1) for f in args.field)},
        **metrics,
        "command": train_command(args.run, args.threads),
        "measure": verdict_line(measure, args.log),
        # every setting, defaults included: the command above lists only those that differed from the defaults of
        # the day, so a later change of a default would otherwise change what the row's command means
        "config": json.loads((args.run / "config.json").read_text())["config"],
    }
    if curve is not None:  # the validation curve of one run: quality against CPU time within its schedule
        row["curve"] = curve
    path = RESULTS / f"{args.name}.json"
    data = json.loads(path.read_text()) if path.exists() else {"rows": []}
    old = [r for r in data["rows"] if r.get("label") == args.label]
    if old and not args.replace:
        print(
            f"error: {path.name} already has a row labelled {args.label!r} ({old[0].get('measure', '?')[-20:]}); "
            "choose another label, or --replace to supersede it",
            file=sys.stderr,
        )
        return 1
    if old:
        today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        data.setdefault("superseded", []).extend({**r, "superseded": today} for r in old)
    kind = _machine(measure)
    row["machine"] = kind["cpu"]
    previous = data.get("machine")
    if previous and previous.get("cpu") != kind["cpu"]:  # a second kind of host: each row names its own
        for r in data["rows"] + data.get("superseded", []):
            r.setdefault("machine", previous["cpu"])
        kind = {**kind, "cpu": "per row (each row's 'machine')"}
    data["rows"] = [r for r in data["rows"] if r.get("label") != args.label] + [row]
    data["machine"] = kind
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"{path}: {args.label}: {row['measure']}")
    return 0


def _value(text: str) -> float | int | str:
    """A ``--field`` value: a number when it reads as one (``tta_test_accuracy=0.9141``), else the text."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _machine(measure: dict) -> dict:
    from tinyformers.engine import calibration

    info = calibration.cpu_info()
    return {"cpu": calibration.cpu_kind(info), "cpus": measure["cpus"], "torch": measure["calibration"]["torch"]}


if __name__ == "__main__":
    sys.exit(main())
