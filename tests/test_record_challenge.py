"""scripts/record_challenge.py turns one measured ``tinyformers challenge`` invocation into
benchmarks/results/challenge.json (the source of docs/challenge.md's report) and its plots; a quick or loaded
run is refused."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "record_challenge.py"


@pytest.fixture
def record(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("record_challenge", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["record_challenge"] = module
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(module, "PLOTS", tmp_path / "docs" / "challenge")
    (tmp_path / "results").mkdir()
    return module


def _challenge(tmp_path: Path, quick: bool = False) -> Path:
    out = tmp_path / "ch"
    (out / "copy").mkdir(parents=True)
    (out / "copy" / "loss.png").write_bytes(b"png")
    row = {"task": "copy", "metric": "test_exact_match", "value": 1.0, "plots": ["copy/loss.png"]}
    header = {"command": "tinyformers challenge --out ch", "quick": quick}
    (out / "report.json").write_text(json.dumps({"header": header, "rows": [row]}))
    return out


def _measure(tmp_path: Path, verdict: str = "quiet") -> Path:
    m = {
        "command": ["tinyformers", "challenge", "--clock", "cpu", "--out", "ch"],
        "exit": 0,
        "wall_s": 6000.0,
        "others_cpu_share": 0.0 if verdict == "quiet" else 0.3,
        "host_steal_share": 0.0,
        "verdict": verdict,
        "cpus": 2,
        "calibration": {"threads": 1, "fp32_gflops": 150.0, "bf16_gflops": 1100.0},
        "date": "2026-12-06 22:24 UTC",
    }
    path = tmp_path / f"{verdict}.json"
    path.write_text(json.dumps(m))
    return path


def test_a_quiet_challenge_becomes_the_pages_source_with_its_plots(record, tmp_path):
    out = _challenge(tmp_path)
    assert record.main([str(out), "--measure", str(_measure(tmp_path)), "--commit", "abc1234"]) == 0
    saved = json.loads((tmp_path / "results" / "challenge.json").read_text())
    assert saved["command"] == "OMP_NUM_THREADS=1 tinyformers challenge --clock cpu --out ch"
    assert saved["commit"] == "abc1234" and saved["rows"][0]["task"] == "copy"
    assert saved["measure"].startswith("measure: quiet | wall 6000.0 s, exit 0 | others used 0% of 2 CPUs")
    assert (tmp_path / "docs" / "challenge" / "copy" / "loss.png").read_bytes() == b"png"


@pytest.mark.parametrize(
    ("quick", "verdict", "match"),
    [(True, "quiet", "--quick report"), (False, "LOADED", "not quiet")],
)
def test_quick_or_loaded_runs_are_refused(record, tmp_path, capsys, quick, verdict, match):
    out = _challenge(tmp_path, quick=quick)
    assert record.main([str(out), "--measure", str(_measure(tmp_path, verdict))]) == 1
    assert match in capsys.readouterr().err
    assert not (tmp_path / "results" / "challenge.json").exists()


def test_a_directory_without_a_report_is_one_line(record, tmp_path, capsys):
    assert record.main([str(tmp_path), "--measure", str(_measure(tmp_path))]) == 1
    assert "no report.json" in capsys.readouterr().err
