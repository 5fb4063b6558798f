"""Tokenizers: characters (a stable, sorted vocabulary) and subwords (BPE, trained with HF ``tokenizers``).

Both save to and load from a plain dict, stored in a run's ``config.json``, so a trained model always
comes back with exactly the vocabulary it was trained with.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from tinyformers.errors import UserError


class CharTokenizer:
    """One token per character. ``specials`` (e.g. ``<pad>``) come first, then the characters sorted.

    Sorting makes the vocabulary independent of the order characters were seen in (one source project
    built it from a ``set()``, so ids changed between runs and saved models decoded garbage).
    """

    kind = "char"

    def __init__(self, chars: Iterable[str], specials: Sequence[str] = ()) -> None:
        self.specials = list(specials)
        self.chars = sorted(set(chars) - set(self.specials))
        self.itos = self.specials + self.chars
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    @classmethod
    def from_text(cls, text: str, specials: Sequence[str] = ()) -> CharTokenizer:
        return cls(set(text), specials)

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """Character ids; characters outside the vocabulary raise a :class:`UserError` naming them."""
        unknown = sorted({c for c in text if c not in self.stoi})
        if unknown:
            shown = ", ".join(repr(c) for c in unknown[:10])
            raise UserError(f"{len(unknown)} character(s) not in the model's vocabulary: {shown}")
        return [self.stoi[c] for c in text]

    def decode(self, ids: Iterable[int], skip_specials: bool = True) -> str:
        n = len(self.specials)
        return "".join(self.itos[i] for i in ids if not (skip_specials and i < n))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "chars": "".join(self.chars), "specials": self.specials}

    @classmethod
    def from_dict(cls, d: dict) -> CharTokenizer:
        return cls(d["chars"], d.get("specials", ()))


class BPETokenizer:
    """Byte-level BPE (GPT-2's scheme) trained with HF ``tokenizers``: any text encodes, nothing is unknown."""

    kind = "bpe"

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    @classmethod
    def train(cls, text: str, vocab_size: int) -> BPETokenizer:
        tk = Tokenizer(models.BPE())
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
        )
        tk.train_from_iterator(_chunks(text), trainer)
        return cls(tk)

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def vocab_size(self) -> int:
        return len(self)

    def encode(self, text: str) -> list[int]:
        return [i for enc in self.tokenizer.encode_batch(list(_chunks(text))) for i in enc.ids]

    def decode(self, ids: Iterable[int], skip_specials: bool = True) -> str:
        return self.tokenizer.decode(list(ids))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "json": self.tokenizer.to_str()}

    @classmethod
    def from_dict(cls, d: dict) -> BPETokenizer:
        return cls(Tokenizer.from_str(d["json"]))


class HFTokenizer(BPETokenizer):
    """A pretrained model's own ``tokenizer.json`` (any model HF ``tokenizers`` reads: byte-level BPE,
    SentencePiece-style BPE...). :meth:`encode` adds no special tokens (a training text gets no ``<s>`` in
    the middle); :meth:`prompt_prefix` gives those the tokenizer puts before a prompt."""

    kind = "hf"

    @classmethod
    def from_file(cls, path: str | Path) -> HFTokenizer:
        return cls(Tokenizer.from_file(str(path)))

    def encode(self, text: str) -> list[int]:
        chunks = list(_chunks(text))
        return [i for enc in self.tokenizer.encode_batch(chunks, add_special_tokens=False) for i in enc.ids]

    def prompt_prefix(self) -> list[int]:
        """The special tokens the tokenizer adds before a text (Llama's ``<s>``; none for Qwen2's)."""
        with_specials = self.tokenizer.encode("a").ids
        plain = self.tokenizer.encode("a", add_special_tokens=False).ids
        return with_specials[: len(with_specials) - len(plain)] if with_specials[-len(plain) :] == plain else []


def _chunks(text: str, size: int = 8192) -> Iterable[str]:
    """Pieces of ``text`` cut after a newline, which concatenate back to ``text`` exactly."""
    start = 0
    while start < len(text):
        end = text.find("\n", start + size)
        end = len(text) if end == -1 else end + 1
        yield text[start:end]
        start = end


def tokenizer_from_dict(d: dict) -> CharTokenizer | BPETokenizer:
    """Rebuild the tokenizer saved in a run's ``config.json``."""
    kinds: dict[str, type[CharTokenizer] | type[BPETokenizer]] = {
        "char": CharTokenizer,
        "bpe": BPETokenizer,
        "hf": HFTokenizer,
    }
    kind = d.get("kind") if isinstance(d, dict) else None
    if kind not in kinds:
        raise UserError(f"unknown tokenizer kind {kind!r} in config.json")
    try:
        return kinds[kind].from_dict(d)
    except Exception as e:  # a missing field (KeyError); HF tokenizers raises a bare Exception for bad JSON
        raise UserError(f"the {kind} tokenizer in config.json is unreadable ({type(e).__name__}: {e})") from None
