"""The exponential moving average of the weights (``--set ema=D``): the update against torch's own EMA, the warm-up,
what is averaged, the swap for evaluation, the checkpoint round trip and the trainer's use of it."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from test_training import TINY
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from tinyformers.core.lora import LoRAConfig, apply_lora
from tinyformers.engine import rundir as runs
from tinyformers.engine.averaging import WeightEMA, averaged_tensors
from tinyformers.engine.task import TrainConfig, apply_overrides
from tinyformers.engine.trainer import train
from tinyformers.errors import UserError
from tinyformers.tasks import get_task


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def _sgd_steps(model: nn.Module, n: int, after_step) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(1)
    for i in range(n):
        x = torch.randn(16, 4, generator=gen)
        model(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
        after_step(i + 1)


def test_update_equals_torchs_ema_once_past_the_warm_up():
    # decay 0.1 < (1 + t) / (10 + t) for every t: the warm-up never binds, so each update is torch's EMA
    model = _net()
    ours = WeightEMA(model, 0.1)
    ref = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.1), use_buffers=True)

    def both(t: int) -> None:
        ours.update(model, t)
        ref.update_parameters(model)

    _sgd_steps(model, 6, both)
    expected = dict(ref.module.state_dict())
    for name, value in ours.state().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-7)


def test_warm_up_starts_at_the_first_steps_weights_and_grows_the_horizon():
    ema = WeightEMA(nn.Linear(2, 2), 0.999)
    assert ema.decay_at(1) == 0.0  # the first update copies the live weights
    assert ema.decay_at(2) == pytest.approx(3 / 12)
    assert ema.decay_at(90) == pytest.approx(91 / 100)
    assert ema.decay_at(100_000) == 0.999
    with pytest.raises(ValueError, match="decay"):
        WeightEMA(nn.Linear(2, 2), 1.0)


def test_first_update_copies_and_later_ones_lag_behind():
    model = _net()
    ema = WeightEMA(model, 0.9)
    seen: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []

    def record(t: int) -> None:
        ema.update(model, t)
        average = {k: v.clone() for k, v in ema.state().items()}
        seen.append((average, {k: v.detach().clone() for k, v in averaged_tensors(model).items()}))

    _sgd_steps(model, 30, record)
    (first_avg, first_live), (last_avg, last_live) = seen[0], seen[-1]
    assert all(torch.equal(first_avg[k], first_live[k]) for k in first_live)  # the average starts at step 1's weights
    assert any(not torch.equal(last_avg[k], last_live[k]) for k in last_live)  # and then trails the live weights


def test_averages_trainable_weights_and_float_buffers_only():
    model = _net()
    names = set(averaged_tensors(model))
    assert "1.running_mean" in names and "1.running_var" in names  # BatchNorm statistics, as timm averages them
    assert "1.num_batches_tracked" not in names  # an integer counter is not averaged
    base = get_task("copy")
    cfg = apply_overrides(base.Config(), ["d_model=16", "n_heads=2", "n_layers=1", "d_ff=32"])
    m = base.model(cfg, base.data(cfg).meta)
    apply_lora(m, LoRAConfig(r=2, targets=("q", "v")))
    averaged = set(averaged_tensors(m))
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable and averaged >= trainable
    assert not any(n in averaged for n, p in m.named_parameters() if not p.requires_grad)  # the frozen base


def test_applied_swaps_in_the_average_and_restores_the_live_weights_exactly():
    model = _net()
    ema = WeightEMA(model, 0.5)
    _sgd_steps(model, 5, lambda t: ema.update(model, t))
    live = {k: v.detach().clone() for k, v in averaged_tensors(model).items()}
    with ema.applied(model):
        inside = {k: v.detach().clone() for k, v in averaged_tensors(model).items()}
    after = {k: v.detach() for k, v in averaged_tensors(model).items()}
    assert all(torch.equal(inside[k], ema.state()[k]) for k in inside)
    assert any(not torch.equal(inside[k], live[k]) for k in live)
    assert all(torch.equal(after[k], live[k]) for k in live)


def test_applied_restores_the_live_weights_when_the_block_raises():
    model = _net()
    ema = WeightEMA(model, 0.5)
    _sgd_steps(model, 3, lambda t: ema.update(model, t))
    live = {k: v.detach().clone() for k, v in averaged_tensors(model).items()}
    with pytest.raises(RuntimeError), ema.applied(model):
        raise RuntimeError("evaluation failed")
    assert all(torch.equal(averaged_tensors(model)[k].detach(), live[k]) for k in live)


def test_checkpoint_round_trip_and_a_checkpoint_without_the_average(tmp_path):
    model = _net()
    ema = WeightEMA(model, 0.5)
    opt = torch.optim.AdamW(model.parameters())
    _sgd_steps(model, 4, lambda t: ema.update(model, t))
    runs.save_checkpoint(tmp_path / "with.safetensors", model, opt, {"step": 4}, ema)
    fresh = WeightEMA(model, 0.5)
    assert runs.load_checkpoint(tmp_path / "with.safetensors", model, opt, fresh) == {"step": 4}
    assert all(torch.equal(fresh.state()[k], v) for k, v in ema.state().items())
    runs.save_checkpoint(tmp_path / "without.safetensors", model, opt, {"step": 4})
    with pytest.raises(UserError, match="without ema"):
        runs.load_checkpoint(tmp_path / "without.safetensors", model, opt, WeightEMA(model, 0.5))


def test_ema_setting_is_validated():
    with pytest.raises(ValueError, match="ema"):
        TrainConfig(ema=1.0)
    with pytest.raises(ValueError, match="ema"):
        TrainConfig(ema=-0.1)


def test_training_keeps_and_evaluates_the_average(tmp_path):
    task = get_task("copy")
    cfg = apply_overrides(
        task.Config(),
        [*TINY, "max_steps=40", "eval_every=40", "ema=0.9", "compile=off"],
    )
    train(task, cfg, tmp_path / "run", progress=False)
    ckpt = load_file(tmp_path / "run" / "checkpoint.safetensors")
    best = load_file(tmp_path / "run" / "model.safetensors")  # one evaluation, at the end: the best is the average
    averaged = {k[4:]: v for k, v in ckpt.items() if k.startswith("ema.")}
    assert averaged and all(torch.equal(best[k], v) for k, v in averaged.items())
    assert any(not torch.equal(ckpt[f"model.{k}"], v) for k, v in averaged.items())  # the live weights differ
