"""The figures of the image, audio and translation tasks: confusion matrices, misclassified images, a ViT's
attention over patches, written words, sampled image grids, log-mel spectrograms, cross-attention."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


def attention_maps(attentions: list[Tensor], pooling: str) -> tuple[Tensor, Tensor]:
    """What the pooled representation looks at, from per-layer weights (1, H, 1 + N, 1 + N).

    Returns per-layer per-head maps (L, H, N) over the N patches — the class token's row, or with mean
    pooling the mean of the patch rows — and the attention rollout (N,) of Abnar & Zuidema 2020: average
    the heads, add the identity for the residual path (``0.5 A + 0.5 I``, rows renormalised) and multiply
    the layers, ``R = A_L ... A_1``; its pooled row says how much each input patch flows into the output.
    """
    weights = torch.stack([a[0] for a in attentions])  # (L, H, 1 + N, 1 + N)

    def pooled_row(a: Tensor) -> Tensor:  # (..., 1 + N, 1 + N) -> (..., N)
        row = a[..., 0, :] if pooling == "cls" else a[..., 1:, :].mean(-2)
        return row[..., 1:]

    rollout = torch.eye(weights.size(-1))
    for layer in weights:
        a = 0.5 * layer.mean(0) + 0.5 * torch.eye(layer.size(-1))  # (1 + N, 1 + N)
        rollout = (a / a.sum(-1, keepdim=True)) @ rollout
    return pooled_row(weights), pooled_row(rollout)


def _image(ax: Any, pixels: Tensor) -> None:
    """Draw uint8 (C, H, W) as grey or colour."""
    img = pixels.permute(1, 2, 0).numpy()
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
    ax.set_xticks([])
    ax.set_yticks([])


def draw_attention(pixels: Tensor, maps: Tensor, rollout: Tensor, title: str, pooling: str, out: str | Path) -> None:
    """A grid: the image and its rollout on top, then one row per layer with one overlay per head."""
    from tinyformers.viz.plots import plt  # matplotlib is heavy: loaded when a figure is drawn

    n_layers, n_heads, n = maps.shape
    side, (h, w) = int(math.isqrt(n)), pixels.shape[1:]
    extent = (-0.5, w - 0.5, h - 0.5, -0.5)  # the patch grid covers the image exactly
    cols = max(n_heads, 2)
    fig, axes = plt.subplots(n_layers + 1, cols, figsize=(1.8 * cols, 1.9 * (n_layers + 1)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    _image(axes[0, 0], pixels)
    axes[0, 0].set_title("input", fontsize=8)
    _image(axes[0, 1], pixels)
    axes[0, 1].imshow(rollout.reshape(side, side).numpy(), cmap="inferno", alpha=0.6, extent=extent)
    axes[0, 1].set_title("attention rollout", fontsize=8)
    query = "class token" if pooling == "cls" else "mean patch query"
    for layer in range(n_layers):
        for head in range(n_heads):
            ax = axes[layer + 1, head]
            _image(ax, pixels)
            ax.imshow(maps[layer, head].reshape(side, side).numpy(), cmap="inferno", alpha=0.6, extent=extent)
            ax.set_title(f"layer {layer + 1} head {head + 1}", fontsize=8)
    fig.suptitle(f"{title}\nattention of the {query} over patches", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def plot_confusion(cm: Tensor, classes: list[str], path: str | Path) -> None:
    """Row-normalised confusion matrix with the counts written in each cell."""
    from tinyformers.viz.plots import plt  # matplotlib is heavy: loaded when a figure is drawn

    rates = cm.double() / cm.sum(1, keepdim=True).clamp(min=1)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * n, 1.0 + 0.5 * n))
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                color = "white" if rates[i, j] > 0.5 else "black"
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(n), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"test set: accuracy {cm.diag().sum() / cm.sum():.4f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_misclassified(x: Tensor, y: Tensor, pred: Tensor, classes: list[str], path: str | Path, k: int = 36) -> None:
    """The first ``k`` misclassified test images, titled ``true -> predicted``."""
    from tinyformers.viz.plots import plt  # matplotlib is heavy: loaded when a figure is drawn

    wrong = torch.nonzero(pred != y).flatten()[:k]
    cols = 6
    rows = max(1, math.ceil(len(wrong) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(list(axes.flat)[: len(wrong)], wrong.tolist(), strict=True):
        _image(ax, x[i])
        ax.set_title(f"{classes[int(y[i])]}\n-> {classes[int(pred[i])]}", fontsize=7)
    fig.suptitle(f"{int((pred != y).sum())} of {len(y)} test images misclassified (true -> predicted)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_words(x: Tensor, predicted: list[str], truth: list[str], path: str | Path, k: int = 24) -> None:
    """Up to ``k`` test images titled with the word written: every mistake first (red), then correct ones."""
    from tinyformers.viz.plots import plt  # matplotlib is heavy: loaded when a figure is drawn

    wrong = [i for i, (p, t) in enumerate(zip(predicted, truth, strict=True)) if p != t]
    right = [i for i in range(len(truth)) if predicted[i] == truth[i]]
    shown = (wrong + right)[:k]
    cols, rows = 8, max(1, math.ceil(len(shown) / 8))
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.7 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, shown, strict=False):  # spare panels stay blank
        ax.imshow(x[i, 0].numpy(), cmap="gray", vmin=0, vmax=255)
        ok = predicted[i] == truth[i]
        ax.set_title(
            predicted[i] if ok else f"{predicted[i]}\n(is {truth[i]})", fontsize=8, color="black" if ok else "red"
        )
    fig.suptitle(f"{len(wrong)} of {len(truth)} test words wrong (red: written, and the true name)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def draw_letter_attention(pixels: Tensor, word: str, weights: Tensor, title: str, out: str | Path) -> None:
    """The image, then one panel per written letter (and ``<eos>``): its cross-attention (T, N) over the
    patch grid, drawn on the image."""
    from tinyformers.viz.plots import plt  # matplotlib is heavy: loaded when a figure is drawn

    side = math.isqrt(weights.size(1))
    h, w = pixels.shape
    letters = [*word, "<eos>"]
    fig, axes = plt.subplots(1, len(letters) + 1, figsize=(1.6 * (len(letters) + 1), 2.0), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes[0, 0].imshow(pixels.numpy(), cmap="gray", vmin=0, vmax=255)
    axes[0, 0].set_title("input", fontsize=8)
    for ax, letter, row in zip(axes[0, 1:], letters, weights, strict=True):
        ax.imshow(pixels.numpy(), cmap="gray", vmin=0, vmax=255)
        ax.imshow(row.reshape(side, side).numpy(), cmap="inferno", alpha=0.6, extent=(-0.5, w - 0.5, h - 0.5, -0.5))
        ax.set_title(f"writing {letter!r}", fontsize=8)
    fig.suptitle(f"{title}; cross-attention of the last decoder layer (mean of heads)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def draw_grid(
    grid: Tensor, row_labels: list[str], path: str | Path, title: str, given_rows_pixels: int | None = None
) -> None:
    """Draw ``grid`` (R, C, H, W) of images in [0, 1] as one mosaic (1-pixel grey gaps); a red line marks
    where the given top half of a completion ends (every column but the first)."""
    from tinyformers.viz.plots import plt  # matplotlib is heavy: loaded when a figure is drawn

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


def plot_log_mels(frames: list[Tensor], labels: Tensor, classes: list[str], meta: dict[str, Any], path: str) -> None:
    """The first test clip of every label as a standardised log-mel image (time right, frequency up)."""
    from tinyformers.viz.plots import plt  # matplotlib is heavy: loaded when a figure is drawn

    shown = [(c, frames[int(torch.nonzero(labels == i)[0])]) for i, c in enumerate(classes) if (labels == i).any()]
    cols = min(5, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    seconds_per_frame = meta["hop"] / meta["sample_rate"]
    for ax, (label, f) in zip(axes.flat, shown, strict=False):
        ax.imshow(f.T.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=-2.5, vmax=2.5)
        ax.set_title(f"{label} ({len(f) * seconds_per_frame:.2f} s)", fontsize=9)
    fig.suptitle(f"standardised log-mel, {meta['n_mels']} bands up to {meta['sample_rate'] // 2} Hz", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def draw_cross_attention(cross: list[Tensor], pieces: list[str], rows: list[str], out: Path) -> None:
    """The cross-attention weights (averaged over heads), one panel per decoder layer: row i is the distribution
    over the source tokens ``pieces`` the decoder used to produce target token ``rows[i]``. ``cross`` holds
    n_layers x (1, H, T, S). A file that cannot be written is a :class:`UserError`."""
    from tinyformers.viz.plots import plt, save_figure  # matplotlib is heavy: loaded when a figure is drawn

    n = len(cross)
    fig, axes = plt.subplots(1, n, figsize=(1.5 + 0.35 * len(pieces) * n, 1.5 + 0.3 * len(rows)), squeeze=False)
    for layer, (ax, w) in enumerate(zip(axes[0], cross, strict=True)):
        ax.imshow(w[0].mean(0).float().cpu().numpy(), cmap="Blues", vmin=0, vmax=1)  # (T, S)
        ax.set_xticks(range(len(pieces)), pieces, rotation=90)
        ax.set_yticks(range(len(rows)), rows if layer == 0 else [""] * len(rows))
        ax.set_title(f"decoder layer {layer + 1}")
    fig.tight_layout()
    save_figure(fig, out)
