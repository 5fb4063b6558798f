"""Sanity tasks: copy, reverse and sort a random digit sequence (the Annotated Transformer's habit: prove
the model on a toy with a known answer before trusting it on real data).

Each runs with the encoder-decoder (``--set arch=seq2seq``, the default) or a decoder-only LM
(``--set arch=decoder``, trained on ``<bos> source <sep> target <eos>`` with the prompt masked out of the
loss). Validation and test sequences are fixed by ``data_seed`` and never drawn for training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import torch
from torch import Tensor, nn

from tinyformers.core.models import DecoderConfig, DecoderLM, EncoderDecoder, Seq2SeqConfig
from tinyformers.core.tokenizers import CharTokenizer
from tinyformers.engine.task import (
    ModelSizes,
    Predicts,
    Scorecard,
    Task,
    TaskData,
    TrainConfig,
    ViewsAttention,
)
from tinyformers.errors import UserError
from tinyformers.tasks._digits import BOS, EOS, PAD, SEP, SPECIALS, digit_rows, encode_digits, sequence_keys
from tinyformers.viz.views import part_paths, save_attention_views


@dataclass
class SanityConfig(ModelSizes, TrainConfig):
    """Attributes:
    arch: 'seq2seq' or 'decoder'. min_digits, max_digits: sequence lengths drawn uniformly.
    n_val, n_test: held-out sequences. data_seed: fixes the held-out sets.
    norm_first: pre-norm blocks (the sizes: :class:`~tinyformers.engine.task.ModelSizes`' defaults).
    positions: 'auto' = sinusoidal for seq2seq (cross-attention aligns target i with source i by absolute
        position) and rotary for decoder-only (the answer's i-th digit sits a length-dependent distance back,
        which relative positions express directly: with sinusoidal ones copy/reverse stayed at 0% after
        1,500 steps, with rotary they reach 100% — see docs/benchmarks.md).
    """

    arch: str = "seq2seq"
    min_digits: int = 3
    max_digits: int = 10
    n_val: int = 500
    n_test: int = 1000
    data_seed: int = 0
    norm_first: bool = True
    positions: str = "auto"
    max_steps: int = 2000
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 100
    eval_every: int = 250
    weight_decay: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.arch not in ("seq2seq", "decoder"):
            raise ValueError(f"arch={self.arch!r}: choose seq2seq or decoder")
        if not 1 <= self.min_digits <= self.max_digits:
            raise ValueError("need 1 <= min_digits <= max_digits")
        if self.n_val < 1 or self.n_test < 1:
            raise ValueError("n_val and n_test must be >= 1")


def _tokenizer() -> CharTokenizer:
    return CharTokenizer("0123456789", SPECIALS)


class SequenceTask(Task[SanityConfig], Predicts, ViewsAttention):
    """Shared by copy, reverse and sort: only :meth:`transform` differs."""

    Config: ClassVar[type[TrainConfig]] = SanityConfig
    predict_options: ClassVar[tuple[str, ...]] = ()
    metric: ClassVar[str] = "exact_match"
    maximize: ClassVar[bool] = True
    eval_inference_mode: ClassVar[bool] = True  # evaluate() makes nothing training uses later (fixed position tables)
    scorecard: ClassVar[Scorecard | None] = Scorecard(
        "test_exact_match",
        baselines=("baseline_exact_match",),
        limit_value=1.0,  # a deterministic answer: exact match can reach 1; copy's baseline (the input) does
        tolerance=0.005,
        quick=("n_val=20", "n_test=20", "d_model=32", "n_heads=2", "n_layers=1", "d_ff=64"),
        summary="A toy with a known answer proves the model works (held-out exact match; baseline: the input).",
    )

    @staticmethod
    def transform(digits: Tensor, lengths: Tensor) -> Tensor:
        """The answers (B, W) to the rows of ``digits`` (B, W), row i's first ``lengths[i]`` digits (the rest is
        padding, ignored in and out)."""
        raise NotImplementedError

    # --- data: a batch is built from tensors, without a loop over its rows ---------------------------------
    def _draw(self, cfg: SanityConfig, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        lengths = torch.randint(cfg.min_digits, cfg.max_digits + 1, (n,), generator=gen)
        digits = torch.randint(0, 10, (n, cfg.max_digits), generator=gen)
        return digits * (torch.arange(cfg.max_digits) < lengths[:, None]), lengths  # (n, max_digits): 0 past the end

    def data(self, cfg: SanityConfig, meta: dict[str, Any] | None = None) -> TaskData:
        gen = torch.Generator().manual_seed(cfg.data_seed)
        held_out: list[tuple[int, ...]] = []
        seen: set[tuple[int, ...]] = set()
        while len(held_out) < cfg.n_val + cfg.n_test:  # distinct held-out sequences
            digits, lengths = self._draw(cfg, cfg.n_val + cfg.n_test, gen)
            for s in (tuple(row[:k]) for row, k in zip(digits.tolist(), lengths.tolist(), strict=True)):
                if s not in seen and len(held_out) < cfg.n_val + cfg.n_test:
                    seen.add(s)
                    held_out.append(s)
        exclude = set(map(tuple, sequence_keys(*digit_rows(held_out, cfg.max_digits)).tolist()))  # batch()'s width
        splits = {"val": held_out[: cfg.n_val], "test": held_out[cfg.n_val :], "exclude": exclude}
        return TaskData(splits, {"tokenizer": _tokenizer().to_dict()})

    def batch(self, data: TaskData, cfg: SanityConfig, generator: torch.Generator) -> dict[str, Tensor]:
        digits, lengths = torch.empty(0, cfg.max_digits, dtype=torch.long), torch.empty(0, dtype=torch.long)
        while len(lengths) < cfg.batch_size:  # training never sees a held-out sequence
            d, k = self._draw(cfg, cfg.batch_size, generator)
            keys = map(tuple, sequence_keys(d, k).tolist())
            fresh = torch.tensor([key not in data.splits["exclude"] for key in keys])
            digits, lengths = torch.cat([digits, d[fresh]]), torch.cat([lengths, k[fresh]])
        width = int(lengths[: cfg.batch_size].max())
        return self.encode(cfg, digits[: cfg.batch_size, :width], lengths[: cfg.batch_size])

    def encode(self, cfg: SanityConfig, digits: Tensor, lengths: Tensor) -> dict[str, Tensor]:
        """Token tensors for source digits (B, W) of ``lengths`` (B,), W = the longest; targets by :meth:`transform`."""
        return encode_digits(cfg.arch, digits, self.transform(digits, lengths), lengths)

    def _encode_seqs(self, cfg: SanityConfig, seqs: list[tuple[int, ...]]) -> tuple[dict[str, Tensor], list[list[int]]]:
        """:meth:`encode` of held-out sequences, and their answers as digit lists."""
        digits, lengths = digit_rows(seqs)
        answers = self.transform(digits, lengths).tolist()
        return self.encode(cfg, digits, lengths), [a[:k] for a, k in zip(answers, lengths.tolist(), strict=True)]

    # --- model ------------------------------------------------------------------------------------
    def model(self, cfg: SanityConfig, meta: dict[str, Any]) -> nn.Module:
        vocab = len(_tokenizer())
        positions = cfg.positions
        if positions == "auto":
            positions = "sinusoidal" if cfg.arch == "seq2seq" else "rotary"
        core = {**cfg.sizes(), "norm_first": cfg.norm_first, "positions": positions}
        if cfg.arch == "seq2seq":
            return EncoderDecoder(
                Seq2SeqConfig(
                    **core,
                    max_len=cfg.max_digits * 2 + 2,
                    src_vocab_size=vocab,
                    tgt_vocab_size=vocab,
                    share_embeddings=True,
                    pad_id=PAD,
                    bos_id=BOS,
                    eos_id=EOS,
                    activation="relu",
                )
            )
        return DecoderLM(DecoderConfig(**core, max_len=cfg.max_digits * 4 + 4, vocab_size=vocab))

    # --- evaluation -------------------------------------------------------------------------------
    def solve(self, model: nn.Module, cfg: SanityConfig, sources: list[list[int]]) -> list[list[int]]:
        """Greedy answers for digit lists, batched by length (so no prompt needs padding)."""
        off = len(SPECIALS)
        answers: list[list[int]] = [[] for _ in sources]
        by_len: dict[int, list[int]] = {}
        for i, s in enumerate(sources):
            by_len.setdefault(len(s), []).append(i)
        device = next(model.parameters()).device
        lm = cast(EncoderDecoder | DecoderLM, model)  # what model() built for cfg.arch
        for n, idx in by_len.items():
            digits = torch.tensor([[off + d for d in sources[i]] for i in idx], device=device)
            if cfg.arch == "seq2seq":
                out = lm.generate(digits, max_new_tokens=n + 1)
            else:
                prompt = torch.cat(
                    [
                        torch.full((len(idx), 1), BOS, device=device),
                        digits,
                        torch.full((len(idx), 1), SEP, device=device),
                    ],
                    dim=1,
                )
                out = lm.generate(prompt, max_new_tokens=n + 1, eos_token_id=EOS)[:, prompt.size(1) :]
            for i, row in zip(idx, out.tolist(), strict=True):
                row = row[: row.index(EOS)] if EOS in row else row
                answers[i] = [t - off if t >= off else -1 for t in row]
        return answers

    def evaluate(self, model: nn.Module, data: TaskData, split: str, cfg: SanityConfig) -> dict[str, float]:
        seqs: list[tuple[int, ...]] = data.splits[split]
        losses, targets = [], []
        for i in range(0, len(seqs), 256):
            batch, answers = self._encode_seqs(cfg, seqs[i : i + 256])
            targets += answers
            device = next(model.parameters()).device
            losses.append(model(**{k: v.to(device) for k, v in batch.items()}).loss.item())
        answers = self.solve(model, cfg, [list(s) for s in seqs])
        exact = sum(a == t for a, t in zip(answers, targets, strict=True)) / len(seqs)
        identity = sum(list(s) == t for s, t in zip(seqs, targets, strict=True)) / len(seqs)
        return {
            f"{split}_loss": sum(losses) / len(losses),
            f"{split}_exact_match": exact,
            "baseline_exact_match": identity,  # answering with the input unchanged
        }

    def predict(
        self, model: nn.Module, cfg: SanityConfig, meta: dict[str, Any], inputs: list[str], **options: Any
    ) -> list[str]:
        sources = []
        for text in inputs:
            text = text.strip()
            if not text or not text.isdigit() or not text.isascii():
                raise UserError(f"{text!r}: give a sequence of digits, e.g. 31415")
            if len(text) > cfg.max_digits * 2:
                raise UserError(f"{text!r}: at most {cfg.max_digits * 2} digits (trained on up to {cfg.max_digits})")
            sources.append([int(c) for c in text])
        return ["".join(str(d) if d >= 0 else "?" for d in a) for a in self.solve(model, cfg, sources)]

    def attention(
        self, model: nn.Module, cfg: SanityConfig, meta: dict[str, Any], text: str, out: Path, html: Path | None = None
    ) -> list[str]:
        """Answer the digit sequence ``text`` greedily, then draw the attention of the pass that reads the answer.

        Decoder-only: one view of ``<bos> source <sep> answer <eos>``. Encoder-decoder: three views, named
        after ``out`` (``a.png`` -> ``a-encoder.png``, ``a-decoder.png``, ``a-cross.png``, the same for ``html``):
        the encoder's self-attention over the source, the decoder's causal self-attention over
        ``<bos> answer``, and the cross-attention from those decoder positions to the source.
        """
        text = text.strip()
        self.predict(model, cfg, meta, [text])  # checks the input as predict does (a one-line error if bad)
        tok, off = _tokenizer(), len(SPECIALS)
        digits = torch.tensor([[off + int(c) for c in text]], device=next(model.parameters()).device)  # (1, S)
        lm = cast(EncoderDecoder | DecoderLM, model)  # what model() built for cfg.arch
        with torch.no_grad():
            if cfg.arch == "decoder":
                bos, sep = torch.full_like(digits[:, :1], BOS), torch.full_like(digits[:, :1], SEP)
                prompt = torch.cat([bos, digits, sep], dim=1)
                ids = lm.generate(prompt, max_new_tokens=len(text) + 1, eos_token_id=EOS)[0].tolist()
                ids = ids[: ids.index(EOS, prompt.size(1)) + 1] if EOS in ids[prompt.size(1) :] else ids
                output = model(torch.tensor([ids], device=digits.device), output_attentions=True)
                pieces = [tok.itos[i] for i in ids]
                title = f"{self.name}: decoder-only causal self-attention"
                return save_attention_views(pieces, [w[0] for w in output.attentions], out, html, title=title)
            answer = lm.generate(digits, max_new_tokens=len(text) + 1)[0].tolist()  # ends with <eos> if done
            answer = answer[: answer.index(EOS) + 1] if EOS in answer else answer
            labels = torch.tensor([answer], device=digits.device)
            output = model(digits, labels, output_attentions=True)  # decoder inputs: <bos> + answer[:-1]
        source = [tok.itos[i] for i in digits[0].tolist()]
        decoder_inputs = [tok.itos[i] for i in [BOS, *answer[:-1]]]
        n = len(output.cross_attentions)
        encoder, decoder = output.attentions[:n], output.attentions[n:]  # n_layers x (1, H, T, S) each
        views = [
            ("encoder", source, encoder, None, "encoder self-attention over the source"),
            ("decoder", decoder_inputs, decoder, None, "decoder causal self-attention"),
            ("cross", source, output.cross_attentions, decoder_inputs, "cross-attention, decoder -> source"),
        ]
        written = []
        for part, keys, weights, queries, what in views:
            png, page = part_paths(out, html, part)
            written += save_attention_views(
                keys, [w[0] for w in weights], png, page, query_tokens=queries, title=f"{self.name}: {what}"
            )
        return written


class CopyTask(SequenceTask):
    name = "copy"
    summary = "copy a digit sequence (sanity check of an encoder-decoder or decoder-only model)"

    @staticmethod
    def transform(digits: Tensor, lengths: Tensor) -> Tensor:
        return digits


class ReverseTask(SequenceTask):
    name = "reverse"
    summary = "reverse a digit sequence (needs positions: a bag of digits cannot do it)"

    @staticmethod
    def transform(digits: Tensor, lengths: Tensor) -> Tensor:
        return digits.gather(1, (lengths[:, None] - 1 - torch.arange(digits.size(1))).clamp(min=0))


class SortTask(SequenceTask):
    name = "sort"
    summary = "sort a digit sequence (needs to compare and count tokens)"

    @staticmethod
    def transform(digits: Tensor, lengths: Tensor) -> Tensor:
        return digits.masked_fill(torch.arange(digits.size(1)) >= lengths[:, None], 10).sort(dim=1).values


TASKS = (CopyTask, ReverseTask, SortTask)
