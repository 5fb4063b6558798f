"""mnist-words: image -> name, letter by letter. Tiny synthetic images (the class is where a bright square
sits) stand in for MNIST so every test runs in seconds; the real data runs in ``benchmarks/mnist_words.py``.

The source project's image-to-word example failed for six reasons (``../shared/docs/seed-notes.md``); each
has a guard here, named ``test_source_bug_*``, next to the core guards in ``tests/test_regressions.py``.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tinyformers.apps.cli import main
from tinyformers.core.models import ConvStem, EncoderDecoder, ImageClassifier
from tinyformers.data import images
from tinyformers.engine.task import apply_overrides
from tinyformers.engine.trainer import train
from tinyformers.errors import UserError
from tinyformers.tasks import get_task
from tinyformers.tasks._metrics import edit_distance, word_metrics
from tinyformers.tasks.mnist_words import EOS, PAD

TINY = ["patch_size=7", "d_model=32", "n_heads=4", "d_ff=64", "enc_layers=1", "dec_layers=1", "shift=0"]
RECIPE = ["batch_size=32", "lr=3e-3", "warmup_steps=10", "max_steps=200", "eval_every=200"]


def squares(per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """10 classes of 28x28 uint8 images: class c is a bright 7x7 square in the c-th cell of a 4x4 grid
    plus a faint class-specific texture everywhere, on noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(10), per_class)
    texture = rng.integers(0, 60, size=(10, 28, 28))
    x = texture[y] + rng.integers(0, 20, size=(len(y), 28, 28))
    for i, c in enumerate(y):
        r, col = (c // 4) * 7, (c % 4) * 7
        x[i, r : r + 7, col : col + 7] = 255
    return x.astype(np.uint8), y.astype(np.int64)


@pytest.fixture
def fake_mnist(monkeypatch):
    monkeypatch.setattr(images, "mnist5k", lambda: squares(20))


def tiny_cfg(*extra: str):
    task = get_task("mnist-words")
    return task, apply_overrides(task.Config(), [*TINY, *extra])


def small_model(dropout: float = 0.0) -> tuple[EncoderDecoder, dict]:
    task, cfg = tiny_cfg(f"dropout={dropout}")
    meta = task.data(cfg).meta
    return task.model(cfg, meta), meta


# --- metrics ------------------------------------------------------------------------------------------------
def test_edit_distance():
    assert edit_distance("seven", "seven") == 0
    assert edit_distance("seven", "eleven") == 2  # substitute s->e, insert l
    assert edit_distance("", "two") == 3 and edit_distance("two", "") == 3
    assert edit_distance("kitten", "sitting") == 3


def test_word_metrics():
    exact, cer = word_metrics(["one", "tw", "three"], ["one", "two", "three"])
    assert exact == pytest.approx(2 / 3)
    assert cer == pytest.approx(1 / 11)  # one missing letter out of 3 + 3 + 5


# --- data -----------------------------------------------------------------------------------------------------
def test_split_is_fixed_stratified_and_disjoint(fake_mnist):
    task, cfg = tiny_cfg()
    a, b = task.data(cfg), task.data(cfg)
    for split, n in (("train", 140), ("val", 20), ("test", 40)):
        assert len(a.splits[split][1]) == n
        assert torch.equal(a.splits[split][0], b.splits[split][0])
        assert torch.bincount(a.splits[split][1]).tolist() == [n // 10] * 10
    flat = {s: {bytes(img.numpy()) for img in a.splits[s][0]} for s in ("train", "val", "test")}
    assert not flat["train"] & flat["test"] and not flat["val"] & flat["test"]


def test_word_labels_spell_the_name_then_eos_then_padding(fake_mnist):
    task, cfg = tiny_cfg()
    meta = task.data(cfg).meta
    labels = task.word_labels(meta, torch.tensor([1, 7]))  # "one", "seven"
    tok = task.tokenizer(meta)
    assert labels[0].tolist() == [*tok.encode("one"), EOS, PAD, PAD]
    assert labels[1].tolist() == [*tok.encode("seven"), EOS]


def write_idx(path, array: np.ndarray) -> None:
    code = 0x08  # uint8
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_erase_blanks_part_of_some_training_images_to_background(fake_mnist):
    task, cfg = tiny_cfg("erase=1.0", "batch_size=32")
    data = task.data(cfg)
    plain = task.batch(data, tiny_cfg("batch_size=32")[1], torch.Generator().manual_seed(0))["images"]
    erased = task.batch(data, cfg, torch.Generator().manual_seed(0))["images"]
    assert erased.dtype == plain.dtype == torch.uint8
    assert (erased <= plain).all() and (erased < plain).any()  # only set to 0 (background), never added ink
    with pytest.raises(UserError, match="erase"):
        tiny_cfg("erase=-0.1")


def test_fashion_names_with_spaces_and_slashes_round_trip(tmp_path):
    x, y = squares(12)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", x)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", y)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", x[::6])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", y[::6])
    task, cfg = tiny_cfg("dataset=fashion", f"data_dir={tmp_path}")
    data = task.data(cfg)
    assert [len(data.splits[s][1]) for s in ("train", "val", "test")] == [110, 10, 20]
    tok = task.tokenizer(data.meta)
    labels = task.word_labels(data.meta, torch.tensor([0, 9]))
    assert tok.decode(labels[0].tolist()) == "t-shirt/top"
    assert tok.decode(labels[1].tolist()) == "ankle boot"


# --- the six causes of the source's failure -------------------------------------------------------------------
def test_source_bug_unregistered_decoder_layers_every_weight_trains_and_saves(fake_mnist):
    """Source: the decoder layers sat in a plain Python list — never registered, trained nor saved."""
    model, meta = small_model()
    task = get_task("mnist-words")
    labels = task.word_labels(meta, torch.tensor([3, 8]))
    grey = torch.randint(0, 256, (2, 28 * 28))
    model(grey, labels).loss.backward()
    names = {n for n, _ in model.named_parameters()}
    assert any(n.startswith("decoder.layers.0.") for n in names)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    clone, _ = small_model()
    clone.load_state_dict(model.state_dict())
    model.eval(), clone.eval()
    assert torch.equal(model(grey, labels).logits, clone(grey, labels).logits)


def test_conv_stem_encoder_trains_and_round_trips(fake_mnist):
    """patch_embed=conv: the encoder of both the words model and the classifier gets the convolutional stem, and
    every weight of it (stem included) receives a gradient."""
    task, cfg = tiny_cfg("patch_embed=conv")
    meta = task.data(cfg).meta
    model = task.model(cfg, meta)
    assert isinstance(model.encoder.patch_embed, ConvStem)
    grey = torch.randint(0, 256, (2, 28 * 28))
    model(grey, task.word_labels(meta, torch.tensor([3, 8]))).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    _, cls_cfg = tiny_cfg("patch_embed=conv", "model=classifier")
    assert isinstance(task.model(cls_cfg, meta).encoder.patch_embed, ConvStem)
    _, staged = tiny_cfg("patch_embed=conv", "stem_channels=4", "stem_stages=2", "patch_size=4")
    stem = task.model(staged, meta).encoder.patch_embed
    assert [m.out_channels for m in stem.convs if isinstance(m, torch.nn.Conv2d)] == [4, 4, 8, 8]
    assert task.model(staged, meta).encode(grey)[0].shape[1] == 1 + 49  # class token + 7x7 patches of 4x4


def test_source_bug_malformed_sequential_shapes_end_to_end(fake_mnist):
    """Source: a malformed ``nn.Sequential`` in the pipeline. Every stage's shape is checked here."""
    model, meta = small_model()
    grey = torch.randint(0, 256, (3, 28 * 28))
    memory, _ = model.encode(grey)
    assert memory.shape == (3, 1 + 16, 32)  # class token + 4x4 patches of 7x7
    labels = get_task("mnist-words").word_labels(meta, torch.tensor([0, 4, 7]))
    out = model(grey, labels)
    assert out.logits.shape == (3, labels.size(1), len(get_task("mnist-words").tokenizer(meta)))
    assert model.generate(grey, max_new_tokens=6).shape[0] == 3


def test_source_bug_causal_mask_same_in_training_and_decoding(fake_mnist):
    """Source: causal mask on in training, off at inference. Teacher-forced logits must equal the logits the
    incremental decoder computes step by step, and a later letter must not change an earlier prediction."""
    model, meta = small_model()
    model.eval()
    grey = torch.randint(0, 256, (2, 28 * 28))
    labels = get_task("mnist-words").word_labels(meta, torch.tensor([3, 3]))  # "three" + eos
    with torch.no_grad():
        forced = model(grey, labels).logits  # (2, 6, V)
        memory, _ = model.encode(grey)
        cache, cross = model.new_caches()
        inputs = torch.cat([torch.full((2, 1), model.config.bos_id), labels[:, :-1]], dim=1)
        for t in range(inputs.size(1)):
            step = model.decode(inputs[:, t : t + 1], memory, cache=cache, cross_cache=cross).logits[:, 0]
            torch.testing.assert_close(step, forced[:, t], atol=1e-5, rtol=1e-5)
        changed = labels.clone()
        changed[:, 3] = changed[:, 0]
        after = model(grey, changed).logits
    torch.testing.assert_close(after[:, :4], forced[:, :4])


def test_source_bug_eval_mode_dropout_off_when_decoding(fake_mnist):
    """Source: ``model.eval()`` was never called, so dropout stayed on at test time."""
    model, _ = small_model(dropout=0.5)
    model.train()
    grey = torch.randint(0, 256, (8, 28 * 28))
    first, second = model.generate(grey, max_new_tokens=6), model.generate(grey, max_new_tokens=6)
    assert torch.equal(first, second)
    assert model.training  # decoding switched to eval mode and back


def test_source_bug_head_dim_one_default_heads_are_wide(fake_mnist):
    """Source: ``nhead = d_model``, so every attention head had dimension 1 (a scalar query and key)."""
    task = get_task("mnist-words")
    cfg = task.Config()
    assert cfg.d_model // cfg.n_heads >= 16
    model = task.model(cfg, task.data(cfg).meta)
    heads = [m for m in model.modules() if hasattr(m, "d_head")]
    assert heads and all(m.d_head == cfg.d_model // cfg.n_heads for m in heads)


def test_source_bug_padding_never_counts_as_correct(fake_mnist):
    """Source: padding positions counted in the accuracy. Here the metrics compare decoded words, and the
    loss ignores padding: appending padding columns to the labels changes nothing."""
    exact, cer = word_metrics(["on", "si"], ["one", "six"])
    assert exact == 0.0 and cer == pytest.approx(2 / 6)  # "on" + padding is not "one"
    model, meta = small_model()
    model.eval()
    grey = torch.randint(0, 256, (2, 28 * 28))
    labels = get_task("mnist-words").word_labels(meta, torch.tensor([1, 2]))
    padded = torch.cat([labels, torch.full((2, 2), PAD)], dim=1)
    torch.testing.assert_close(model(grey, labels).loss, model(grey, padded).loss)


# --- learning, and the CLI ------------------------------------------------------------------------------------
def test_learns_to_write_the_names(fake_mnist, tmp_path):
    task, cfg = tiny_cfg(*RECIPE)
    metrics = train(task, cfg, tmp_path / "words", progress=False)
    assert metrics["test_word_accuracy"] >= 0.95, metrics
    assert metrics["test_char_error_rate"] <= 0.05, metrics
    assert "classifier_accuracy" not in metrics


def test_classifier_baseline_reports_its_accuracy(fake_mnist, tmp_path):
    task, cfg = tiny_cfg(*RECIPE, "model=classifier")
    metrics = train(task, cfg, tmp_path / "cls", progress=False)
    assert metrics["classifier_accuracy"] == metrics["test_word_accuracy"] >= 0.95, metrics
    assert isinstance(task.model(cfg, task.data(cfg).meta), ImageClassifier)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One tiny trained run, through the CLI, shared by the CLI tests."""
    out = str(tmp_path_factory.mktemp("mnist_words") / "run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(images, "mnist5k", lambda: squares(20))
        argv = [
            "train",
            "mnist-words",
            "--out",
            out,
            "--no-progress",
            *[a for s in TINY + RECIPE for a in ("--set", s)],
        ]
        assert main(argv) == 0
    return out


def test_predict_any_size_and_colour(run_dir, tmp_path, capsys):
    x, _ = squares(1)
    dark_on_white = 255 - x[5]  # "five" drawn as people draw: dark ink on white paper, saved in RGB
    Image.fromarray(np.stack([dark_on_white] * 3, -1)).save(tmp_path / "five.png")
    Image.fromarray(x[9]).save(tmp_path / "nine.jpg", quality=95)  # grey JPEG, light on dark
    Image.fromarray(np.kron(x[9], np.ones((3, 3), dtype=np.uint8))).save(tmp_path / "big.bmp")  # 84x84
    capsys.readouterr()
    assert main(["predict", run_dir, str(tmp_path / "five.png"), str(tmp_path / "nine.jpg")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[1] for line in lines] == ["five", "nine"]
    assert main(["predict", run_dir, str(tmp_path / "big.bmp")]) == 0  # resized (blurred): any name
    assert capsys.readouterr().out.split("\t")[1].strip() in images.DIGIT_NAMES
    assert main(["predict", run_dir, "--num-beams", "3", str(tmp_path / "five.png")]) == 0
    assert capsys.readouterr().out.split("\t")[1].strip() == "five"
    assert main(["attention", run_dir, str(tmp_path / "five.png"), "--out", str(tmp_path / "att.png")]) == 0
    assert Image.open(tmp_path / "att.png").size[0] > 100
    assert {p.name for p in Path(run_dir).glob("*.png")} >= {"words.png", "letter_attention.png"}


def one_line_error(capsys, argv: list[str], match: str) -> None:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert match in err, err


def test_bad_inputs_are_one_line_errors(run_dir, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("seven\n")
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    one_line_error(capsys, ["predict", run_dir, str(text)], "not an image")
    one_line_error(capsys, ["predict", run_dir, str(fake)], "fake.png")
    one_line_error(capsys, ["predict", run_dir, str(tmp_path / "missing.png")], "no such file")
    one_line_error(capsys, ["predict", run_dir, "--num-beams", "0", str(text)], "--num-beams")
    one_line_error(capsys, ["train", "mnist-words", "--out", str(tmp_path / "x"), "--set", "dataset=cifar"], "dataset")
    one_line_error(capsys, ["train", "mnist-words", "--out", str(tmp_path / "x"), "--set", "model=cnn"], "model")
    missing = tmp_path / "nowhere"
    one_line_error(
        capsys,
        [
            "train",
            "mnist-words",
            "--out",
            str(tmp_path / "x"),
            "--set",
            "dataset=fashion",
            f"data_dir={missing}",
        ],
        "Fashion-MNIST",
    )
