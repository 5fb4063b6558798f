"""Behaviour unchanged: the fast tasks re-run against the golden metrics recorded before the restructure (every
number identical), and every command's ``--help`` against the help recorded then.

``python scripts/golden.py check`` re-runs every task; this test runs the ones that train in seconds.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tinyformers.apps.cli import main

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
FAST_TASKS = ["copy", "reverse", "sort"]


def _golden_script():
    spec = importlib.util.spec_from_file_location("golden", ROOT / "scripts" / "golden.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_fast_tasks_give_the_golden_numbers():
    """copy, reverse and sort trained in one child process (one import of torch for the three)."""
    script = _golden_script()
    got = script.run_tasks(FAST_TASKS)
    for task in FAST_TASKS:
        want = json.loads((GOLDEN / "metrics" / f"{task}.json").read_text())
        assert not script.differences(want, got[task]), task


def test_golden_numbers_allow_another_hosts_rounding_and_nothing_more():
    same = _golden_script().same
    assert same(2.6430174708366394, 2.6430174112319946)  # reverse's test loss: AMD EPYC vs Intel Xeon (AMX)
    assert not same(2.643, 2.644) and not same(0.926, 0.927) and not same(12, 13)
    assert same(12, 12) and same("ok", "ok") and not same("ok", "no") and not same(None, 0.5)


def _help(capsys, argv: list[str]) -> list[str]:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 0
    return capsys.readouterr().out.splitlines()


HELP = sorted(p.stem for p in (GOLDEN / "help").glob("*.txt"))


@pytest.mark.parametrize("command", HELP)
def test_help_is_the_recorded_one(command, capsys, monkeypatch):
    """Flags and their help unchanged. ``generate`` may gain decoding options (they are derived from
    GenerationConfig): there, every recorded line after the usage block must still be there, in order."""
    monkeypatch.setenv("COLUMNS", "120")
    recorded = (GOLDEN / "help" / f"{command}.txt").read_text().splitlines()
    now = _help(capsys, ["--help"] if command == "tinyformers" else [command, "--help"])
    if command != "generate":
        assert now == recorded
        return
    body = recorded[recorded.index("") :]  # the usage block above it is re-wrapped when options are added
    lines = iter(now)
    missing = [line for line in body if line not in lines]
    assert not missing, missing
