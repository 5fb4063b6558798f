"""Shared by the benchmark scripts: machine description with calibration and load, table printing, JSON output.

Importing this module starts a :class:`~tinyformers.engine.calibration.LoadMeter`: every JSON a script writes
says how much of the CPUs other processes used from then on (a 'LOADED' run's times are not speeds), next
to the machine's calibration (CPU kind, matmul GFLOP/s measured once per script, ~1-2 s).
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import platform
from pathlib import Path

import torch

from tinyformers.engine import calibration

RESULTS = Path(__file__).parent / "results"
LOAD = calibration.LoadMeter()
# nanoGPT's shakespeare_char CPU configuration, in our settings' names
NANOGPT = [
    "n_layers=4",
    "n_heads=4",
    "d_model=128",
    "block_size=64",
    "batch_size=12",
    "lr=1e-3",
    "dropout=0",
    "warmup_steps=100",
    "min_lr_ratio=0.1",
    "max_steps=2000",
]


@functools.cache
def _calibration() -> dict:
    return calibration.calibrate()


def machine() -> dict:
    """The date, CPU, threads and versions; the calibration; the load since this script started."""
    cal = _calibration()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cal["cpu"],
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "calibration": cal,
        "load": LOAD.read(),
    }


def header(m: dict) -> str:
    """The report header of a machine record: calibration, then the load verdict (LOADED runs say so)."""
    text = f"machine: {calibration.calibration_text(m['calibration'])}\nload: {calibration.load_text(m['load'])}"
    if m["load"].get("verdict") == "LOADED":
        text += "\nLOADED: other processes used >= 10% of the CPUs: the times above are upper bounds, not speeds"
    return text


def table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table of ``rows`` restricted to ``columns``."""

    def fmt(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def save(name: str, command: str, rows: list[dict], extra: dict | None = None) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    m = machine()
    path.write_text(json.dumps({"command": command, "machine": m, "rows": rows, **(extra or {})}, indent=2))
    print(header(m))
    return path
