"""Image loaders on tiny files the tests write: IDX (plain and gzipped), MNIST download with checksums from a
local HTTP server, image folders of mixed sizes and modes, and one user image file."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tinyformers.data import images
from tinyformers.errors import UserError


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    """IDX: magic ``0 0 0x08 ndim``, big-endian int32 sizes, then uint8 data."""
    raw = (
        bytes([0, 0, 0x08, array.ndim])
        + struct.pack(f">{array.ndim}i", *array.shape)
        + array.astype(np.uint8).tobytes()
    )
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def write_mnist_dir(directory: Path, n_train: int = 40, n_test: int = 20, compress: bool = True) -> Path:
    """Four MNIST-layout files of random images; label i % 10, so every class is present."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)), compress)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n) % 10, compress)
    return directory


def test_read_idx_plain_and_gzip(tmp_path):
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    assert np.array_equal(images.read_idx(write_idx(tmp_path / "a", a)), a)
    assert np.array_equal(images.read_idx(write_idx(tmp_path / "a.gz", a, compress=True)), a)


@pytest.mark.parametrize(
    "raw, message",
    [(b"\x00\x00\x08", "bad magic"), (b"PK\x03\x04junk", "bad magic"), (b"\x00\x00\x08\x02\x00\x00", "truncated")],
)
def test_read_idx_rejects_bad_files(tmp_path, raw, message):
    (tmp_path / "bad").write_bytes(raw)
    with pytest.raises(UserError, match=message):
        images.read_idx(tmp_path / "bad")


def test_read_idx_rejects_short_data(tmp_path):
    path = write_idx(tmp_path / "x", np.zeros((3, 4)))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(UserError, match="header says 12"):
        images.read_idx(path)


def test_mnist_from_directory(tmp_path):
    d = write_mnist_dir(tmp_path / "m", compress=False)
    assert images.mnist_files_present(d)
    x, y = images.mnist("train", d)
    assert x.shape == (40, 28, 28) and x.dtype == np.uint8 and list(y[:3]) == [0, 1, 2]
    assert images.mnist("test", d)[0].shape == (20, 28, 28)
    with pytest.raises(UserError, match="data_dir"):
        images.mnist("train", "")


@pytest.fixture()
def file_server(tmp_path):
    """A local HTTP server over ``tmp_path/www`` (the tests never touch the network)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_mnist_checks_sha256_and_falls_back_to_next_mirror(tmp_path, file_server, monkeypatch):
    root, url = file_server
    good = write_mnist_dir(root / "good")
    sums = {name: hashlib.sha256((good / name).read_bytes()).hexdigest() for name in images.MNIST_SHA256}
    monkeypatch.setattr(images, "MNIST_SHA256", sums)
    bad = root / "bad"
    bad.mkdir()
    for name in sums:  # a mirror serving altered files: same names, other bytes
        (bad / name).write_bytes((good / name).read_bytes() + b"x")
    target = images.download_mnist(tmp_path / "data", mirrors=(f"{url}/missing/", f"{url}/bad/", f"{url}/good/"))
    for name, sha in sums.items():
        assert hashlib.sha256((target / name).read_bytes()).hexdigest() == sha
    assert images.mnist("train", target)[0].shape == (40, 28, 28)


def test_download_mnist_keeps_nothing_when_every_mirror_fails(tmp_path, file_server, monkeypatch):
    root, url = file_server
    good = write_mnist_dir(root / "good")
    monkeypatch.setattr(images, "MNIST_SHA256", dict.fromkeys(images.MNIST_SHA256, "0" * 64))
    with pytest.raises(UserError, match=r"cannot download train-images-idx3-ubyte.gz: .*SHA-256"):
        images.download_mnist(tmp_path / "data", mirrors=(f"{url}/good/",))
    assert list((tmp_path / "data").iterdir()) == []
    assert good.exists()


def test_the_official_checksums_are_sha256_hex():
    assert set(images.MNIST_SHA256) == {
        f"{p}-{k}-ubyte.gz" for p in ("train", "t10k") for k in ("images-idx3", "labels-idx1")
    }
    assert all(len(s) == 64 and int(s, 16) >= 0 for s in images.MNIST_SHA256.values())


def test_stratified_split_is_disjoint_and_keeps_class_shares():
    labels = np.repeat(np.arange(4), 50)
    parts = images.stratified_split(labels, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=3)
    assert sum(map(len, parts.values())) == 200
    assert len(set(np.concatenate(list(parts.values())))) == 200
    assert np.bincount(labels[parts["test"]]).tolist() == [10, 10, 10, 10]
    again = images.stratified_split(labels, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=3)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)


def make_folder(root: Path, per_class: int = 6) -> Path:
    """Two classes, 'bar' (vertical bar) and 'ring', in mixed sizes, modes and formats."""
    rng = np.random.default_rng(1)
    for name in ("bar", "ring"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            size = int(rng.integers(20, 60))
            yy, xx = np.mgrid[:size, :size] / size - 0.5
            if name == "bar":
                shape = np.abs(xx) < 0.1
            else:
                shape = np.abs(np.hypot(xx, yy) - 0.3) < 0.07
            grey = (shape * 255).astype(np.uint8)
            if i % 3 == 0:
                Image.fromarray(grey).save(root / name / f"{i}.png")
            elif i % 3 == 1:
                Image.fromarray(np.stack([grey, grey // 2, 255 - grey], -1)).save(root / name / f"{i}.jpg")
            else:
                Image.fromarray(grey).convert("RGBA").save(root / name / f"{i}.png")
    (root / "bar" / "notes.txt").write_text("not an image, skipped by suffix")
    return root


def test_image_folder_converts_any_size_and_mode(tmp_path):
    x, y, classes = images.load_image_folder(make_folder(tmp_path / "f"), (16, 16))
    assert classes == ["bar", "ring"]
    assert x.shape == (12, 16, 16) and x.dtype == np.uint8
    assert y.tolist() == [0] * 6 + [1] * 6
    assert x[y == 0][:, :, 8].mean() > x[y == 0][:, :, 0].mean()  # the bar is in the middle column
    colour, _, _ = images.load_image_folder(tmp_path / "f", (16, 16), mode="RGB")
    assert colour.shape == (12, 16, 16, 3)


def test_image_folder_errors(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        images.load_image_folder(tmp_path / "nope")
    (tmp_path / "one" / "a").mkdir(parents=True)
    Image.new("L", (5, 5)).save(tmp_path / "one" / "a" / "x.png")
    with pytest.raises(UserError, match="at least 2"):
        images.load_image_folder(tmp_path / "one")
    (tmp_path / "one" / "b").mkdir()
    with pytest.raises(UserError, match="no images"):
        images.load_image_folder(tmp_path / "one")
    (tmp_path / "one" / "b" / "y.png").write_text("text pretending to be a PNG")
    with pytest.raises(UserError, match="y.png: not an image"):
        images.load_image_folder(tmp_path / "one")


def test_load_image_file_inverts_dark_on_light(tmp_path):
    img = np.full((40, 40), 255, np.uint8)
    img[10:30, 18:22] = 0  # a black stroke on white paper
    Image.fromarray(img).save(tmp_path / "d.png")
    arr = images.load_image_file(tmp_path / "d.png")
    assert arr.shape == (28, 28) and arr[0, 0] == 0 and arr[14, 14] > 128  # light ink on dark, like MNIST
    assert images.load_image_file(tmp_path / "d.png", invert="no")[0, 0] == 255
    assert images.load_image_file(tmp_path / "d.png", mode="RGB").shape == (28, 28, 3)
