"""The vision task: models, augmentation, metrics, attention maps, learning on small data, and the CLI
(train on an IDX directory and an image folder the test writes, predict, attention, bad inputs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_images import make_folder, write_mnist_dir

from tinyformers.apps.cli import main
from tinyformers.core.models import VisionTransformer
from tinyformers.data.augment import augment_images as augment
from tinyformers.data.augment import cutmix_images, erase_images
from tinyformers.engine.task import apply_overrides
from tinyformers.errors import UserError
from tinyformers.tasks import get_task
from tinyformers.tasks._metrics import confusion, macro_f1
from tinyformers.viz.figures import attention_maps

TINY_VIT = ["d_model=16", "n_heads=2", "n_layers=1", "d_ff=32", "batch_size=16", "eval_every=5"]
META = {"image_size": 28, "channels": 1, "classes": list("abc"), "mean": 0.0, "std": 1.0}


def config(*settings: str):
    task = get_task("vision")
    return task, apply_overrides(task.Config(), list(settings))


@pytest.mark.parametrize(
    "settings, params",
    [
        (["model=vit", "pooling=mean", "positions=sinusoidal"], None),
        (["model=vit", "patch_size=7"], None),
        (["model=vit", "patch_embed=conv", "stem_channels=4", "pooling=mean"], None),
        (
            ["model=cnn", "cnn_channels=4", "cnn_hidden=8"],
            4 * 9 + 4 * 9 * 4 + 8 * 9 * 4 + 8 * 9 * 8 + 2 * 24 + 392 * 8 + 8 + 27,
        ),
        (["model=mlp", "mlp_hidden=8"], 784 * 8 + 8 + 8 * 8 + 8 + 8 * 3 + 3),
    ],
)
def test_models_map_images_to_class_logits(settings, params):
    task, cfg = config(*settings)
    model = task.model(cfg, META)
    out = model(torch.randn(5, 1, 28, 28))
    assert out.logits.shape == (5, 3)
    if params is not None:
        assert sum(p.numel() for p in model.parameters()) == params


def test_vit_size_must_divide_into_patches():
    with pytest.raises(ValueError, match="multiple of patch_size"):
        get_task("vision").model(config("patch_size=5")[1], META)


def test_augment_translates_without_losing_ink_and_is_seeded():
    x = torch.zeros(8, 1, 12, 12, dtype=torch.uint8)
    x[:, :, 5:7, 5:7] = 200  # a dot well inside the border: a shift by <= 2 keeps it whole
    a = augment(x, 2, False, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and a.dtype == torch.uint8
    assert (a.sum((1, 2, 3)) == x.sum((1, 2, 3))).all()
    assert not (a == x).all()
    assert torch.equal(a, augment(x, 2, False, torch.Generator().manual_seed(0)))
    assert torch.equal(augment(x, 0, False, torch.Generator()), x)
    flipped = augment(x[:, :, :, :7], 0, True, torch.Generator().manual_seed(1))
    assert {tuple(f[0, 5].tolist()) for f in flipped} == {(0,) * 5 + (200,) * 2, (200,) * 2 + (0,) * 5}


def test_erase_blanks_one_rectangle_per_chosen_image_and_is_seeded():
    x = torch.ones(400, 1, 28, 28)
    a = erase_images(x, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(a, erase_images(x, 0.5, torch.Generator().manual_seed(0)))
    assert torch.equal(erase_images(x, 0.0, torch.Generator()), x)
    zeros = a == 0
    erased = zeros.any((1, 2, 3))
    assert 0.4 < erased.float().mean() < 0.6  # p = 0.5 per image
    for img in zeros[erased, 0][:50]:  # each blank is one full rectangle of 2-33% of the image
        rows, cols = img.any(1).nonzero().squeeze(1), img.any(0).nonzero().squeeze(1)
        assert img.sum() == len(rows) * len(cols) == img[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].sum()
        assert 0.01 <= img.float().mean() <= 0.36
    assert (a[~zeros] == 1).all()  # nothing else changes


def test_erase_is_a_vision_option():
    task, cfg = config("erase=0.5", "batch_size=64")
    assert cfg.erase == 0.5
    with pytest.raises(UserError, match="erase"):
        config("erase=1.5")


def test_cutmix_pastes_one_box_and_lambda_is_the_kept_area():
    b = 64
    x = torch.arange(b, dtype=torch.float32)[:, None, None, None].expand(b, 1, 12, 12).contiguous()  # image i is all i
    mixed, perm, lam = cutmix_images(x, torch.Generator().manual_seed(0))
    assert torch.equal(mixed, cutmix_images(x, torch.Generator().manual_seed(0))[0])
    assert sorted(perm.tolist()) == list(range(b))
    for i in range(b):
        kept = (mixed[i] == i).float().mean()
        pasted = mixed[i] == perm[i]
        if perm[i] != i:
            assert torch.isclose(lam[i], kept) and ((mixed[i] == i) | pasted).all()
    assert lam.min() >= 0 and lam.max() <= 1 and 0.2 < lam.mean() < 0.8


def test_cutmix_batches_have_fixed_keys_and_the_loss_mixes_both_labels():
    task, cfg = config(*TINY_VIT, "cutmix=1.0", "dataset=digits")
    data = task.data(cfg)
    batch = task.batch(data, cfg, torch.Generator().manual_seed(0))
    assert set(batch) == {"pixels", "labels", "mix_labels", "lam"}
    model = task.model(cfg, data.meta)
    logits = model(batch["pixels"]).logits
    ce = torch.nn.functional.cross_entropy
    lam = batch["lam"]
    want = (lam * ce(logits, batch["labels"], reduction="none")).mean()
    want = want + ((1 - lam) * ce(logits, batch["mix_labels"], reduction="none")).mean()
    assert torch.allclose(task.loss(model, batch, cfg), want, atol=1e-6)
    _, off = config(*TINY_VIT, "cutmix=0.0", "dataset=digits")
    assert set(task.batch(data, off, torch.Generator().manual_seed(0))) == {"pixels", "labels"}
    with pytest.raises(UserError, match="cutmix"):
        config("cutmix=2")


def test_tta_averages_the_probabilities_of_an_image_and_its_mirror():
    task, cfg = config(*TINY_VIT, "dataset=digits", "flip=true", "tta=true")
    data = task.data(cfg)
    torch.manual_seed(0)
    model = task.model(cfg, data.meta).eval()
    x = data.splits["test"][0][:20]
    with torch.no_grad():
        tta = task.logits(model, x, data.meta, chunk=7, tta=True)
        plain, mirrored = (task.logits(model, v, data.meta) for v in (x, x.flip(-1)))
        # a softmax of the result is the mean of the two views' softmax; mirroring the input changes nothing
        torch.testing.assert_close(tta.softmax(-1), (plain.softmax(-1) + mirrored.softmax(-1)) / 2)
        torch.testing.assert_close(task.logits(model, x.flip(-1), data.meta, tta=True), tta)
    assert not torch.allclose(plain, mirrored)  # the model alone is not mirror-symmetric: TTA does something
    with torch.no_grad():
        xs, ys = data.splits["test"]
        both, one = (torch.nn.functional.cross_entropy(task.logits(model, xs, data.meta, tta=t), ys) for t in (1, 0))
        got = task.evaluate(model, data, "test", cfg)["test_loss"]
        assert got == pytest.approx(both.item(), rel=1e-6) and got != pytest.approx(one.item(), rel=1e-6)
    with pytest.raises(UserError, match="flip=true"):
        config("tta=true")


def test_macro_f1_matches_scikit_learn():
    from sklearn.metrics import f1_score

    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (200,), generator=gen)
    pred = torch.where(torch.rand(200, generator=gen) < 0.6, y, torch.randint(0, 4, (200,), generator=gen))
    pred[pred == 3] = 2  # class 3 never predicted
    assert macro_f1(confusion(y, pred, 4)) == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))


def test_attention_rollout_follows_the_paths():
    n = 4  # patches; token 0 is the class token
    identity = torch.eye(1 + n).expand(1, 2, -1, -1)
    maps, rollout = attention_maps([identity, identity], "cls")
    assert maps.shape == (2, 2, n) and rollout.shape == (n,)
    assert torch.allclose(rollout, torch.zeros(n))  # the class token only ever looked at itself
    to_patch2 = torch.zeros(1, 2, 1 + n, 1 + n)
    to_patch2[..., 2 + 1] = 1.0  # every query attends to patch 2
    maps, rollout = attention_maps([to_patch2], "cls")
    assert torch.allclose(maps[0, :, 2], torch.ones(2))
    assert torch.allclose(rollout, torch.tensor([0.0, 0.0, 0.5, 0.0]))  # half through the residual path
    _, mean_rollout = attention_maps([to_patch2], "mean")  # mean patch query: 0.5 to patch 2, 0.5 to itself
    assert torch.allclose(mean_rollout, torch.tensor([0.125, 0.125, 0.625, 0.125]))


@pytest.mark.parametrize("model", ["vit", "mlp"])
def test_learns_the_8x8_digits(model, tmp_path):
    task, cfg = config(
        "dataset=digits", f"model={model}", "patch_size=4", "d_model=32", "n_heads=2", "n_layers=1", "d_ff=64",
        "max_steps=300", "warmup_steps=20", "batch_size=64", "eval_every=300", "lr=5e-3",
    )  # fmt: skip
    from tinyformers.engine.trainer import train

    m = train(task, cfg, tmp_path, progress=False)
    assert m["test_accuracy"] > 0.8 and m["majority_accuracy"] < 0.15
    assert 0 < m["test_macro_f1"] <= 1
    assert (tmp_path / "confusion.png").exists() and (tmp_path / "misclassified.png").exists()


def test_splits_are_fixed_and_disjoint():
    task, cfg = config("dataset=digits")
    a, b = task.data(cfg), task.data(cfg)
    sizes = {k: len(a.splits[k][1]) for k in ("train", "val", "test")}
    assert sizes == {"train": 1258, "val": 180, "test": 359}
    assert all(torch.equal(a.splits[k][0], b.splits[k][0]) for k in sizes)
    flat = {k: {bytes(img.numpy()) for img in a.splits[k][0]} for k in sizes}
    assert len(flat["test"] & flat["train"]) <= 2  # scikit-learn's digits hold a few duplicate images


def one_line_error(capsys, argv: list[str], match: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert match in err, err


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("vision")
    folder = make_folder(root / "shapes", per_class=20)
    out = root / "run"
    argv = ["train", "vision", "--out", str(out), "--max-steps", "150", "--no-progress", "--set", *TINY_VIT]
    settings = ["image_size=16", "channels=3", "patch_size=4", "shift=1", "lr=5e-3", "warmup_steps=10"]
    assert main([*argv, f"folder={folder}", *settings, "eval_every=25"]) == 0
    return root, folder, out


def test_folder_run_through_the_cli(folder_run, capsys):
    root, folder, out = folder_run
    capsys.readouterr()
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"test_accuracy", "test_macro_f1", "params", "train_seconds"} <= set(metrics)
    assert metrics["test_accuracy"] >= 0.75  # 8 test images of bars and rings
    assert main(["predict", str(out), str(folder / "bar" / "0.png"), str(folder / "ring" / "1.jpg")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[1] for line in lines] == ["bar", "ring"]
    assert "bar 0." in lines[0] and "ring 0." in lines[0]
    assert main(["attention", str(out), str(folder / "ring" / "1.jpg"), "--out", str(root / "maps.png")]) == 0
    assert Image.open(root / "maps.png").size[0] > 100


def test_mnist_idx_directory_through_the_cli(tmp_path, capsys):
    data = write_mnist_dir(tmp_path / "idx", n_train=120, n_test=20)  # 11:1 train:val leaves 10 to validate
    out = tmp_path / "run"
    argv = ["train", "vision", "--out", str(out), "--max-steps", "3", "--no-progress"]
    assert main([*argv, "--set", *TINY_VIT, "dataset=mnist", f"data_dir={data}", "model=mlp"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["meta"]["classes"][7] == "seven" and config["meta"]["dataset"] == "mnist"
    assert json.loads((out / "metrics.json").read_text())["steps"] == 3
    img = tmp_path / "seven.png"
    Image.fromarray(np.full((50, 30), 255, np.uint8)).save(img)
    assert main(["predict", str(out), str(img)]) == 0
    assert capsys.readouterr().out.split("\t")[1] in config["meta"]["classes"]


def test_bad_inputs_are_one_line_errors(folder_run, tmp_path, capsys):
    root, folder, out = folder_run
    train = ["train", "vision", "--out", str(tmp_path / "r"), "--max-steps", "1", "--no-progress", "--set"]
    (tmp_path / "notes.png").write_text("not really a PNG")
    one_line_error(capsys, ["predict", str(out), str(tmp_path / "notes.png")], "notes.png: not an image")
    one_line_error(capsys, ["predict", str(out), str(tmp_path / "missing.png")], "missing.png: no such file")
    one_line_error(capsys, [*train, "dataset=mnist"], "MNIST is not in data_dir=''")
    bad = write_mnist_dir(tmp_path / "bad", compress=False)
    (bad / "train-images-idx3-ubyte").write_bytes(b"<html>404</html>")
    one_line_error(capsys, [*train, "dataset=mnist", f"data_dir={bad}"], "not an IDX file")
    small = write_mnist_dir(tmp_path / "small", n_train=30)
    one_line_error(capsys, [*train, "dataset=mnist", f"data_dir={small}"], "too few images to fill the val split")
    one_line_error(capsys, [*train, f"folder={tmp_path / 'nowhere'}"], "nowhere: no such directory")
    (tmp_path / "one" / "cats").mkdir(parents=True)
    Image.new("L", (9, 9)).save(tmp_path / "one" / "cats" / "a.png")
    one_line_error(capsys, [*train, f"folder={tmp_path / 'one'}"], "a classifier needs at least 2")
    one_line_error(capsys, [*train, "dataset=digits", "channels=3"], "colour is for folder=PATH")
    one_line_error(capsys, [*train, "dataset=digits", "patch_size=3"], "not a multiple of patch_size")
    one_line_error(capsys, [*train, "model=resnet"], "choose vit, cnn or mlp")
    one_line_error(capsys, [*train, "dataset=imagenet"], "dataset='imagenet': choose")
    img = str(folder / "bar" / "0.png")
    one_line_error(capsys, ["attention", str(out), img, "--html", str(tmp_path / "a.html")], "drop --html")
    mlp = tmp_path / "mlp"
    assert main(["train", "vision", "--out", str(mlp), "--max-steps", "1", "--no-progress", "--set",
                 "dataset=digits", "model=mlp"]) == 0  # fmt: skip
    capsys.readouterr()
    one_line_error(capsys, ["attention", str(mlp), img, "--out", str(tmp_path / "m.png")], "has no attention")


def test_vit_run_loads_back_as_the_core_model(folder_run):
    from tinyformers.tasks import load_run

    _, _, out = folder_run
    task, cfg, meta, model = load_run(out)
    assert isinstance(model, VisionTransformer) and meta["channels"] == 3 and meta["classes"] == ["bar", "ring"]
