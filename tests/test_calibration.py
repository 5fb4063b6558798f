"""The calibration every report carries: CPU kind, measured matmul rate, others' load, reference budgets."""

from __future__ import annotations

import pytest
import torch

from tinyformers.engine import calibration


def test_cpu_info_names_the_capability_and_flags():
    info = calibration.cpu_info()
    assert info["capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["threads"] == torch.get_num_threads() and info["cpus"] >= 1
    assert all(isinstance(info[k], bool) for k in ("avx2", "avx512", "native_bf16"))


def test_real_matmul_measurement_small():
    """The real path, once and small: positive rates; bf16 measured exactly when it is native."""
    cal = calibration.calibrate(measure=True, n=64, seconds=0.02)
    assert cal["fp32_gflops"] > 0 and cal["fp32_gflops_1t"] > 0
    assert (cal["bf16_gflops"] is not None) == cal["native_bf16"]
    assert "matmul fp32" in calibration.calibration_text(cal)


def test_skipped_calibration_says_so(monkeypatch):
    monkeypatch.setenv("TINYFORMERS_CALIBRATION", "off")
    cal = calibration.calibrate()
    assert cal["fp32_gflops"] is None
    assert "matmul not measured (TINYFORMERS_CALIBRATION=off)" in calibration.calibration_text(cal)


def test_load_meter_subtracts_our_own_cpu_time(monkeypatch):
    """others = (machine busy - our tree's CPU) / (wall x CPUs); >= 10% is LOADED."""
    clock = {"t": 0.0, "busy": 100.0, "steal": 0.0, "ours": 5.0}
    monkeypatch.setattr(calibration.time, "time", lambda: clock["t"])
    monkeypatch.setattr(calibration, "_busy_and_steal", lambda: (clock["busy"], clock["steal"]))
    monkeypatch.setattr(calibration, "tree_cpu_seconds", lambda root=None: clock["ours"])
    monkeypatch.setattr(calibration.os, "cpu_count", lambda: 2)
    meter = calibration.LoadMeter()
    meter.available = True
    clock.update(t=10.0, busy=100.0 + 16.0, ours=5.0 + 15.0)  # 16 busy CPU-s, 15 of them ours
    quiet = meter.read()
    assert quiet["others_cpu_share"] == 0.05 and quiet["verdict"] == "quiet"
    clock.update(busy=100.0 + 19.0)  # others 4 of 20 CPU-s
    loaded = meter.read()
    assert loaded["others_cpu_share"] == 0.2 and loaded["verdict"] == "LOADED"
    assert calibration.load_text(loaded).startswith("LOADED | others used 20% of 2 CPUs, host steal 0%")


def test_real_load_meter_reads_proc():
    meter = calibration.LoadMeter()
    sum(i * i for i in range(200_000))  # some CPU time of our own
    load = meter.read()
    if not meter.available:
        pytest.skip("no /proc/stat")
    assert load["verdict"] in ("quiet", "LOADED") and load["others_cpu_share"] >= 0 and load["ours_cpu_s"] >= 0


def test_reference_minutes_scale_with_the_measured_rate():
    ref = calibration.REFERENCE_FP32_GFLOPS
    assert calibration.scaled_minutes(10, ref) == 10
    assert calibration.scaled_minutes(10, ref / 2) == 20  # half as fast: twice the time, the same matmul work
    assert calibration.scaled_minutes(10, ref * 4) == 2.5
    with pytest.raises(ValueError, match="calibration"):
        calibration.scaled_minutes(10, None)
