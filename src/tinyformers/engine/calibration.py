"""What machine a number was measured on, and how busy it was: the calibration every report carries.

Two 2-core hosts that both say "AMD EPYC" can differ 2.5x in speed (AVX-512 with native bf16 vs AVX2 only),
and a wall-clock figure measured while other jobs share the cores is only an upper bound. So every report
says, next to its numbers:

- the CPU: model name, torch's capability (``torch.backends.cpu.get_cpu_capability()``), AVX2 / AVX-512 /
  native bf16 (``avx512_bf16`` or ``amx_bf16`` in ``/proc/cpuinfo``), CPUs and torch threads;
- measured square-matmul GFLOP/s (fp32 with all threads and with one; bf16 only where it is native, since
  emulated bf16 runs ~100x slower and would take minutes to measure), ~1-2 s in all;
- how much of the CPUs *other* processes used during the run: the machine's busy time from ``/proc/stat``
  minus this process tree's CPU time, over the run's wall time (:class:`LoadMeter`). A run where others used
  >= 10% (or the hypervisor stole >= 5%) is 'LOADED': do not publish its times as speeds.

These are the figures (and the verdict) of the maintainers' ``measure`` tool, built in so users get them too.
``TINYFORMERS_CALIBRATION=off`` skips the matmul measurement (the test suite sets it); the rest is free.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

# Budgets in "reference minutes" (``tinyformers challenge --budget-ref-minutes``) are minutes on a machine whose
# measured fp32 matmul rate (all threads, n=1024) is this. A round figure between the two kinds of 2-core host
# we measured (~159 GFLOP/s with AVX-512, ~59 with AVX2 only; docs/challenge.md).
REFERENCE_FP32_GFLOPS = 100.0
LOADED_SHARE = 0.10  # others' share of the CPUs from which a run is 'LOADED'
LOADED_STEAL = 0.05  # the hypervisor's steal share from which a run is 'LOADED'
_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_info() -> dict[str, Any]:
    """Model name, torch's CPU capability, AVX2 / AVX-512 / native bf16 flags, CPUs and torch threads."""
    model, flags = "", set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():  # the first CPU's lines
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {
        "cpu": model or platform.processor() or "unknown CPU",
        "capability": torch.backends.cpu.get_cpu_capability(),
        "avx2": "avx2" in flags,
        "avx512": "avx512f" in flags,
        "native_bf16": bool({"avx512_bf16", "amx_bf16"} & flags),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def matmul_gflops(
    dtype: torch.dtype = torch.float32, threads: int | None = None, n: int = 1024, seconds: float = 0.3
) -> float:
    """GFLOP/s of ``n x n`` matrix products (2 n^3 flops each) repeated for about ``seconds``."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        for _ in range(2):  # warm-up: thread pool, caches
            a @ b
        reps, start = 0, time.perf_counter()
        while True:
            a @ b
            reps += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return round(2 * n**3 * reps / elapsed / 1e9, 1)
    finally:
        torch.set_num_threads(before)


def calibrate(measure: bool | None = None, n: int = 1024, seconds: float = 0.3) -> dict[str, Any]:
    """:func:`cpu_info` plus measured matmul GFLOP/s (``measure=None``: unless ``TINYFORMERS_CALIBRATION=off``)."""
    info = cpu_info()
    if measure is None:
        measure = os.environ.get("TINYFORMERS_CALIBRATION", "").lower() not in ("off", "0", "no")
    rates: dict[str, Any] = {"fp32_gflops": None, "fp32_gflops_1t": None, "bf16_gflops": None}
    if measure:
        rates["fp32_gflops"] = matmul_gflops(torch.float32, info["threads"], n, seconds)
        rates["fp32_gflops_1t"] = matmul_gflops(torch.float32, 1, n, seconds)
        if info["native_bf16"]:
            rates["bf16_gflops"] = matmul_gflops(torch.bfloat16, info["threads"], n, seconds)
    else:
        rates["skipped"] = "TINYFORMERS_CALIBRATION=off"
    return {**info, **rates, "matmul_n": n}


def cpu_kind(info: dict[str, Any]) -> str:
    """The CPU and what it can do, e.g. 'AMD EPYC (AVX512; AVX2, AVX-512, native bf16)' (from :func:`cpu_info`)."""
    flags = (("AVX2", info["avx2"]), ("AVX-512", info["avx512"]), ("native bf16", info["native_bf16"]))
    return f"{info['cpu']} ({info['capability']}; {', '.join(k for k, on in flags if on) or 'no AVX2'})"


def calibration_text(cal: dict[str, Any]) -> str:
    """One line: the CPU, its capability, threads and the measured matmul rates."""
    cpu = f"{cpu_kind(cal)}, {cal['cpus']} CPUs, torch {cal['torch']} with {cal['threads']} threads"
    if cal.get("fp32_gflops") is None:
        return f"{cpu}; matmul not measured ({cal.get('skipped', 'skipped')})"
    bf16 = (
        f"bf16 {cal['bf16_gflops']} GFLOP/s" if cal.get("bf16_gflops") is not None else "bf16 not native (not measured)"
    )
    return f"{cpu}; matmul fp32 {cal['fp32_gflops']} GFLOP/s (1 thread {cal['fp32_gflops_1t']}), {bf16}"


def _cpu_line() -> list[int]:
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def _busy_and_steal() -> tuple[float, float]:
    """Busy CPU seconds of the whole machine since boot (steal excluded: it is the host's) and steal seconds."""
    v = _cpu_line()
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:7]) - idle) / _HZ, (v[7] / _HZ if len(v) > 7 else 0.0)


def tree_cpu_seconds(root: int | None = None) -> float:
    """CPU seconds of process ``root`` (default: this one) and its live descendants, each with its reaped
    children's time (utime + stime + cutime + cstime)."""
    table: dict[int, tuple[int, float]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            s = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        rest = s[s.rfind(")") + 2 :].split()
        table[int(d)] = (int(rest[1]), sum(int(x) for x in rest[11:15]) / _HZ)
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    total, stack = 0.0, [root or os.getpid()]
    while stack:
        p = stack.pop()
        total += table.get(p, (0, 0.0))[1]
        stack.extend(kids.get(p, []))
    return total


class LoadMeter:
    """How much of the CPUs other processes used between construction and :meth:`read` (any number of reads).

    other share = (machine busy time - this process tree's CPU time) / (wall time x CPUs)."""

    def __init__(self) -> None:
        self.available = Path("/proc/stat").exists()
        self.start = time.time()
        if self.available:
            self.busy0, self.steal0 = _busy_and_steal()
            self.ours0 = tree_cpu_seconds()

    def read(self) -> dict[str, Any]:
        wall = time.time() - self.start
        if not self.available or wall <= 0:
            return {"wall_s": round(wall, 2), "others_cpu_share": None, "host_steal_share": None, "verdict": "unknown"}
        busy, steal = _busy_and_steal()
        ours = tree_cpu_seconds() - self.ours0
        cpus = os.cpu_count() or 1
        others = max(0.0, busy - self.busy0 - ours) / (wall * cpus)
        stolen = (steal - self.steal0) / (wall * cpus)
        loaded = others >= LOADED_SHARE or stolen >= LOADED_STEAL
        return {
            "wall_s": round(wall, 2),
            "cpus": cpus,
            "ours_cpu_s": round(ours, 2),
            "others_cpu_share": round(others, 3),
            "host_steal_share": round(stolen, 3),
            "verdict": "LOADED" if loaded else "quiet",
        }


def load_text(load: dict[str, Any]) -> str:
    """The load verdict in the words of the ``measure`` tool (LOADED: do not publish its times as speeds)."""
    if load.get("others_cpu_share") is None:
        return "unknown (no /proc/stat on this system)"
    return (
        f"{load['verdict']} | others used {100 * load['others_cpu_share']:.0f}% of {load['cpus']} CPUs, "
        f"host steal {100 * load['host_steal_share']:.0f}% over {load['wall_s']} s"
    )


def scaled_minutes(reference_minutes: float, fp32_gflops: float | None) -> float:
    """``reference_minutes`` on a :data:`REFERENCE_FP32_GFLOPS` machine, as minutes on one measuring
    ``fp32_gflops``: the same matmul work (a slower machine gets proportionally more time)."""
    if not fp32_gflops or fp32_gflops <= 0:
        raise ValueError("a reference-minute budget needs the measured fp32 matmul rate (calibration was skipped)")
    return reference_minutes * REFERENCE_FP32_GFLOPS / fp32_gflops
