"""ModelSizes: the model's size, declared once for every task config and validated in one place, with the
same one-line messages as when core refused a size; ``--set`` and nanoGPT's aliases reach it."""

from __future__ import annotations

import dataclasses

import pytest

from tinyformers.core.models import DecoderConfig
from tinyformers.engine.task import ModelSizes, apply_overrides
from tinyformers.errors import UserError
from tinyformers.tasks import get_task


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["d_model=30", "n_heads=4"], "invalid model settings: d_model=30 must be divisible by n_heads=4"),
        (["n_heads=0"], "invalid model settings: n_heads=0 is out of range"),
        (
            ["d_model=0", "n_layers=-1"],
            "invalid model settings: d_model=0 is out of range, n_layers=-1 is out of range",
        ),
        (["d_ff=-4"], "invalid model settings: d_ff=-4 is out of range"),
        (["dropout=1"], "invalid model settings: dropout=1.0 is out of range"),
        (["lr=-1"], "invalid settings: lr=-1.0 is out of range"),  # the recipe's own checks still come first
    ],
)
def test_bad_sizes_are_one_line_user_errors(pairs, message):
    with pytest.raises(UserError) as e:
        apply_overrides(get_task("copy").Config(), pairs)
    assert str(e.value) == message


def test_the_same_size_error_as_core():
    """A task's check and core's check of d_model % n_heads read the same."""
    with pytest.raises(ValueError) as core:
        DecoderConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError) as sizes:
        ModelSizes(d_model=30, n_heads=4)
    assert str(core.value) == str(sizes.value)


@pytest.mark.parametrize("name", ["arithmetic", "chorales", "copy", "languages", "ner", "sentiment", "shakespeare"])
def test_task_configs_extend_model_sizes_and_nanogpt_aliases_reach_them(name):
    cfg = apply_overrides(get_task(name).Config(), ["n_embd=48", "n_head=3", "n_layer=1"])
    assert isinstance(cfg, ModelSizes)
    assert (cfg.d_model, cfg.n_heads, cfg.n_layers) == (48, 3, 1)
    assert cfg.sizes()["d_model"] == 48 and set(cfg.sizes()) == {"d_model", "n_heads", "n_layers", "d_ff", "dropout"}


def test_d_ff_zero_means_four_times_d_model():
    """shakespeare and chorales keep nanoGPT's fixed ratio by default; an explicit d_ff is used as given."""
    for name in ("shakespeare", "chorales"):
        cfg = get_task(name).Config()
        assert cfg.d_ff == 0 and cfg.sizes()["d_ff"] == 4 * cfg.d_model
        assert dataclasses.replace(cfg, d_ff=100).sizes()["d_ff"] == 100
    assert get_task("copy").Config().sizes()["d_ff"] == 256
