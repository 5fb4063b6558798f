"""The pixels task: quantisation, the independent-pixel baseline, learning a dependence that baseline cannot
see, and training, generation and bad inputs through the CLI on a tiny 7x7 model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from tinyformers.apps.cli import main
from tinyformers.data.images import dequantise, quantise
from tinyformers.engine.task import GeneratesFiles, TaskData
from tinyformers.errors import UserError
from tinyformers.tasks import load_run
from tinyformers.tasks.pixels import PixelsConfig, PixelsTask

TINY = [
    "size=7",
    "max_train=300",
    "d_model=32",
    "n_heads=2",
    "n_layers=1",
    "d_ff=64",
    "samples_per_class=2",
    "classifier_steps=20",
    "eval_every=20",
]


def test_quantise_pools_and_bins():
    x = np.zeros((2, 28, 28), dtype=np.uint8)
    x[0, :4, :4] = 255  # the first 4x4 block is white
    x[1] = 100
    t = quantise(x, 7, 4)
    assert t.shape == (2, 49) and t.dtype == torch.long
    assert t[0, 0] == 3 and t[0, 1:].eq(0).all()
    assert t[1].eq(1).all()  # 100 * 4 / 256 = 1.56 -> level 1
    assert dequantise(t, 7, 4).shape == (2, 1, 7, 7)


def test_independent_baseline_is_add_one_smoothed():
    train = (torch.zeros(8, 3, dtype=torch.long), torch.zeros(8, dtype=torch.long))  # class 0: all black
    test = (torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    bits = PixelsTask.independent_bits(train, test, levels=4, n=2)
    assert bits == pytest.approx(-math.log2((8 + 1) / (8 + 4)))
    white = (torch.full((2, 3), 3, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    assert PixelsTask.independent_bits(train, white, levels=4, n=2) == pytest.approx(-math.log2(1 / 12))


def test_learns_what_independent_pixels_cannot():
    """Each image is one random grey level everywhere: per pixel it is uniform (2 bits), given the first pixel
    it is certain. The LM must get far below the baseline."""
    g = torch.Generator().manual_seed(0)
    cfg = PixelsConfig(size=7, d_model=32, n_heads=2, n_layers=1, d_ff=64, dropout=0.0, batch_size=32)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randint(0, 4, (n, 1), generator=g).expand(n, 49).clone(), torch.randint(0, 2, (n,), generator=g)

    data = TaskData({"train": split(400), "test": split(100)}, {"classes": ["a", "b"]})
    task = PixelsTask()
    torch.manual_seed(0)
    model = task.model(cfg, data.meta)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = task.loss(model, task.batch(data, cfg, g), cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    bits = task.bits_per_token(model, *data.splits["test"], cfg)
    baseline = task.independent_bits(data.splits["train"], data.splits["test"], 4, 2)
    assert baseline > 1.8 and bits < 0.3
    samples = task.sample(model, cfg, [0, 1, 1], seed=0)
    assert samples.shape == (3, 49) and (samples < 4).all()
    agree = (samples == samples[:, :1]).float().mean()  # sampled images are (nearly) constant, like the data
    assert agree > 0.9


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("pixels") / "run"
    sets = [a for s in TINY for a in ("--set", s)]
    assert main(["train", "pixels", "--out", str(run), "--max-steps", "40", "--no-progress", *sets]) == 0
    return run


def test_train_writes_metrics_and_grids(run_dir):
    m = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test_bits_per_token", "baseline_bits_per_token", "conditional_accuracy", "classifier_test_accuracy"):
        assert key in m
    assert 0 < m["test_bits_per_token"] < 3 and m["uniform_bits_per_token"] == 2.0  # 40 steps: not yet learned
    assert 0 <= m["conditional_accuracy"] <= 1
    for name in ("samples.png", "completions.png"):
        assert Image.open(run_dir / name).size[0] > 100


def test_generate_class_grid_through_cli(run_dir, tmp_path, capsys):
    out = tmp_path / "grid.png"
    args = ["generate", str(run_dir), "--class", "7", "--num-return-sequences", "16", "--out", str(out), "--seed", "1"]
    assert main(args) == 0
    assert "16 sampled images: seven" in capsys.readouterr().out
    assert Image.open(out).size[0] > 100
    rows = tmp_path / "rows.png"  # no --class: one row per class
    assert main(["generate", str(run_dir), "--num-return-sequences", "3", "--out", str(rows)]) == 0
    assert "30 sampled images" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--class", "11"], "--class 11: choose 0..9"),
        (["--class", "banana"], "--class banana: choose 0..9"),
        (["--prompt", "hello"], "pixels take no text prompt"),
        (["--num-beams", "3"], "--num-beams is not supported"),
        (["--out", "grid.jpg"], "give a .png file name"),
        (["--out", "no/such/dir/grid.png"], "no such directory"),
        (["--prompt-chorale", "2"], "does not take --prompt-chorale"),
    ],
)
def test_bad_generate_inputs_are_one_line_errors(run_dir, tmp_path, monkeypatch, capsys, extra, message):
    monkeypatch.chdir(tmp_path)
    assert main(["generate", str(run_dir), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_generate_never_overwrites(run_dir, tmp_path, capsys):
    out = tmp_path / "grid.png"
    out.write_bytes(b"keep me")
    assert main(["generate", str(run_dir), "--class", "3", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_bytes() == b"keep me"


def test_generate_file_directly(run_dir, tmp_path):
    """The capability the CLI dispatches to (``GeneratesFiles``), called as the apps call it."""
    task, cfg, meta, model = load_run(run_dir)
    assert isinstance(task, GeneratesFiles) and task.file_options == ("class_label",)
    out = tmp_path / "grid.png"
    lines = task.generate_file(model, cfg, meta, out, class_label="seven", num_return_sequences=4, seed=1)
    assert lines == [f"wrote {out} (4 sampled images: seven)"] and Image.open(out).size[0] > 100
    bad = [
        ({"class_label": "11"}, "--class 11: choose 0..9"),
        ({"prompt": "hello"}, "pixels take no text prompt"),
        ({"num_beams": 3}, "--num-beams is not supported"),
    ]
    for options, message in bad:
        with pytest.raises(UserError, match=message):
            task.generate_file(model, cfg, meta, tmp_path / "new.png", **options)
    with pytest.raises(UserError, match="exists; choose another --out"):
        task.generate_file(model, cfg, meta, out)
    with pytest.raises(UserError, match="give a .png file name"):
        task.generate_file(model, cfg, meta, tmp_path / "grid.jpg")


def test_bad_settings_are_one_line_errors(tmp_path, capsys):
    for bad, message in (("size=10", "size=10: choose 7, 14 or 28"), ("dataset=cifar", "choose mnist5k or fashion")):
        assert main(["train", "pixels", "--out", str(tmp_path / "r"), "--set", bad, "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err
