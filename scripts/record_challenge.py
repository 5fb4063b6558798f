"""Record one measured ``tinyformers challenge`` invocation as docs/challenge.md's source: its report.json becomes
benchmarks/results/challenge.json (with the command, the commit it ran and the measure verdict line), and the plots
it copied into its output directory replace those under docs/challenge/.

    OMP_NUM_THREADS=1 ../shared/tools/measure --json M.json -- tinyformers challenge --clock cpu --out ch > ch.log 2>&1
    python scripts/record_challenge.py ch --measure M.json --log ch.log --commit 1b583d7
    python scripts/publish.py write   # docs/challenge.md's report block, from the new JSON

The hand-written text of docs/challenge.md around the generated report (what the table says, what changed since the
previous report) is then edited by hand. Plots already under docs/challenge/ that the run did not make (the
``--search`` plots) are kept. Exits 1 with one line when the directory has no report, the report is a ``--quick``
one, or the measure record is missing, unreadable or not quiet.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PLOTS = ROOT / "docs" / "challenge"
sys.path.insert(0, str(ROOT / "scripts"))

from record_run import unpublishable, verdict_line  # noqa: E402  (the same checks and line as a recorded run's)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="the challenge's --out directory (REPORT.md, report.json, plots)")
    ap.add_argument("--measure", type=Path, required=True, help="the JSON ../shared/tools/measure --json wrote")
    ap.add_argument("--log", type=Path, help="the run's log, for measure's own verdict line")
    ap.add_argument("--commit", help="the commit the run's code was at (default: this checkout's HEAD)")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the run, for the command shown")
    args = ap.parse_args(argv)

    report = args.out / "report.json"
    if not report.is_file():
        print(f"error: no report.json in {args.out} (is it a tinyformers challenge --out directory?)", file=sys.stderr)
        return 1
    try:
        data = json.loads(report.read_text())
        measure = json.loads(args.measure.read_text())
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if data["header"].get("quick"):
        print("error: a --quick report checks the pipeline only; it is not published", file=sys.stderr)
        return 1
    why = unpublishable(measure)
    if why:
        print(f"error: the run was not quiet or failed ({why})", file=sys.stderr)
        return 1
    commit = (
        args.commit
        or subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    prefix = f"OMP_NUM_THREADS={args.threads} " if args.threads else ""
    cmd = measure.get("command")
    command = prefix + (shlex.join(cmd) if isinstance(cmd, list) else str(cmd or data["header"]["command"]))
    result = {
        "command": command,
        "commit": commit,
        "measure": verdict_line(measure, args.log),
        "header": data["header"],
        "rows": data["rows"],
    }
    dest = RESULTS / "challenge.json"
    dest.write_text(json.dumps(result, indent=2) + "\n")
    copied = 0
    for row in data["rows"]:
        for plot in row["plots"]:
            target = PLOTS / plot
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(args.out / plot, target)
            copied += 1
    print(f"wrote {dest} ({len(data['rows'])} tasks) and {copied} plots under {PLOTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
