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
  the class asked for. The CNN is the vision task's :class:`~tinyformers.core.models.ConvNet`, trained inside
  the evaluation (``classifier_test_accuracy`` reports how good the judge is on real held-out images).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinyformers.core.models import ConvNet, DecoderConfig, DecoderLM
from tinyformers.data import images
from tinyformers.data.images import dequantise, quantise
from tinyformers.engine.task import Batch, GeneratesFiles, ModelSizes, Scorecard, Task, TaskData, TrainConfig
from tinyformers.errors import UserError
from tinyformers.viz.figures import draw_grid

DATASETS = ("mnist5k", "fashion")


@dataclass
class PixelsConfig(ModelSizes, TrainConfig):
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
    n_layers: int = 3
    d_ff: int = 384
    dropout: float = 0.1
    max_steps: int = 1200
    cpu_bf16: bool = True  # bf16 autocast on a CPU with native bf16: faster at equal steps (docs/speed.md)
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


class PixelsTask(Task[PixelsConfig], GeneratesFiles):
    name = "pixels"
    summary = "generate MNIST digits / Fashion-MNIST items pixel by pixel with a class-conditional decoder LM"
    Config: ClassVar[type[TrainConfig]] = PixelsConfig
    metric: ClassVar[str] = "bits_per_token"
    maximize: ClassVar[bool] = False
    file_options: ClassVar[tuple[str, ...]] = ("class_label",)
    scorecard: ClassVar[Scorecard | None] = Scorecard(
        "test_bits_per_token",
        higher_is_better=False,
        baselines=("baseline_bits_per_token",),
        quick=("size=7", "d_model=32", "n_heads=2", "n_layers=1", "d_ff=64", "samples_per_class=2"),
        summary="Held-out bits per pixel token of a class-conditional pixel LM vs independent pixels per class "
        "and position; conditional_accuracy: the share of samples a CNN labels as the class asked for.",
    )

    def data_status(self, cfg: PixelsConfig) -> str | None:
        return images.builtin_status(cfg.dataset, cfg.data_dir)

    def data(self, cfg: PixelsConfig, meta: dict[str, Any] | None = None) -> TaskData:
        raw, classes = images.builtin_splits(cfg.dataset, cfg.data_dir, seed=cfg.data_seed)
        if cfg.max_train:
            raw["train"] = (raw["train"][0][: cfg.max_train], raw["train"][1][: cfg.max_train])
        splits = {s: (quantise(xs, cfg.size, cfg.levels), torch.from_numpy(ys).long()) for s, (xs, ys) in raw.items()}
        return TaskData(splits, {"classes": classes})

    def sequences(self, tokens: Tensor, classes: Tensor, cfg: PixelsConfig) -> Batch:
        """``<class> p_1 .. p_N``: inputs drop the last pixel, labels are every pixel (the class is given)."""
        seq = torch.cat([cfg.levels + classes[:, None], tokens], dim=1)  # (B, 1 + N)
        return {"input_ids": seq[:, :-1], "labels": seq[:, 1:]}

    def batch(self, data: TaskData, cfg: PixelsConfig, generator: torch.Generator) -> Batch:
        tokens, labels = data.splits["train"]
        rows = torch.randint(0, len(labels), (cfg.batch_size,), generator=generator)
        return self.sequences(tokens[rows], labels[rows], cfg)

    def loss(self, model: nn.Module, batch: Batch, cfg: PixelsConfig) -> Tensor:
        return model(batch["input_ids"], batch["labels"]).loss  # next-pixel cross-entropy

    def model(self, cfg: PixelsConfig, meta: dict[str, Any]) -> nn.Module:
        vocab = cfg.levels + len(meta["classes"])  # grey levels, then one token per class
        return DecoderLM(DecoderConfig(**cfg.sizes(), max_len=cfg.size * cfg.size, vocab_size=vocab))

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
        tokens, labels = data.splits["train"]
        x = dequantise(tokens, cfg.size, cfg.levels)
        torch.manual_seed(cfg.seed)
        cnn = ConvNet(1, cfg.size, int(labels.max()) + 1, channels=16, hidden=64, dropout=0.2)
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
        # the model's whole distribution unless a top_k is given (generate's default, as HF's, is top_k=50)
        decoding = {"do_sample": True, "top_k": None, **decoding, "max_new_tokens": n + 1 - prompt.size(1)}
        ids = cast(DecoderLM, model).generate(prompt, **decoding)[:, 1:]  # (B * num_return_sequences, N)
        return torch.where(ids < cfg.levels, ids, 0).cpu()

    def evaluate(self, model: nn.Module, data: TaskData, split: str, cfg: PixelsConfig) -> dict[str, float]:
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

    def class_index(self, meta: dict[str, Any], label: str) -> int:
        """A class given by index ('7') or name ('seven', 'sneaker')."""
        classes = meta["classes"]
        text = label.strip().lower()
        if text.isdigit() and int(text) < len(classes):
            return int(text)
        if text in classes:
            return classes.index(text)
        raise UserError(f"--class {label}: choose 0..{len(classes) - 1} or a name ({', '.join(classes)})")

    def generate_file(
        self,
        model: nn.Module,
        cfg: PixelsConfig,
        meta: dict[str, Any],
        out: Path | None,
        *,
        class_label: str | None = None,
        **decoding: Any,
    ) -> list[str]:
        """Write a grid PNG of sampled images (``out``, default ``samples.png``; never overwritten).

        With ``class_label``: ``num_return_sequences`` images of that class; without: one row per class.
        Images are always sampled (``do_sample`` is forced on: greedy decoding gives one image per class);
        ``temperature``, ``top_k``, ``top_p`` and ``seed`` apply (without ``top_k``, from every grey level, not
        the 50 most likely tokens as ``generate``'s default); the length is the image's pixel count.
        A text ``prompt``, if one is passed along, is refused: the class is the only condition.
        """
        if decoding.pop("prompt", None):
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

    def plots(self, model: nn.Module, data: TaskData, cfg: PixelsConfig, run_dir: str) -> list[str]:
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


TASKS = (PixelsTask,)
