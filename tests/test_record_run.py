"""scripts/record_run.py turns one measured run into a row of a results file: its metrics, the command
rebuilt from its config (only the settings that differ from the defaults) and measure's verdict line;
a loaded or failed measurement is refused."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "record_run.py"


@pytest.fixture
def record(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("record_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["record_run"] = module
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path / "results")
    (tmp_path / "results").mkdir()
    return module


def _run(tmp_path: Path, accuracy: float) -> Path:
    from tinyformers.tasks import get_task

    run = tmp_path / "f-conv"
    run.mkdir(exist_ok=True)
    config = {**vars(get_task("vision").Config()), "patch_embed": "conv", "flip": True, "max_time": 600.0}
    (run / "config.json").write_text(json.dumps({"task": "vision", "config": config}))
    (run / "metrics.json").write_text(json.dumps({"test_accuracy": accuracy, "steps": 7000}))
    return run


def _measure(tmp_path: Path, verdict: str = "quiet") -> Path:
    m = {
        "exit": 0,
        "wall_s": 650.0,
        "others_cpu_share": 0.01 if verdict == "quiet" else 0.4,
        "host_steal_share": 0.0,
        "verdict": verdict,
        "cpus": 2,
        "calibration": {"torch": "2.13.0+cpu", "threads": 1, "fp32_gflops": 94.0, "bf16_gflops": 410.0},
        "date": "2026-12-04 20:00 UTC",
    }
    path = tmp_path / f"{verdict}.json"
    path.write_text(json.dumps(m))
    return path


def test_a_quiet_run_becomes_a_row_and_a_rerun_supersedes_it_only_when_asked(record, tmp_path, capsys):
    run, quiet = _run(tmp_path, 0.91), _measure(tmp_path)
    assert record.main(["v", str(run), "--label", "conv", "--field", "dataset=fashion", "--measure", str(quiet)]) == 0
    path = tmp_path / "results" / "v.json"
    first = path.read_text()
    assert "superseded" not in json.loads(first)
    _run(tmp_path, 0.92)
    assert record.main(["v", str(run), "--label", "conv", "--measure", str(quiet)]) == 1  # the label is taken
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--replace" in err and path.read_text() == first
    assert record.main(["v", str(run), "--label", "conv", "--measure", str(quiet), "--replace"]) == 0
    data = json.loads(path.read_text())
    rows = data["rows"]
    assert len(rows) == 1 and rows[0]["test_accuracy"] == 0.92
    cmd = rows[0]["command"]
    assert cmd.startswith("OMP_NUM_THREADS=1 tinyformers train vision --out runs/f-conv --set ")
    assert set(cmd.split("--set ")[1].split()) == {"patch_embed=conv", "flip=true", "max_time=600.0"}
    assert rows[0]["measure"].startswith("measure: quiet | wall 650.0 s, exit 0 | others used 1% of 2 CPUs")
    assert rows[0]["config"]["patch_embed"] == "conv" and rows[0]["config"]["n_layers"] == 4  # defaults kept too
    # the superseded row keeps what a page may still quote: its number, command and verdict line
    (old,) = data["superseded"]
    assert old["test_accuracy"] == 0.91 and old["command"] == cmd and old["measure"] == rows[0]["measure"]
    assert old["dataset"] == "fashion" and len(old["superseded"]) == 10  # the date, YYYY-MM-DD


def test_rows_from_another_kind_of_host_keep_each_rows_machine(record, tmp_path, monkeypatch):
    """A file measured on an AMD host gets a row from an Intel host: no row is relabelled with the new CPU."""
    run, quiet = _run(tmp_path, 0.91), _measure(tmp_path)
    monkeypatch.setattr(record, "_machine", lambda m: {"cpu": "AMD EPYC (AVX-512)", "cpus": 2, "torch": "2.13.0"})
    assert record.main(["v", str(run), "--label", "amd", "--measure", str(quiet)]) == 0
    assert record.main(["v", str(run), "--label", "amd-2", "--measure", str(quiet)]) == 0
    data = json.loads((tmp_path / "results" / "v.json").read_text())
    assert data["machine"]["cpu"] == "AMD EPYC (AVX-512)" and data["rows"][0]["machine"] == "AMD EPYC (AVX-512)"
    data["rows"][0].pop("machine")  # a row recorded before rows named their machine
    (tmp_path / "results" / "v.json").write_text(json.dumps(data))
    monkeypatch.setattr(record, "_machine", lambda m: {"cpu": "Intel Xeon (AMX)", "cpus": 2, "torch": "2.13.0"})
    assert record.main(["v", str(run), "--label", "intel", "--measure", str(quiet)]) == 0
    data = json.loads((tmp_path / "results" / "v.json").read_text())
    by_label = {r["label"]: r["machine"] for r in data["rows"]}
    assert by_label == {"amd": "AMD EPYC (AVX-512)", "amd-2": "AMD EPYC (AVX-512)", "intel": "Intel Xeon (AMX)"}
    assert data["machine"]["cpu"].startswith("per row")


def test_fields_that_read_as_numbers_are_stored_as_numbers(record, tmp_path, capsys):
    run, quiet = _run(tmp_path, 0.91), _measure(tmp_path)
    fields = ["--field", "tta=0.9141", "--field", "seeds=3", "--field", "variant=3 layers, lr 0.003"]
    assert record.main(["v", str(run), "--label", "a", *fields, "--measure", str(quiet)]) == 0
    row = json.loads((tmp_path / "results" / "v.json").read_text())["rows"][0]
    assert row["tta"] == 0.9141 and row["seeds"] == 3 and row["variant"] == "3 layers, lr 0.003"


def test_the_verdict_line_is_taken_from_the_log_when_given(record, tmp_path, capsys):
    log = tmp_path / "run.log"
    log.write_text("training...\nmeasure: quiet | as printed | 2026-12-04 20:00 UTC\n")
    args = ["v", str(_run(tmp_path, 0.9)), "--label", "a", "--measure", str(_measure(tmp_path)), "--log", str(log)]
    assert record.main(args) == 0
    row = json.loads((tmp_path / "results" / "v.json").read_text())["rows"][0]
    assert row["measure"] == "measure: quiet | as printed | 2026-12-04 20:00 UTC"


def test_a_loaded_measurement_or_a_missing_run_is_refused(record, tmp_path, capsys):
    loaded = _measure(tmp_path, "LOADED")
    assert record.main(["v", str(_run(tmp_path, 0.9)), "--label", "a", "--measure", str(loaded)]) == 1
    assert "verdict LOADED" in capsys.readouterr().err
    assert record.main(["v", str(tmp_path / "nothing"), "--label", "a", "--measure", str(_measure(tmp_path))]) == 1
    assert not (tmp_path / "results" / "v.json").exists()


def test_curve_keeps_the_runs_evaluations_and_needs_its_log(record, tmp_path, capsys):
    run, quiet = _run(tmp_path, 0.9), _measure(tmp_path)
    assert record.main(["v", str(run), "--label", "a", "--curve", "--measure", str(quiet)]) == 1  # no log.jsonl
    assert "log.jsonl" in capsys.readouterr().err and not (tmp_path / "results" / "v.json").exists()
    evals = [{"step": 500, "train_seconds": 60.1, "val_accuracy": 0.8}, {"step": 1000, "train_seconds": 120.3}]
    (run / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    assert record.main(["v", str(run), "--label", "a", "--curve", "--measure", str(quiet)]) == 0
    assert record.main(["v", str(run), "--label", "b", "--measure", str(quiet)]) == 0
    rows = json.loads((tmp_path / "results" / "v.json").read_text())["rows"]
    assert rows[0]["curve"] == evals and "curve" not in rows[1]
