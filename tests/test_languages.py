"""The languages task: the generative rules (same step frequencies for ``up`` and ``sticky``), the exact Bayes
likelihoods (symbols and the HMM forward pass agree when the noise vanishes), learning on a tiny problem, and
predict through the CLI with its one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tinyformers.apps.cli import main
from tinyformers.data.walks import (
    expected_accuracy,
    float_log_likelihoods,
    increment_counts,
    sample_steps,
    step_laws,
    steps_from_symbols,
    symbol_log_likelihoods,
)
from tinyformers.engine.task import apply_overrides
from tinyformers.engine.trainer import train
from tinyformers.tasks import get_task
from tinyformers.tasks.languages import LanguagesConfig, make_split

TINY = list(get_task("languages").scorecard.quick)  # the challenge's --quick settings, tested here


def test_up_and_sticky_share_step_frequencies_but_not_order():
    rng = np.random.default_rng(0)
    labels = np.repeat([1, 2], 4000)
    steps = sample_steps(labels, 50, p=0.5, stick=0.5, rng=rng)
    up, sticky = steps[labels == 1], steps[labels == 2]
    freq = [np.bincount(s.ravel(), minlength=3) / s.size for s in (up, sticky)]
    assert np.allclose(freq[0], [0.1, 0.5, 0.4], atol=0.01) and np.allclose(freq[1], freq[0], atol=0.015)
    repeats = [(s[:, 1:] == s[:, :-1]).mean() for s in (up, sticky)]
    assert repeats[1] > repeats[0] + 0.15  # 0.42 i.i.d. vs 0.71 sticky


def test_splits_are_fixed_and_symbols_encode_the_steps():
    cfg = LanguagesConfig(length=20, n_train=30, n_val=30, n_test=30)
    a, b = make_split(cfg, "test"), make_split(cfg, "test")
    assert np.array_equal(a["x"], b["x"]) and not np.array_equal(a["x"], make_split(cfg, "val")["x"])
    assert np.array_equal(steps_from_symbols(a["x"]), a["steps"])
    assert list(np.bincount(a["labels"])) == [10, 10, 10]


def test_hmm_forward_pass_matches_the_exact_symbol_likelihood_when_noise_vanishes():
    cfg = LanguagesConfig(variant="floats", noise=0.05, length=15, n_test=30, p=0.5)
    part = make_split(cfg, "test")
    diff = float_log_likelihoods(part["x"], cfg.p, cfg.stick, cfg.noise) - symbol_log_likelihoods(
        part["steps"], cfg.p, cfg.stick
    )
    assert np.allclose(diff - diff[:, :1], 0, atol=1e-9)  # equal up to the emission term, the same for all three


def test_hmm_forward_pass_matches_brute_force_enumeration():
    """With 3 steps there are 27 paths: sum their probability x Gaussian density directly."""
    y = np.array([[0.2, 0.7, 1.4, 0.9]])
    p, stick, noise = 0.6, 0.4, 0.7
    first, trans = step_laws(p, stick)
    brute = np.zeros(3)
    for c in range(3):
        for path in np.ndindex(3, 3, 3):
            prob = first[c][path[0]] * trans[c][path[0], path[1]] * trans[c][path[1], path[2]]
            w = np.concatenate([[0], np.cumsum(np.array(path) - 1)])
            dens = np.prod(np.exp(-0.5 * ((y[0] - w) / noise) ** 2) / (noise * np.sqrt(2 * np.pi)))
            brute[c] += prob * dens
    assert np.allclose(float_log_likelihoods(y, p, stick, noise)[0], np.log(brute))


def test_ties_count_as_a_coin_flip_and_the_baseline_cannot_see_order():
    assert expected_accuracy(np.array([[0.0, 0.0, -1.0], [0.0, -1.0, -2.0]]), np.array([1, 0])) == 0.75
    x = np.array([[0, 1, 2, 2, 2], [0, 1, 1, 2, 2]])  # same steps, different order
    assert np.array_equal(increment_counts(x, "symbols")[0], increment_counts(x, "symbols")[1])


def test_difference_inputs_ignore_the_offset_and_values_do_not():
    """inputs=differences sees the steps only, so shifting every symbol by the same offset changes nothing."""
    task = get_task("languages")
    x = torch.as_tensor(make_split(LanguagesConfig(length=12, n_test=6), "test")["x"])
    torch.manual_seed(0)
    for inputs, same in [("differences", True), ("values", False)]:
        model = task.model(apply_overrides(task.Config(), [*TINY, f"inputs={inputs}"]), {}).eval()
        with torch.no_grad():
            shifted = model(x=(x + 3) % 10).logits
            assert torch.allclose(model(x=x).logits, shifted, atol=1e-5) == same, inputs


def test_float_front_end_sees_the_size_of_a_step():
    """LayerNorm divides by the scale of its input: after a linear front end, a ramp and the same ramp x10 would
    look alike to the first block (max difference 0.07, LayerNorm's epsilon); the MLP front end keeps them apart."""
    task = get_task("languages")
    torch.manual_seed(0)
    model = task.model(apply_overrides(task.Config(), [*TINY, "variant=floats"]), {})
    ramp = torch.linspace(0, 6, 12)[None]
    with torch.no_grad():
        low, high = (model.stack.layers[0].norm_attn(model.front(k * ramp)) for k in (1.0, 10.0))
    assert (low - high).abs().max() > 0.5


@pytest.mark.parametrize("variant", ["symbols", "floats"])
def test_learns_up_from_down(variant, tmp_path):
    """p = 1: up and down are easy to tell apart; the metrics carry the Bayes ceiling and the baseline."""
    task = get_task("languages")
    cfg = apply_overrides(
        task.Config(), [*TINY, f"variant={variant}", "p=1.0", "max_steps=120", "eval_every=120", "warmup_steps=10"]
    )
    m = train(task, cfg, tmp_path / variant, progress=False)
    assert m["test_accuracy"] >= 0.6, m  # chance is 1/3; up vs down alone is 2/3 of the examples
    assert m["test_accuracy"] <= m["bayes_accuracy"] + 0.1
    assert m["baseline_accuracy"] <= 0.9 and m["bayes_accuracy"] > m["baseline_accuracy"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("languages") / "run"
    argv = ["train", "languages", "--out", str(out), "--max-steps", "5", "--no-progress", "--set", *TINY]
    assert main([*argv, "eval_every=5"]) == 0
    return out


def test_train_eval_predict_through_the_cli(run_dir, capsys):
    capsys.readouterr()
    assert main(["eval", str(run_dir)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    card = get_task("languages").scorecard
    assert {card.metric, *card.baselines, card.limit} <= set(metrics)
    assert main(["predict", str(run_dir), "3 4 5 4 4 5", "0,9,8,8", "3 4"]) == 0  # the last: shorter than the window
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    model_part, bayes_part = lines[0].split("(")[1].rstrip(")").split("; Bayes: ")
    for part in (model_part, bayes_part):
        assert abs(sum(float(item.split()[-1]) for item in part.split(",")) - 1) < 0.01, lines[0]
    assert lines[0].split("\t")[1].split()[0] in ("down", "up", "sticky")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("3 4 x", "value 3 ('x') is not a symbol 0-9"),
        ("3 7 8", "values 1 and 2 (3 -> 7) are not one step apart"),
        ("3", "give 2 to 12 values"),
        (" ".join(["1"] * 13), "give 2 to 12 values"),
        ("0.5 1.5", "value 1 ('0.5') is not a symbol 0-9"),
    ],
)
def test_predict_bad_symbols_are_one_line_errors(run_dir, text, match, capsys):
    assert main(["predict", str(run_dir), text]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:") and match in err, err


def test_predict_bad_floats_are_one_line_errors(tmp_path, capsys):
    out = tmp_path / "floats"
    argv = ["train", "languages", "--out", str(out), "--max-steps", "2", "--no-progress", "--set", *TINY]
    assert main([*argv, "variant=floats", "eval_every=2"]) == 0
    capsys.readouterr()
    assert main(["predict", str(out), "0.1 -0.4 0.8 1.2"]) == 0
    for text, match in [("0.1 abc", "value 2 ('abc') is not a number"), ("0 nan", "not a finite number")]:
        assert main(["predict", str(out), text]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, err


def test_bad_settings_are_one_line_errors(tmp_path, capsys):
    for setting, match in [("variant=words", "variant='words'"), ("p=0", "p=0.0 is out of range")]:
        assert main(["train", "languages", "--out", str(tmp_path / "x"), "--set", setting]) == 2
        assert match in capsys.readouterr().err
