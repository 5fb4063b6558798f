"""Run-time speed settings (engine/accel.py): bf16 only on CPUs that have it, compile settings, the on-disk
compile cache, the compile=auto rule, and a trainer step that equals a plain PyTorch loop."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from tinyformers.core.attention import fast_attention, merge_masks, scaled_dot_product_attention
from tinyformers.engine import accel
from tinyformers.engine import rundir as runs
from tinyformers.engine.task import TrainConfig, apply_overrides, build_model
from tinyformers.engine.trainer import learning_rate, optimizer_for, step_seed, train
from tinyformers.errors import UserError
from tinyformers.tasks import get_task, read_run_config

AVX2_FLAGS = "processor\t: 0\nflags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma f16c\n"
AVX512_BF16_FLAGS = "processor\t: 0\nflags\t\t: fpu avx avx2 avx512f avx512bw avx512vl avx512_bf16\n"
TINY = ["d_model=16", "n_heads=2", "n_layers=1", "d_ff=32", "max_digits=4", "n_val=16", "n_test=16", "batch_size=8"]


def test_native_bf16_needs_the_flag_and_an_avx512_torch():
    assert not accel.native_bf16(accel.cpu_flags(AVX2_FLAGS), "AVX2")
    assert not accel.native_bf16(accel.cpu_flags(AVX2_FLAGS), "AVX512")  # AVX-512 without bf16
    assert not accel.native_bf16(accel.cpu_flags(AVX512_BF16_FLAGS), "AVX2")  # a torch build without AVX-512
    assert accel.native_bf16(accel.cpu_flags(AVX512_BF16_FLAGS), "AVX512")
    assert accel.native_bf16({"amx_bf16"}, "AVX512")
    assert accel.cpu_flags("no flags line here") == set()


def test_physical_cores_counts_hyperthreads_once(monkeypatch):
    info = "".join(f"processor\t: {i}\nphysical id\t: 0\ncore id\t\t: {i % 2}\n\n" for i in range(4))
    monkeypatch.setattr(accel.os, "sched_getaffinity", lambda pid: set(range(4)), raising=False)
    assert accel.physical_cores(info) == 2  # 2 cores x 2 hyper-threads
    monkeypatch.setattr(accel.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert accel.physical_cores(info) == 1  # this process may use one CPU only


def test_set_threads_respects_omp_and_torchrun(monkeypatch):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert accel.set_threads({"OMP_NUM_THREADS": "1"}) == 1
        assert accel.set_threads({"WORLD_SIZE": "2"}) == 1 and torch.get_num_threads() == 1
        monkeypatch.setattr(accel, "physical_cores", lambda: 2)
        assert accel.set_threads({}) == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


class FakeLibc:
    def __init__(self, ok: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.ok = ok

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.ok


def test_keep_freed_memory_sets_both_glibc_thresholds_unless_told_not_to():
    libc = FakeLibc()
    assert accel.keep_freed_memory({}, libc) is True
    assert libc.calls == [(-3, 32 << 20), (-1, 1 << 30)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    assert accel.keep_freed_memory({}, FakeLibc(ok=0)) is False  # glibc refused a value: say so
    for value in ("default", "off", "0"):
        libc = FakeLibc()
        assert accel.keep_freed_memory({"TINYFORMERS_MALLOC": value}, libc) is False and not libc.calls


STEPS_FAULTS = """
import resource, torch
from tinyformers.core.models import DecoderConfig, DecoderLM
from tinyformers.engine.accel import keep_freed_memory
assert keep_freed_memory({})
torch.manual_seed(0)
model = DecoderLM(DecoderConfig(vocab_size=65, max_len=64, d_model=128, n_heads=4, n_layers=2, d_ff=512,
                                positions="rotary", activation="gelu"))
opt = torch.optim.AdamW(model.parameters(), fused=True)
x = torch.randint(0, 65, (12, 64))
for i in range(25):
    if i == 15:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    model(x, labels=x).loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION"), reason="glibc only")
def test_a_step_faults_no_memory_in_once_freed_memory_is_kept():
    """The point of keep_freed_memory: after the first steps, a step reuses what the last one freed (the
    nanoGPT-sized rotary model took ~1,800 page faults a step on the AVX2 host without it)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("TINYFORMERS_MALLOC", None)
    run = [sys.executable, "-c", STEPS_FAULTS]
    faults = float(subprocess.run(run, capture_output=True, text=True, check=True, env=env).stdout)
    assert faults < 50, faults


@pytest.mark.parametrize("amp", ["auto", "bf16", "off"])
def test_autocast_is_never_chosen_without_native_bf16_unless_asked(monkeypatch, amp):
    monkeypatch.setattr(accel, "native_bf16", lambda *a, **k: False)
    cfg = TrainConfig(amp=amp, cpu_bf16=True)
    ctx, scaler = accel.autocast_for(cfg, torch.device("cpu"))
    assert not scaler
    if amp == "bf16":  # the user's explicit choice
        assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16
    else:
        assert isinstance(ctx, contextlib.nullcontext)


def test_autocast_auto_on_native_bf16_only_where_the_recipe_opts_in():
    cpu = torch.device("cpu")
    ctx, _ = accel.autocast_for(TrainConfig(amp="auto", cpu_bf16=True), cpu, bf16_native=True)
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16
    ctx, _ = accel.autocast_for(TrainConfig(amp="auto"), cpu, bf16_native=True)  # cpu_bf16 defaults to False
    assert isinstance(ctx, contextlib.nullcontext)


def test_bf16_autocast_keeps_the_loss_in_fp32():
    logits = torch.randn(4, 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = torch.nn.Linear(7, 7)(logits)
        loss = F.cross_entropy(h, torch.tensor([0, 1, 2, 3]))
    assert h.dtype == torch.bfloat16 and loss.dtype == torch.float32


@pytest.mark.parametrize(
    ("text", "want"), [("auto", "auto"), ("on", "on"), ("off", "off"), ("true", "on"), ("false", "off")]
)
def test_compile_setting_parses(text, want):
    assert apply_overrides(TrainConfig(), [f"compile={text}"]).compile == want
    assert accel.parse_compile(text) == want


def test_compile_setting_rejects_other_values_and_maps_bools():
    with pytest.raises(UserError, match="compile"):
        apply_overrides(TrainConfig(), ["compile=fast"])
    assert TrainConfig(compile=True).compile == "on" and TrainConfig(compile=False).compile == "off"
    assert TrainConfig().compile == "auto"


def test_cache_dir_is_honoured(tmp_path):
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    assert accel.cache_dir({"TINYFORMERS_CACHE_DIR": str(tmp_path)}) == tmp_path / "inductor"
    assert accel.cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "tinyformers" / "inductor"
    assert accel.cache_dir({"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "mine")}) == tmp_path / "mine"
    inductor_default = {"TORCHINDUCTOR_CACHE_DIR": default_cache_dir(), "XDG_CACHE_HOME": str(tmp_path)}
    assert accel.cache_dir(inductor_default) == tmp_path / "tinyformers" / "inductor"  # not a user's choice
    env = {"TINYFORMERS_CACHE_DIR": str(tmp_path)}
    path = accel.enable_compile_cache(env)
    assert path.is_dir() and env["TORCHINDUCTOR_CACHE_DIR"] == str(path)
    assert torch._inductor.config.fx_graph_cache and torch._functorch.config.enable_autograd_cache


def test_the_vector_isa_check_is_asked_once_per_cache(tmp_path):
    calls: list[int] = []

    def passes() -> bool:
        calls.append(1)
        return True

    assert accel.vec_isa_probe(tmp_path, passes) and accel.vec_isa_probe(tmp_path, passes)
    assert len(calls) == 1  # the second run reads the record
    other = tmp_path / "other"
    assert not accel.vec_isa_probe(other, lambda: False)
    assert not accel.vec_isa_probe(other, passes) and len(calls) == 1  # a failure is kept: Inductor checks each run
    (tmp_path / accel.VEC_ISA_RECORD).write_text("not json")
    assert accel.vec_isa_probe(tmp_path, passes) and len(calls) == 2  # an unreadable record is asked again


def test_cpu_compile_settings_leave_the_users_choice_alone(tmp_path):
    import torch._inductor.config as inductor_config

    accel.vec_isa_probe(tmp_path, lambda: True)  # this cache's record: every ISA passed
    with inductor_config.patch({"cpp_wrapper": False, "cpp.vec_isa_ok": None}):  # restored afterwards
        accel.cpu_compile_settings(tmp_path, {"TORCHINDUCTOR_CPP_WRAPPER": "0", "TORCHINDUCTOR_VEC_ISA_OK": "0"})
        assert inductor_config.cpp_wrapper is False and inductor_config.cpp.vec_isa_ok is None
        accel.cpu_compile_settings(tmp_path, {})
        assert inductor_config.cpp_wrapper is True and inductor_config.cpp.vec_isa_ok is True


@pytest.mark.skipif(
    not accel.compile_available(torch.device("cpu")) or not torch._dynamo.is_dynamo_supported(),
    reason="Inductor needs a C++ compiler and a Python that Dynamo supports",
)
def test_a_compiled_bf16_attention_step_is_cached_whole_and_equals_eager(tmp_path, monkeypatch):
    """Under bf16 autocast the attention leaves autocast (``fused_sdpa``). AOT autograd's cache refused graphs
    with that region, so every warm start re-traced the joint graph; and the CPU settings (C++ wrapper) must not
    change what the compiled step computes."""
    import torch._inductor.config as inductor_config
    from torch._dynamo.utils import counters

    from tinyformers.core.attention import fused_sdpa

    monkeypatch.setenv("TINYFORMERS_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    torch.manual_seed(0)
    proj = torch.nn.Linear(8, 24)
    x = torch.randn(2, 5, 8)

    def loss_and_grad(fn) -> tuple[torch.Tensor, torch.Tensor]:
        proj.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = fn(x)
        loss.backward()
        return loss.detach().float(), proj.weight.grad.clone()

    def attend(x: torch.Tensor) -> torch.Tensor:
        q, k, v = proj(x).view(2, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)
        return fused_sdpa(q, k, v, is_causal=True).square().mean()

    with inductor_config.patch({"cpp_wrapper": False, "cpp.vec_isa_ok": None}):  # restored afterwards
        accel.cpu_compile_settings(accel.enable_compile_cache())
        torch._dynamo.reset()
        counters.clear()
        compiled = loss_and_grad(torch.compile(attend))
    assert counters["aot_autograd"]["autograd_cache_bypass"] == 0
    assert counters["aot_autograd"]["autograd_cache_saved"] + counters["aot_autograd"]["autograd_cache_hit"] == 1
    eager = loss_and_grad(attend)
    for got, want in zip(compiled, eager, strict=True):
        torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-3)


def _auto(tmp_path: Path, phases: list, setting: str = "auto", world: int = 1) -> accel.AutoCompile:
    model = torch.nn.Linear(4, 4)
    return accel.AutoCompile(setting, model, "t", "off", torch.device("cpu"), world, phases.append, tmp_path)


def test_auto_compile_stays_eager_for_a_short_run(tmp_path):
    phases: list = []
    auto = _auto(tmp_path, phases)
    batch = {"x": torch.zeros(2, 4)}
    for step in range(10):
        assert auto.model_for(batch, step, 10, 0.0, 0.0) is auto.model
        auto.observe(0.01)
    assert auto.decided and auto.compiled is None and phases == [] and auto.compiled_steps == 0
    assert not (tmp_path / accel.LEDGER).exists()


def test_auto_compile_uses_a_warm_cache_when_the_budget_repays_it(tmp_path):
    phases: list = []
    auto = _auto(tmp_path, phases)
    batch = {"x": torch.zeros(2, 4)}
    key = accel.compile_key("t", auto.model, batch, "off", torch.device("cpu"))
    entry = {"eager_step_s": 0.02, "compiled_step_s": 0.01, "cold_s": 30.0, "warm_s": 2.0}
    (tmp_path / accel.LEDGER).write_text(json.dumps({key: entry}))
    model = auto.model_for(batch, 0, 1000, 0.0, 0.0)  # 1000 steps x 0.01 s saved > 2 s: compile at once
    assert model is auto.compiled and model is not auto.model
    assert phases == ["compiling (cached: ~2 s)"]
    auto.observe(3.0)  # the compiling step
    assert phases[-1] is None and json.loads((tmp_path / accel.LEDGER).read_text())[key]["warm_s"] > 2.0
    # a time budget caps the steps left: 20 s / 0.02 s = 1000 steps, but 1 s leaves 50 (0.5 s saved < 2 s)
    late = _auto(tmp_path, [])
    assert late.model_for(batch, 0, 10**6, 1.0, 0.0) is late.model


def test_auto_compile_goes_back_to_eager_when_compiled_steps_are_no_faster(tmp_path):
    """The probe's eager steps took 0.01 s; compiled ones measure 0.02 s: the run returns to the eager model and
    the ledger keeps the no-gain record, so the key is never compiled again."""
    auto = _auto(tmp_path, [])
    batch = {"x": torch.zeros(2, 4)}
    for step in range(auto.PROBE):
        assert auto.model_for(batch, step, 10**6, 0.0, 0.0) is auto.model
        auto.observe(0.01)
    first = auto.PROBE
    assert auto.model_for(batch, first, 10**6, 0.0, 0.0) is auto.compiled is not None  # 10^6 steps repay it
    auto.observe(5.0)  # the compiling step
    for step in range(first + 1, first + 1 + auto.MEASURE):
        assert auto.model_for(batch, step, 10**6, 0.0, 0.0) is auto.compiled
        auto.observe(0.02)
    assert auto.compiled is None and auto.model_for(batch, first + 9, 10**6, 0.0, 0.0) is auto.model
    assert "back to eager" in auto.reason
    assert auto.compiled_steps == 1 + auto.MEASURE  # the compiling step and the measured ones, not the eager after
    entry = json.loads((tmp_path / accel.LEDGER).read_text())[auto.key]
    assert entry["compiled_step_s"] == 0.02 and entry["eager_step_s"] == 0.01
    again = _auto(tmp_path, [])
    for step in range(3):
        assert again.model_for(batch, step, 10**6, 0.0, 0.0) is again.model
        again.observe(0.01)
    assert again.decided and again.compiled is None


def test_auto_compile_stays_eager_when_batch_shapes_change(tmp_path):
    """Padded text batches change shape: no compile (a dynamic-shape graph was slower than eager for every such
    task), decided as soon as a second shape shows, without waiting for the probe's timings."""
    auto = _auto(tmp_path, [])
    for step, width in enumerate([7, 7, 9]):
        assert auto.model_for({"x": torch.zeros(2, width)}, step, 10**6, 0.0, 0.0) is auto.model
        auto.observe(0.01)
    assert auto.decided and auto.compiled is None and "shapes change" in auto.reason
    steady = _auto(tmp_path / "steady", [])
    for step in range(steady.PROBE + 1):  # the same shape every step, a long run: compiles after the probe
        model = steady.model_for({"x": torch.zeros(2, 7)}, step, 10**6, 0.0, 0.0)
        steady.observe(0.01)
    assert model is steady.compiled is not None


def test_auto_compile_rule(tmp_path):
    """An empty ledger (not this machine's): the cold compile estimate is COLD_S."""
    auto = accel.AutoCompile("off", torch.nn.Linear(2, 2), "t", "off", torch.device("cpu"), ledger_dir=tmp_path)
    cold = auto.COLD_S
    assert auto.worth_it(10 * cold / 0.01, 0.01, None)  # 10x the compile time in saving at 1.25x
    assert not auto.worth_it(cold / 0.01, 0.01, None)  # saves only a fifth of the compile time
    assert not auto.worth_it(8 * cold / 0.01, 0.01, None)  # would repay it (1.6x), but risks > 1/10 of the run
    no_gain = {"eager_step_s": 0.01, "compiled_step_s": 0.01, "warm_s": 1.0}
    assert not auto.worth_it(10**9, 0.01, no_gain)  # measured no speed-up: never again


def test_auto_compile_stays_eager_under_torchrun_and_on_compiles(tmp_path):
    assert _auto(tmp_path, [], world=2).setting == "off"
    assert _auto(tmp_path, [], setting="on").compiled is not None  # lazy: nothing compiles until called


def test_fast_attention_traces_as_one_graph():
    """No data-dependent branch: a compiled training step stays one graph, and nothing waits on the host."""
    q, k, v = (torch.randn(2, 2, 5, 4) for _ in range(3))
    kpm = torch.tensor([[False] * 5, [True] * 5])  # the second sequence is all padding: empty rows
    mask = merge_masks(5, 5, key_padding_mask=kpm, is_causal=True)
    traced = torch.compile(fast_attention, backend="eager", fullgraph=True)
    out = traced(q, k, v, mask)
    ref, _ = scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    assert out[1].abs().sum() == 0


def test_trainer_step_equals_a_plain_loop_with_compile_and_amp_off(tmp_path):
    """compile=off, amp=off: the trainer's weights after 3 steps are a plain PyTorch loop's, bit for bit."""
    task = get_task("copy")
    cfg = apply_overrides(
        task.Config(), [*TINY, "max_steps=3", "eval_every=3", "warmup_steps=2", "compile=off", "amp=off"]
    )
    metrics = train(task, cfg, tmp_path / "run", progress=False)
    trained = load_file(tmp_path / "run" / runs.WEIGHTS)
    assert metrics["compiled_steps"] == 0  # metrics.json says the run never used a compiled model

    torch.manual_seed(cfg.seed)
    data = task.data(cfg)
    model = build_model(task, cfg, data.meta)
    opt = optimizer_for(model, cfg)
    model.train()
    for step in range(cfg.max_steps):
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, step, 0.0)
        batch = task.batch(data, cfg, torch.Generator().manual_seed(step_seed(cfg.seed, step)))
        torch.manual_seed(step_seed(cfg.seed + 1, step))
        task.loss(model, batch, cfg).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    expected = runs.unique_tensors(model)
    assert set(trained) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(trained[name], tensor), name
    log = [json.loads(x) for x in (tmp_path / "run" / runs.LOG).read_text().splitlines()]
    assert [e["step"] for e in log] == [3] and log[0]["train_loss"] > 0


def test_old_runs_saved_compile_as_a_bool(tmp_path):
    task = get_task("copy")
    cfg = apply_overrides(task.Config(), [*TINY, "max_steps=1", "eval_every=1", "compile=off"])
    train(task, cfg, tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / runs.CONFIG).read_text())
    saved["config"]["compile"] = False
    (tmp_path / "run" / runs.CONFIG).write_text(json.dumps(saved))
    assert read_run_config(tmp_path / "run")[1].compile == "off"
