"""CPU speed settings chosen at run time: threads, bf16 autocast, and a ``torch.compile`` that pays for itself.

The machines this project runs on differ: some CPUs have native bf16
(``avx512_bf16`` / AMX), where a bf16 matmul is several times faster than fp32; others are AVX2-only, where
bf16 is emulated and hundreds of times *slower*. Every choice here reads the CPU first and never picks
bf16 on a CPU without it.

``compile`` settings (``TrainConfig.compile``): 'on', 'off' (``true``/``false`` are accepted), or 'auto'.
'auto' compiles the training forward and loss only when that is expected to win end to end, compile
time included (:class:`AutoCompile` states the rule). Compiled graphs are cached on disk by Inductor
(FX graph cache and AOT autograd cache) in :func:`cache_dir`, so a second run with the same model and
shapes pays seconds instead of tens of seconds. Clear the cache with ``rm -rf ~/.cache/tinyformers/inductor``
(or the directory :func:`cache_dir` names: ``$TINYFORMERS_CACHE_DIR``, else ``$XDG_CACHE_HOME/tinyformers``,
under ``inductor/``; an explicit ``$TORCHINDUCTOR_CACHE_DIR`` is used as it is).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

BF16_FLAGS = ("avx512_bf16", "amx_bf16")
COMPILE_VALUES = {"auto": "auto", "on": "on", "off": "off", "true": "on", "false": "off", "1": "on", "0": "off"}
LEDGER = "tinyformers-compiles.json"
VEC_ISA_RECORD = "tinyformers-vec-isa.json"
AUTOCAST_FUNCTIONS = ("torch.amp.autocast_mode._enter_autocast", "torch.amp.autocast_mode._exit_autocast")
# bumped when a change in the library changes what compiling gains, so the ledger's old verdicts are not reused:
# 2 = dropout no longer breaks the graph (2026-12-06; before, most of the zoo's keys measured "no gain")
# 3 = Inductor's C++ wrapper on the CPU, bf16 graphs in AOT autograd's cache (2026-12-07; compiled steps got faster)
KEY_VERSION = 3


# --- what the CPU can do ---------------------------------------------------------------------------------


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The feature flags of the first CPU in ``/proc/cpuinfo`` (or of the given text); empty if unknown."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def native_bf16(flags: set[str] | None = None, capability: str | None = None) -> bool:
    """True when this CPU multiplies bf16 natively (``avx512_bf16`` or AMX), so bf16 autocast can be a win.

    Both the CPU flags and torch's kernel level (``torch.backends.cpu.get_cpu_capability()``) must agree: an
    AVX2-only build or CPU (where bf16 is emulated, hundreds of times slower) is never native.
    """
    flags = cpu_flags() if flags is None else flags
    capability = torch.backends.cpu.get_cpu_capability() if capability is None else capability
    return capability.startswith("AVX512") and any(f in flags for f in BF16_FLAGS)


def physical_cores(cpuinfo: str | None = None) -> int:
    """Physical cores this process may use (hyper-threads counted once), at least 1."""
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return max(1, allowed)
    cores, physical = set(), "0"
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "physical id":
            physical = value.strip()
        elif key.strip() == "core id":
            cores.add((physical, value.strip()))
    return max(1, min(allowed, len(cores) or allowed))


def set_threads(environ: MutableMapping[str, str] | None = None) -> int:
    """Set torch's intra-op threads for a training process and return the number.

    An explicit ``OMP_NUM_THREADS`` wins (torch already read it). Under ``torchrun`` (``WORLD_SIZE`` > 1)
    each process gets one thread, so the processes do not fight over the cores; otherwise one thread per
    physical core (hyper-threads slow matmuls down).
    """
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    if env.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    threads = 1 if int(env.get("WORLD_SIZE", "1")) > 1 else physical_cores()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


# --- memory: keep what a step frees for the next step -------------------------------------------------------

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt() parameters (<malloc.h>)
MMAP_THRESHOLD = 32 << 20  # the largest glibc allows on 64-bit: blocks below it come from the heap, reused
TRIM_THRESHOLD = 1 << 30  # the heap's free top goes back to the operating system only above 1 GiB


def keep_freed_memory(environ: MutableMapping[str, str] | None = None, libc: Any = None) -> bool:
    """Ask glibc to keep the memory a training step frees for the next step; return whether it was set.

    By default glibc gives a large freed block back to the operating system (``munmap``, or trimming the top of
    the heap), and the next step's tensor of that size is faulted in again, page by page, zero-filled by the
    kernel. A training step frees and allocates the same sizes every time, so that is pure overhead: on the AVX2
    host the nanoGPT configuration with rotary positions took ~1,200-2,000 minor page faults a step (5-8 MB
    faulted in), fewer than 10 with this (``docs/speed.md``, "Memory"). The cost: the process keeps its peak
    memory instead of shrinking between steps, as jemalloc or tcmalloc (which Intel's PyTorch launcher preloads)
    would too.

    Process-wide, so the command line calls it (``train``, ``challenge``), not the library. Linux with glibc
    only; ``TINYFORMERS_MALLOC=default`` leaves glibc as it is.
    """
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    if env.get("TINYFORMERS_MALLOC", "").lower() in ("default", "off", "0"):
        return False
    if libc is None:
        try:
            if not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION"):
                return False
            libc = ctypes.CDLL("libc.so.6")
        except (OSError, ValueError):  # no such confstr name, or no glibc to load
            return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


# --- bf16 autocast ------------------------------------------------------------------------------------------


def autocast_for(cfg: Any, device: torch.device, bf16_native: bool | None = None) -> tuple[Any, bool]:
    """The autocast context for ``cfg.amp`` on ``device``, and whether fp16 needs a gradient scaler.

    * 'off': fp32.
    * 'bf16': bf16 autocast (on a CPU without native bf16 this is the user's explicit, slow choice).
    * 'auto': on CUDA, bf16 (fp16 with a scaler where bf16 is missing); on a CPU, bf16 only when the CPU
      has it natively *and* the recipe says bf16 wins there (``cfg.cpu_bf16``: measured faster at equal
      steps with the held-out metric within noise); else fp32.

    Autocast keeps what needs the range in fp32: the loss (``cross_entropy``), softmax, layer norm and the
    optimizer state (parameters and AdamW moments are never cast).
    """
    if cfg.amp == "off":
        return contextlib.nullcontext(), False
    if device.type == "cuda":
        if not torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.float16), True
        return torch.autocast("cuda", dtype=torch.bfloat16), False
    if cfg.amp == "auto":
        native = native_bf16() if bf16_native is None else bf16_native
        if device.type != "cpu" or not (native and getattr(cfg, "cpu_bf16", False)):
            return contextlib.nullcontext(), False
    return torch.autocast(device.type, dtype=torch.bfloat16), False


# --- torch.compile that pays --------------------------------------------------------------------------------


def parse_compile(value: str | bool) -> str:
    """'auto', 'on' or 'off' from a setting (``true``/``false``, as before compile took three values)."""
    key = str(value).strip().lower()
    if key not in COMPILE_VALUES:
        raise ValueError(f"compile={value!r}: expected auto, on or off")
    return COMPILE_VALUES[key]


def cache_dir(environ: MutableMapping[str, str] | None = None) -> Path:
    """Where Inductor's compiled graphs (and this module's ledger of compile times) live on disk."""
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    # Inductor writes its default, <tmp>/torchinductor_<user>, into the environment once it has looked for
    # a cache; only another value is the user's own choice (checked by name: importing Inductor takes seconds)
    explicit = env.get("TORCHINDUCTOR_CACHE_DIR")
    if explicit:
        inductor_default = Path(explicit).parent == Path(tempfile.gettempdir()) and Path(explicit).name.startswith(
            "torchinductor_"
        )
        if not inductor_default:
            return Path(explicit)
    if env.get("TINYFORMERS_CACHE_DIR"):
        root = Path(env["TINYFORMERS_CACHE_DIR"])
    else:
        root = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tinyformers"
    return root / "inductor"


def enable_compile_cache(environ: MutableMapping[str, str] | None = None) -> Path:
    """Point Inductor at :func:`cache_dir` and turn on its persistent caches; return the directory.

    Must run before the first compilation of the process (Inductor reads the directory lazily).
    """
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    path = cache_dir(env)
    path.mkdir(parents=True, exist_ok=True)
    env["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = True  # compiled kernels, keyed by graph and shapes
    functorch_config.enable_autograd_cache = True  # the joint forward/backward graph (AOT autograd)
    # AOT autograd's cache refuses graphs that call functions it does not know to be deterministic in their
    # arguments, and the autocast context fused_sdpa enters (attention in fp32 under bf16 autocast) is one:
    # every warm run then re-traced and re-partitioned the joint graph (~2.5 s of a ~4 s warm compile of the
    # nanoGPT configuration). Entering and leaving autocast depend only on the node's arguments (device,
    # dtype, enabled), which are part of the cached graph, so they are marked cacheable, keyed by torch's version.
    for name in AUTOCAST_FUNCTIONS:
        inductor_config.unsafe_marked_cacheable_functions.setdefault(name, torch.__version__)
    return path


def read_record(path: Path) -> dict[str, Any]:
    """A small JSON record of the compile cache (the ledger, the ISA check); empty if missing or unreadable."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` atomically (concurrent runs share the cache); a read-only cache is skipped silently:
    it costs the next run a re-measurement, never this run."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass


def cpu_compile_settings(cache: Path, environ: MutableMapping[str, str] | None = None) -> None:
    """Inductor settings that make a small model's compiled CPU step and its warm start cheaper.

    Both were measured on the nanoGPT configuration (docs/speed.md, "A warm compile that costs little"):

    * ``cpp_wrapper``: the compiled graph's host code (the calls between kernels) is generated C++ instead of
      Python; a step of a small model makes hundreds of such calls. Left alone when ``TORCHINDUCTOR_CPP_WRAPPER``
      is set (the user's choice).
    * ``cpp.vec_isa_ok``: Inductor checks that each vector ISA the CPU flags name (AVX2, AVX-512, AMX, ...) can be
      built and loaded, in a fresh subprocess per ISA, in *every* process that compiles: ~1 s of each warm
      start. The first compile with a given cache does the check (:func:`vec_isa_probe`) and records the
      answer in the cache, keyed by torch's version, the Python, the C++ compiler and the CPU's flags; later
      runs with the same key skip it when every ISA passed. Left alone when ``TORCHINDUCTOR_VEC_ISA_OK`` is set.

    Both settings are part of Inductor's cache key, so they must be (and are) the same in every run that
    shares a cache.
    """
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    import torch._inductor.config as inductor_config

    if "TORCHINDUCTOR_CPP_WRAPPER" not in env:
        inductor_config.cpp_wrapper = True
    if "TORCHINDUCTOR_VEC_ISA_OK" not in env and vec_isa_probe(cache):
        inductor_config.cpp.vec_isa_ok = True


def vec_isa_probe(cache: Path, probe: Callable[[], bool] | None = None) -> bool:
    """Whether every vector ISA this CPU's flags name builds and loads with Inductor here; asked once per
    (torch, Python, C++ compiler, CPU flags) and recorded in ``cache`` (``probe``: Inductor's check, or a test's)."""
    compiler = shutil.which(os.environ.get("CXX", "g++")) or ""
    parts = [torch.__version__, os.path.realpath(sys.executable), compiler, sorted(cpu_flags())]
    key = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]
    path = cache / VEC_ISA_RECORD
    record = read_record(path)
    if key in record:
        return bool(record[key])
    ok = (probe or _inductor_vec_isa_ok)()
    write_record(path, {**record, key: ok})
    return ok


def _inductor_vec_isa_ok() -> bool:
    """Inductor's check of every vector ISA the CPU's flags name (x86 Linux only; elsewhere: not trusted)."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        from torch._inductor import cpu_vec_isa

        present = set(cpu_vec_isa.x86_isa_checker())
        named = [isa for isa in cpu_vec_isa.supported_vec_isa_list if all(f in present for f in str(isa).split())]
        return bool(named) and len(cpu_vec_isa.valid_vec_isa_list()) == len(named)  # valid = built and loaded
    except Exception:  # torch's internals moved: keep Inductor's own check in every run
        return False


def compile_available(device: torch.device) -> bool:
    """Inductor can run here: CUDA, or a CPU with a C++ compiler (whether dynamo supports this Python is
    asked only before compiling: importing it takes seconds)."""
    if device.type not in ("cpu", "cuda"):
        return False
    return device.type == "cuda" or shutil.which(os.environ.get("CXX", "g++")) is not None


def compile_key(task: str, model: nn.Module, batch: dict[str, Any], amp: str, device: torch.device) -> str:
    """What a compiled graph depends on: torch, the CPU kind, the model's structure and the batch's shapes."""
    parts = {
        "torch": torch.__version__,
        "cpu": torch.backends.cpu.get_cpu_capability(),
        "device": device.type,
        "task": task,
        "model": type(model).__name__,
        "params": [(n, list(p.shape), str(p.dtype), p.requires_grad) for n, p in model.named_parameters()],
        "batch": {k: [list(v.shape), str(v.dtype)] for k, v in sorted(batch.items()) if torch.is_tensor(v)},
        "amp": amp,
        "version": KEY_VERSION,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def batch_shapes(batch: dict[str, Any]) -> str:
    """The shapes of a batch's tensors, as one comparable string."""
    return json.dumps({k: list(v.shape) for k, v in sorted(batch.items()) if torch.is_tensor(v)})


class AutoCompile:
    """Which model the training step calls: the eager one, or ``torch.compile`` of it.

    'on' compiles from the first step, 'off' never. 'auto' (single process only; under torchrun it stays
    eager, since switching a DDP-wrapped model mid-run is unsafe) decides with this rule:

        compile  iff  remaining_steps * eager_step_s * (1 - 1 / speedup)  >  compile_s

    * ``eager_step_s``: the median of steps 2..``PROBE`` of this run, trained eagerly (step 1 pays warm-up),
      or, for a model/shape key compiled before on this machine, the value recorded then.
    * ``remaining_steps``: what the step budget leaves, or what the time budget leaves at ``eager_step_s``.
    * ``speedup``: measured on the last run of this key (eager step / compiled step), else ``SPEEDUP``
      (the maintainers measured 1.35x for nanoGPT's 4-layer 128-dim GPT, batch 12x64, on an AVX-512 host,
      2026-11-22; taken lower to err towards eager).
      A key whose speed-up is not measured yet compiles only when the run's remaining eager time is at least
      ``RISK`` times ``compile_s``, so a compile that gains nothing costs at most a tenth of the run.
      A key that measured no gain is never compiled again by 'auto', and the run that measured it goes back
      to the eager model for its remaining steps (the zoo's small models often run *slower* compiled on a
      CPU: the ledger of the 2026-12-04 quiet challenge run holds 6 keys of 7 with no gain).
    * Batches whose shapes change between the probe's steps (text padded to each batch's longest sequence)
      stay eager without compiling: Dynamo then builds a dynamic-shape graph, and on a CPU every such task of
      the zoo measured *slower* compiled than eager (docs/speed.md, "A warm compile that costs little").
    * ``compile_s``: for a key compiled before (Inductor's cache is warm), its last warm compile time, else
      ``WARM_S``; for a new key the median first-compile time measured on this machine, else ``COLD_S``
      (10-40 s were seen here for the zoo's models).

    Each compile's measured time and speed-up are written to a small ledger in :func:`cache_dir`;
    deleting that directory clears both the graphs and the ledger.
    """

    PROBE = 5
    SPEEDUP = 1.25
    RISK = 10  # an unmeasured key compiles only if its compile costs at most a tenth of the run's time left
    WARM_S = 5.0
    COLD_S = 40.0
    MEASURE = 5  # compiled steps timed to measure the speed-up

    def __init__(
        self,
        setting: str | bool,
        model: nn.Module,
        task: str,
        amp: str,
        device: torch.device,
        world: int = 1,
        on_phase: Callable[[str | None], None] | None = None,
        ledger_dir: Path | None = None,
    ) -> None:
        self.setting = parse_compile(setting)
        self.model, self.task, self.amp, self.device = model, task, amp, device
        if self.setting == "auto" and (world > 1 or not compile_available(device)):
            self.setting = "off"
        self.on_phase = on_phase or (lambda text: None)
        self.ledger_dir = ledger_dir
        self.compiled: nn.Module | None = None
        self.decided = self.setting != "auto"
        self.key: str | None = None
        self.eager_times: list[float] = []
        self.shapes: set[str] = set()  # the batch shapes the probe's steps saw
        self.compiled_times: list[float] = []
        self.compiling = False
        self.compiled_steps = 0  # steps this run trained with the compiled model (metrics.json's compiled_steps)
        self.reason = {"on": "compile=on", "off": "compile=off"}.get(self.setting, "")
        if self.setting == "on":
            self._compile()

    # the ledger: {key: {"eager_step_s", "compiled_step_s", "cold_s", "warm_s"}}
    def _ledger_path(self) -> Path:
        if self.ledger_dir is None:
            self.ledger_dir = cache_dir()
        return self.ledger_dir / LEDGER

    def _ledger(self) -> dict[str, dict[str, float]]:
        return read_record(self._ledger_path())

    def _record(self, **values: float) -> None:
        if self.key is None:
            return
        ledger = self._ledger()
        ledger[self.key] = {**ledger.get(self.key, {}), **{k: round(v, 6) for k, v in values.items()}}
        write_record(self._ledger_path(), ledger)

    def _compile(self) -> None:
        cache = enable_compile_cache()
        if self.device.type == "cpu":
            cpu_compile_settings(cache)
        self.compiled = cast(nn.Module, torch.compile(self.model))  # compile keeps the Module API

    @staticmethod
    def compiled_before(entry: dict[str, float] | None) -> bool:
        """Whether the ledger saw this key compiled (so Inductor's cache should be warm)."""
        return entry is not None and ("cold_s" in entry or "warm_s" in entry)

    def cold_estimate(self) -> float:
        """A first compile's expected seconds: the median of those measured on this machine, else ``COLD_S``."""
        cold = [e["cold_s"] for e in self._ledger().values() if isinstance(e, dict) and "cold_s" in e]
        return statistics.median(cold) if cold else self.COLD_S

    def worth_it(self, remaining_steps: float, eager_step_s: float, entry: dict[str, float] | None) -> bool:
        """The rule of the class docstring."""
        entry = entry or {}
        measured = entry.get("eager_step_s") and entry.get("compiled_step_s")
        speedup = entry["eager_step_s"] / entry["compiled_step_s"] if measured else self.SPEEDUP
        compile_s = entry.get("warm_s", self.WARM_S) if self.compiled_before(entry) else self.cold_estimate()
        if not measured and remaining_steps * eager_step_s < self.RISK * compile_s:
            return False  # an unmeasured gain may be none: risk at most 1/RISK of the run on finding out
        return remaining_steps * eager_step_s * (1 - 1 / speedup) > compile_s

    def model_for(self, batch: dict[str, Any], step: int, max_steps: int, max_time: float, elapsed: float) -> nn.Module:
        """The model to call for this step (its ``batch``, 0-based ``step`` of ``max_steps``, budget seconds)."""
        if self.key is None:
            self.key = compile_key(self.task, self.model, batch, self.amp, self.device)
        if not self.decided:
            self.shapes.add(batch_shapes(batch))
            entry = self._ledger().get(self.key)
            eager_s = None
            if entry and entry.get("eager_step_s"):
                eager_s = entry["eager_step_s"]
            elif len(self.shapes) > 1:
                self.decided = True
                self.reason = "compile=auto: batch shapes change from step to step (a dynamic-shape graph loses)"
            elif len(self.eager_times) >= self.PROBE:
                eager_s = statistics.median(self.eager_times[1:])
            if eager_s is not None:
                remaining: float = max_steps - step
                if max_time > 0:
                    remaining = min(remaining, max(0.0, max_time - elapsed) / eager_s)
                self.decided = True
                if self.worth_it(remaining, eager_s, entry) and torch._dynamo.is_dynamo_supported():
                    self.reason = f"compile=auto: ~{remaining:.0f} steps left repay the compile"
                    self._compile()
                else:
                    self.reason = "compile=auto: too few steps left to repay a compile"
        if self.compiled is None:
            return self.model
        if not self.compiled_times:  # this step compiles: say so in the progress bar
            entry = self._ledger().get(self.key) or {}
            if self.compiled_before(entry):
                self.on_phase(f"compiling (cached: ~{entry.get('warm_s', self.WARM_S):.0f} s)")
            else:
                self.on_phase(f"compiling (first run: ~{self.cold_estimate():.0f} s)")
            self.compiling = True
        return self.compiled

    def observe(self, seconds: float) -> None:
        """The duration of the step just done (forward, backward and optimizer step)."""
        self.compiled_steps += self.compiled is not None  # once a step, however many micro-batches it had
        if self.compiled is None:
            if not self.decided:  # the probe; an eager run keeps no history
                self.eager_times.append(seconds)
            return
        if len(self.compiled_times) > self.MEASURE:
            return  # compile time and speed-up are measured
        self.compiled_times.append(seconds)
        eager = statistics.median(self.eager_times[1:]) if len(self.eager_times) > 1 else None
        if self.compiling:
            self.compiling = False
            self.on_phase(None)
            kind = "warm_s" if self.compiled_before(self._ledger().get(self.key or "")) else "cold_s"
            self._record(**{kind: max(0.0, seconds - (eager or 0.0))})
        elif len(self.compiled_times) == 1 + self.MEASURE:
            measured = {"compiled_step_s": statistics.median(self.compiled_times[1:])}
            if eager is not None:  # compile=on measures no eager step: keep an earlier run's
                measured["eager_step_s"] = eager
            self._record(**measured)
            if self.setting == "auto" and eager is not None and measured["compiled_step_s"] >= eager:
                self.compiled = None  # no faster compiled: eager for the rest of the run
                self.reason = "compile=auto: compiled steps measured no faster; back to eager"
