"""Decoding: turn a model's next-token distribution into sequences — greedy, sampling and beam search.

Every option has Hugging Face's name and meaning (``transformers.GenerationMixin.generate``), so a recipe
written for HF works here unchanged:

* **greedy** (``do_sample=False, num_beams=1``): append ``argmax_v score(v)``.
* **multinomial sampling** (``do_sample=True``): append a draw from ``softmax(score)``, after the
  warpers temperature -> top-k -> top-p -> min-p -> typical-p. As in HF, ``top_k`` is 50 unless given
  (``top_k=None`` or 0 samples from the whole vocabulary).
* **beam search** (``num_beams > 1``): keep the ``num_beams`` most probable partial sequences; a finished
  hypothesis with ``L`` new tokens (its eos included) scores ``sum(log p) / L ** length_penalty``.
* **beam sampling** (``do_sample=True, num_beams > 1``): beam search whose candidates are drawn, not
  the most probable.

The logits processors run in HF's order: ``repetition_penalty``, ``no_repeat_ngram_size``, then for
sampling only ``temperature``, ``top_k``, ``top_p``, ``min_p``, ``typical_p``. Greedy and sampling process
the raw logits, beam search the log-probabilities (as HF).

One loop per algorithm serves both model families: a :class:`NextTokenLogits` object maps "all tokens so
far" to "logits of the next token" and hides the model family, the KV cache and the sliding window.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, NamedTuple, Protocol, get_args, get_type_hints

import torch
from torch import Tensor, nn

from tinyformers.core.attention import KVCache

__all__ = [
    "GenerateOutput",
    "Flag",
    "GenerationConfig",
    "LogitsProcessor",
    "LogitsProcessorList",
    "MinPLogitsWarper",
    "NextTokenLogits",
    "NoRepeatNGramLogitsProcessor",
    "RepetitionPenaltyLogitsProcessor",
    "TemperatureLogitsWarper",
    "TopKLogitsWarper",
    "TopPLogitsWarper",
    "TypicalLogitsWarper",
    "generate",
    "generate_seq2seq",
]

Streamer = Callable[[Tensor], object]


# --------------------------------------------------------------------------------------------------------
# Logits processors: (input_ids (N, L), scores (N, V)) -> scores (N, V). Removed tokens get -inf.
# --------------------------------------------------------------------------------------------------------


class LogitsProcessor(Protocol):
    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor: ...


class LogitsProcessorList(list[LogitsProcessor]):
    """Processors applied one after the other (HF's ``LogitsProcessorList``)."""

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        for processor in self:
            scores = processor(input_ids, scores)
        return scores


class RepetitionPenaltyLogitsProcessor:
    """CTRL's repetition penalty (Keskar et al. 2019) with HF's meaning.

    Every token already present in ``input_ids`` (prompt included) has its score *divided* by ``penalty``
    if positive and *multiplied* by it if negative, so ``penalty > 1`` always makes a repeat less likely
    and ``penalty < 1`` more likely. A token is penalised once, however often it occurs.
    """

    def __init__(self, penalty: float) -> None:
        if not penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0, got {penalty}")
        self.penalty = float(penalty)

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        present = scores.gather(1, input_ids)  # (N, L): the score of every token in the sequence
        penalised = torch.where(present < 0, present * self.penalty, present / self.penalty)
        return scores.scatter(1, input_ids, penalised)  # duplicates write the same value


class NoRepeatNGramLogitsProcessor:
    """Ban every token that would complete an n-gram already in ``input_ids`` (HF's meaning).

    With ``ngram_size = n``, the next token ``v`` is banned if ``(last n-1 tokens, v)`` occurs anywhere in
    the sequence; with ``n = 1`` every token already present is banned. Nothing is banned while the
    sequence is shorter than ``n`` (no complete n-gram yet).
    """

    def __init__(self, ngram_size: int) -> None:
        if not (isinstance(ngram_size, int) and ngram_size > 0):
            raise ValueError(f"no_repeat_ngram_size must be a positive integer here, got {ngram_size}")
        self.n = ngram_size

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        n, length = self.n, input_ids.size(1)
        if length < n:
            return scores
        ngrams = input_ids.unfold(1, n, 1)  # (N, length - n + 1, n): every n-gram of each row
        suffix = input_ids[:, length - n + 1 :]  # (N, n - 1): what the next token would extend
        extends = (ngrams[:, :, :-1] == suffix[:, None, :]).all(-1)  # (N, length - n + 1)
        rows, starts = extends.nonzero(as_tuple=True)
        banned = torch.zeros_like(scores, dtype=torch.bool)
        banned[rows, ngrams[rows, starts, -1]] = True
        return scores.masked_fill(banned, float("-inf"))


class TemperatureLogitsWarper:
    """``scores / temperature``: below 1 sharpens the distribution, above 1 flattens it (HF's meaning)."""

    def __init__(self, temperature: float) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {temperature} (use do_sample=False)")
        self.temperature = float(temperature)

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        return scores / self.temperature


class TopKLogitsWarper:
    """Keep the ``top_k`` highest scores of each row (Fan et al. 2018), HF's meaning.

    Ties: every score ``>=`` the k-th largest is kept, so a tie at the k-th value keeps *more* than k
    tokens (HF's behaviour; ``torch.topk`` alone would keep exactly k, breaking ties by index).
    At least ``min_tokens_to_keep`` tokens are kept.
    """

    def __init__(self, top_k: int, min_tokens_to_keep: int = 1) -> None:
        if not (isinstance(top_k, int) and top_k >= 1):
            raise ValueError(f"top_k must be an integer >= 1 (or None to disable), got {top_k}")
        self.top_k = max(top_k, min_tokens_to_keep)

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        k = min(self.top_k, scores.size(-1))
        kth_largest = scores.topk(k, dim=-1).values[:, -1:]  # (N, 1)
        return scores.masked_fill(scores < kth_largest, float("-inf"))


class TopPLogitsWarper:
    """Nucleus filtering (Holtzman et al. 2020), HF's formulation bit for bit: keep the smallest set of most
    probable tokens whose total probability reaches ``top_p``; always at least ``min_tokens_to_keep``.

    Computed from the bottom, as HF: sort ascending and remove every token whose cumulative probability
    (itself and all less probable tokens) is ``<= 1 - top_p``. Tokens tied at the cut-off are ordered by
    ``torch.sort``, so a tie keeps the *highest*-index tokens (HF's choice; ``TopPLogitsWarper(0.5)`` on 8
    equal scores keeps tokens 4-7).
    """

    def __init__(self, top_p: float, min_tokens_to_keep: int = 1) -> None:
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.top_p, self.min_tokens_to_keep = float(top_p), min_tokens_to_keep

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        sorted_scores, order = scores.sort(dim=-1)  # ascending: least probable first
        mass_below = sorted_scores.softmax(dim=-1).cumsum(dim=-1)  # each token and every less probable one
        remove_sorted = mass_below <= 1 - self.top_p
        remove_sorted[:, -self.min_tokens_to_keep :] = False
        remove = remove_sorted.scatter(1, order, remove_sorted)  # back to vocabulary order
        return scores.masked_fill(remove, float("-inf"))


class MinPLogitsWarper:
    """Min-p sampling (Nguyen et al. 2024), HF's meaning: keep the tokens whose probability is at least
    ``min_p`` times the most probable token's, ``p(v) >= min_p * max_u p(u)``; always the
    ``min_tokens_to_keep`` most probable. The cut-off follows the model's confidence: strict when one token
    dominates, loose when many are plausible.
    """

    def __init__(self, min_p: float, min_tokens_to_keep: int = 1) -> None:
        if not 0 <= min_p <= 1:
            raise ValueError(f"min_p must be in [0, 1], got {min_p}")
        self.min_p, self.min_tokens_to_keep = float(min_p), min_tokens_to_keep

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        probs = scores.softmax(dim=-1)
        remove = probs < self.min_p * probs.amax(dim=-1, keepdim=True)
        best = probs.topk(min(self.min_tokens_to_keep, probs.size(-1)), dim=-1).indices
        remove.scatter_(1, best, False)
        return scores.masked_fill(remove, float("-inf"))


class TypicalLogitsWarper:
    """Locally typical sampling (Meister et al. 2023), HF's meaning: rank tokens by how close their
    information ``-log p(v)`` is to the distribution's entropy ``H = -sum p log p``, and keep the closest
    ones until their total probability reaches ``typical_p`` (the token that crosses it is kept, with every
    token as close as it); always at least ``min_tokens_to_keep``.
    """

    def __init__(self, typical_p: float, min_tokens_to_keep: int = 1) -> None:
        if not 0 < typical_p < 1:
            raise ValueError(f"typical_p must be in (0, 1) here (1 disables it in GenerationConfig), got {typical_p}")
        self.typical_p, self.min_tokens_to_keep = float(typical_p), min_tokens_to_keep

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        log_p = scores.log_softmax(dim=-1)
        entropy = -(log_p * log_p.exp()).nansum(dim=-1, keepdim=True)  # 0 * -inf = nan counts as 0
        distance = (-log_p - entropy).abs()  # |information - entropy|
        sorted_distance, order = distance.sort(dim=-1)  # most typical first
        mass = scores.gather(1, order).softmax(dim=-1).cumsum(dim=-1)
        last = (mass < self.typical_p).sum(dim=1, keepdim=True).clamp(max=scores.size(-1) - 1)  # crosses p
        remove_sorted = sorted_distance > sorted_distance.gather(1, last)
        remove_sorted[:, : self.min_tokens_to_keep] = False
        remove = remove_sorted.scatter(1, order, remove_sorted)
        return scores.masked_fill(remove, float("-inf"))


# --------------------------------------------------------------------------------------------------------
# Settings and result
# --------------------------------------------------------------------------------------------------------


class Flag(NamedTuple):
    """How a decoding option appears on the ``tinyformers generate`` command line (``--top-k`` for ``top_k``).

    ``help`` is its ``--help`` line (None: listed without one); ``default`` the command's default when it
    differs from the library's (``MISSING``: the library's).
    """

    help: str | None = None
    default: Any = MISSING


def _option(default: Any, help: str, flag: Flag | None = None, request: bool = False) -> Any:
    """A :class:`GenerationConfig` field. ``help`` documents it (and goes into the class docstring); with
    ``flag`` it is a ``tinyformers generate`` flag; with ``request`` a request field of ``tinyformers serve``."""
    return field(default=default, metadata={"help": help, "flag": flag, "request": request})


@dataclass
class GenerationConfig:
    """Decoding settings, HF's names, meanings and defaults. :meth:`validate` raises ``ValueError`` on a bad
    value.

    This is the one declaration of the decoding options: :func:`generate` and :func:`generate_seq2seq` take
    them as keyword arguments, ``tinyformers generate`` makes its flags from the fields that have a
    :class:`Flag` and ``tinyformers serve`` accepts the ``request`` ones, so a new option is one new field.

    Attributes:
    """

    max_new_tokens: int = _option(20, "tokens to generate at most (0 returns the prompt unchanged).", Flag(default=200))
    do_sample: bool = _option(
        False, "sample instead of taking the most probable token.", Flag("sample instead of greedy / beam search")
    )
    temperature: float = _option(
        1.0,
        "divide the logits by this before sampling; must be > 0 when sampling. Ignored (as every sampling "
        "option: top_k, top_p, min_p, typical_p) without sampling, so ``temperature=0`` with greedy is fine.",
        Flag(),
    )
    top_k: int | None = _option(
        50,
        "sample only among the ``top_k`` most probable tokens (ties at the k-th kept). 50 by default when "
        "sampling, as HF's ``generate``, so a recipe written for HF samples the same here; ``top_k=0`` or "
        "``None`` samples from the whole vocabulary.",
        Flag("sample among the k most likely tokens", default=None),
        request=True,
    )
    top_p: float | None = _option(
        None,
        "sample only from the nucleus of probability ``top_p``, in (0, 1]; None or 1 disables.",
        Flag("sample among the smallest set of tokens with probability >= p"),
        request=True,
    )
    min_p: float | None = _option(
        None,
        "sample only among tokens with probability >= ``min_p`` x the most probable token's, in [0, 1]; "
        "None disables. See :class:`MinPLogitsWarper`.",
        Flag("sample among tokens with probability >= p x the most likely token's"),
        request=True,
    )
    typical_p: float | None = _option(
        None,
        "locally typical sampling with mass ``typical_p``, in (0, 1]; None or 1 disables. See "
        ":class:`TypicalLogitsWarper`.",
        Flag("sample among the most typical tokens, of total probability >= p"),
        request=True,
    )
    repetition_penalty: float = _option(
        1.0,
        "> 0; 1 disables. See :class:`RepetitionPenaltyLogitsProcessor`.",
        Flag("> 1 discourages repeated tokens"),
        request=True,
    )
    no_repeat_ngram_size: int = _option(
        0,
        ">= 0; 0 disables. See :class:`NoRepeatNGramLogitsProcessor`.",
        Flag("never repeat an n-gram of this size"),
        request=True,
    )
    num_beams: int = _option(1, "1 = greedy/sampling, more = beam search.", Flag("beam search with this many beams"))
    length_penalty: float = _option(
        1.0,
        "beam search scores a finished hypothesis ``sum(log p) / L ** length_penalty`` (``L`` = new tokens "
        "including eos); > 0 favours longer sequences, < 0 shorter ones.",
        Flag("beam score = log p / length ** this"),
    )
    early_stopping: bool | str = _option(
        False,
        "beam search's stop rule for a prompt, as HF. True: stop as soon as ``num_beams`` hypotheses are "
        "finished. False (default): once ``num_beams`` are finished, stop when the best running beam, scored "
        "at its current length, cannot beat the worst of them (a heuristic when length_penalty > 0, as "
        'scores can still grow). "never": as False, but with length_penalty > 0 the running beam is scored '
        "at the maximum length, an upper bound. With length_penalty = 0 the rule is exact (log-probabilities "
        "only decrease).",
    )
    num_return_sequences: int = _option(
        1,
        "sequences per prompt: independent samples when sampling, the best hypotheses with beam search "
        "(<= num_beams); must be 1 for greedy.",
        Flag(),
    )
    eos_token_id: int | Sequence[int] | None = _option(
        None, "token id(s) that end a sequence; None = generate exactly ``max_new_tokens``."
    )
    pad_token_id: int | None = _option(
        None, "fills a finished sequence's remaining positions; defaults to the first eos id."
    )
    use_cache: bool = _option(True, "decode incrementally with a KV cache (same tokens as without, faster).")

    @classmethod
    def option_type(cls, name: str) -> type:
        """The scalar type of option ``name``: ``bool``, ``int`` or ``float`` (the first of its annotation's)."""
        hint = get_type_hints(cls)[name]
        args = get_args(hint) or (hint,)
        return next(t for t in (bool, int, float, str) if t in args)

    @classmethod
    def from_options(cls, config: GenerationConfig | None = None, **options: Any) -> GenerationConfig:
        """``config`` (default: the defaults) with ``options`` replacing its fields; TypeError names an
        unknown option."""
        if config is not None and not isinstance(config, GenerationConfig):
            raise TypeError(f"config must be a GenerationConfig, got {type(config).__name__}; pass options by name")
        names = {f.name for f in fields(cls)}
        for key in options:
            if key not in names:
                raise TypeError(f"unknown decoding option {key!r}; the options are: {', '.join(sorted(names))}")
        return replace(config or cls(), **options)

    def validate(self) -> None:
        def is_int(x: object) -> bool:
            return isinstance(x, int) and not isinstance(x, bool)

        def is_number(x: object) -> bool:
            return isinstance(x, (int, float)) and not isinstance(x, bool)

        if not (is_int(self.max_new_tokens) and self.max_new_tokens >= 0):
            raise ValueError(f"max_new_tokens must be an integer >= 0, got {self.max_new_tokens}")
        if not (is_int(self.num_beams) and self.num_beams >= 1):
            raise ValueError(f"num_beams must be an integer >= 1, got {self.num_beams}")
        if not (is_int(self.num_return_sequences) and self.num_return_sequences >= 1):
            raise ValueError(f"num_return_sequences must be an integer >= 1, got {self.num_return_sequences}")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise ValueError(f"num_return_sequences={self.num_return_sequences} must be <= num_beams={self.num_beams}")
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences > 1:
            raise ValueError("greedy decoding returns one sequence per prompt: use do_sample=True or num_beams > 1")
        if self.do_sample and not (is_number(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature} (use do_sample=False)")
        if self.top_k is not None and not (is_int(self.top_k) and self.top_k >= 0):
            raise ValueError(f"top_k must be an integer >= 1 (0 or None disables it), got {self.top_k}")
        if self.top_p is not None and not (is_number(self.top_p) and 0 < self.top_p <= 1):
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.min_p is not None and not (is_number(self.min_p) and 0 <= self.min_p <= 1):
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}")
        if self.typical_p is not None and not (is_number(self.typical_p) and 0 < self.typical_p <= 1):
            raise ValueError(f"typical_p must be in (0, 1], got {self.typical_p}")
        if not (is_number(self.repetition_penalty) and self.repetition_penalty > 0):
            raise ValueError(f"repetition_penalty must be > 0 (1 disables it), got {self.repetition_penalty}")
        if not (is_int(self.no_repeat_ngram_size) and self.no_repeat_ngram_size >= 0):
            raise ValueError(f"no_repeat_ngram_size must be an integer >= 0, got {self.no_repeat_ngram_size}")
        if not (is_number(self.length_penalty) and math.isfinite(self.length_penalty)):
            raise ValueError(f"length_penalty must be a finite number, got {self.length_penalty}")
        if self.early_stopping not in (True, False, "never"):
            raise ValueError(f"early_stopping must be True, False or 'never', got {self.early_stopping!r}")
        self.eos_ids()  # raises on a bad eos_token_id
        if self.pad_token_id is not None and not (is_int(self.pad_token_id) and self.pad_token_id >= 0):
            raise ValueError(f"pad_token_id must be a token id >= 0, got {self.pad_token_id}")

    def eos_ids(self) -> list[int]:
        """``eos_token_id`` as a list (empty for None); ValueError unless it is ids >= 0."""
        eos = self.eos_token_id
        if eos is None:
            return []
        if isinstance(eos, Tensor):
            eos = eos.flatten().tolist()
        ids = [eos] if isinstance(eos, int) else list(eos) if isinstance(eos, (list, tuple)) else None
        if not ids or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
            raise ValueError(f"eos_token_id must be a token id >= 0 or a non-empty list of them, got {eos}")
        return ids

    def pad_id(self) -> int:
        """The padding token: ``pad_token_id``, else the first eos (HF), else 0 (then never needed)."""
        if self.pad_token_id is not None:
            return self.pad_token_id
        return self.eos_ids()[0] if self.eos_ids() else 0

    def logits_processors(self) -> LogitsProcessorList:
        """The processors these settings ask for, in HF's order (warpers only when sampling)."""
        processors = LogitsProcessorList()
        if self.repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(self.repetition_penalty))
        if self.no_repeat_ngram_size > 0:
            processors.append(NoRepeatNGramLogitsProcessor(self.no_repeat_ngram_size))
        if self.do_sample:
            # Beam sampling keeps one token more than the eos ids, so a beam can always continue (HF).
            keep = len(self.eos_ids()) + 1 if self.num_beams > 1 else 1
            if self.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(self.temperature))
            if self.top_k:  # None or 0: no top-k
                processors.append(TopKLogitsWarper(self.top_k, keep))
            if self.top_p is not None and self.top_p < 1.0:
                processors.append(TopPLogitsWarper(self.top_p, keep))
            if self.min_p is not None:
                processors.append(MinPLogitsWarper(self.min_p, keep))
            if self.typical_p is not None and self.typical_p < 1.0:
                processors.append(TypicalLogitsWarper(self.typical_p, keep))
        return processors


def _document_options(cls: type) -> None:
    """Append each field's help to the class docstring's ``Attributes:`` (the source keeps it by the field)."""
    lines = [
        textwrap.fill(f"{f.name}: {f.metadata['help']}", 104, initial_indent=" " * 8, subsequent_indent=" " * 12)
        for f in fields(cls)
    ]
    cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n" + "\n".join(lines) + "\n"


_document_options(GenerationConfig)


@dataclass
class GenerateOutput:
    """``sequences`` (N, L); ``sequences_scores`` (N,) the length-penalised beam scores (beam search only)."""

    sequences: Tensor
    sequences_scores: Tensor | None = None


# --------------------------------------------------------------------------------------------------------
# "All tokens so far" -> "logits of the next token", for both model families
# --------------------------------------------------------------------------------------------------------


class NextTokenLogits:
    """Call with every row's tokens so far ``(N, L)``; returns float32 logits of the next token ``(N, V)``.

    With a cache, only the tokens the cache has not seen are fed to the model. Subclasses say how to run
    the model on a chunk (:meth:`forward`) and how to make an empty cache (:meth:`new_cache`).

    Sliding window: the model has ``window`` positions (``block_size`` / ``max_len``); a longer sequence is
    conditioned on its last ``window`` tokens (nanoGPT's ``idx[:, -block_size:]``). Sliding the window
    moves every token to a new position, which invalidates cached keys and values (they were computed
    at the old positions), so when the cache would overflow it is rebuilt by recomputing the last
    ``window`` tokens. Past the window each step is thus a full forward pass over the window — exactly
    the no-cache computation, which is why cached and uncached decoding give the same tokens.
    """

    def __init__(self, window: int, use_cache: bool) -> None:
        self.window, self.use_cache = window, use_cache
        self.cache: KVCache | None = None
        self.seen = 0  # length of the token sequence when the cache was last updated

    def forward(self, tokens: Tensor, cache: KVCache | None) -> Tensor:
        """Logits ``(N, t, V)`` for ``tokens`` ``(N, t)``, which continue what ``cache`` holds."""
        raise NotImplementedError

    def new_cache(self) -> KVCache:
        raise NotImplementedError

    def __call__(self, tokens: Tensor) -> Tensor:
        if not self.use_cache:
            logits = self.forward(tokens[:, -self.window :], None)
        else:
            unseen = tokens.size(1) - self.seen
            if self.cache is None or self.cache.seq_len + unseen > self.window:
                self.cache = self.new_cache()  # first call, or the window slid: recompute it
                logits = self.forward(tokens[:, -self.window :], self.cache)
            else:
                logits = self.forward(tokens[:, self.seen :], self.cache)
            self.seen = tokens.size(1)
        return logits[:, -1].float()

    def reorder(self, index: Tensor) -> None:
        """Row ``i`` continues old row ``index[i]`` (beam search)."""
        if self.cache is not None:
            self.cache.reorder(index)


class _DecoderLMLogits(NextTokenLogits):
    """A decoder-only LM: ``model(input_ids, cache=...)``, ``model.block_size``, ``model.new_cache()``."""

    def __init__(self, model: nn.Module, use_cache: bool) -> None:
        super().__init__(int(model.block_size), use_cache)
        self.model = model

    def forward(self, tokens: Tensor, cache: KVCache | None) -> Tensor:
        return self.model(tokens, cache=cache).logits

    def new_cache(self) -> KVCache:
        return self.model.new_cache()


class _Seq2SeqLogits(NextTokenLogits):
    """The decoder of an encoder-decoder over a fixed encoder ``memory``; cross-attention keys and values
    are computed once (cross cache) and reused at every step."""

    def __init__(self, model: nn.Module, memory: Tensor, src_mask: Tensor | None, use_cache: bool) -> None:
        super().__init__(int(model.config.max_len), use_cache)
        self.model, self.memory, self.src_mask = model, memory, src_mask
        self.cross_cache = model.new_caches()[1] if use_cache else None

    def forward(self, tokens: Tensor, cache: KVCache | None) -> Tensor:
        return self.model.decode(tokens, self.memory, self.src_mask, cache, self.cross_cache).logits

    def new_cache(self) -> KVCache:
        return self.model.new_caches()[0]

    def reorder(self, index: Tensor) -> None:
        super().reorder(index)
        self.memory = self.memory[index]
        self.src_mask = None if self.src_mask is None else self.src_mask[index]
        if self.cross_cache is not None:
            self.cross_cache.reorder(index)


# --------------------------------------------------------------------------------------------------------
# The decoding loops
# --------------------------------------------------------------------------------------------------------


def _greedy_or_sample(
    next_logits: NextTokenLogits,
    tokens: Tensor,
    cfg: GenerationConfig,
    generator: torch.Generator | None,
    streamer: Streamer | None,
) -> Tensor:
    """Greedy (argmax) or multinomial sampling, one token per step for every row of ``tokens`` (N, L).

    A row that produced eos gets ``pad_id`` from then on; the loop ends when every row has finished.
    """
    processors = cfg.logits_processors()
    eos = torch.tensor(cfg.eos_ids(), dtype=torch.long, device=tokens.device)
    pad = torch.tensor(cfg.pad_id(), device=tokens.device)
    unfinished = torch.ones(tokens.size(0), dtype=torch.bool, device=tokens.device)
    for _ in range(cfg.max_new_tokens):
        scores = processors(tokens, next_logits(tokens))  # (N, V)
        if cfg.do_sample:
            next_tokens = torch.multinomial(scores.softmax(dim=-1), 1, generator=generator).squeeze(1)
        else:
            next_tokens = scores.argmax(dim=-1)
        if eos.numel():
            next_tokens = torch.where(unfinished, next_tokens, pad)
            unfinished &= ~torch.isin(next_tokens, eos)
        tokens = torch.cat([tokens, next_tokens[:, None]], dim=1)
        if streamer is not None:
            streamer(next_tokens)
        if not unfinished.any():
            break
    return tokens


def _take(x: Tensor, index: Tensor) -> Tensor:
    """``out[i, j] = x[i, index[i, j]]`` for ``x`` (B, M, ...) and ``index`` (B, J)."""
    return x[torch.arange(x.size(0), device=x.device)[:, None], index]


def _beam_search(
    next_logits: NextTokenLogits,
    tokens: Tensor,
    cfg: GenerationConfig,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """Beam search (or beam sampling) with HF's semantics over ``tokens`` ``(B * num_beams, L0)``, each
    prompt repeated ``num_beams`` times. Returns the best ``num_return_sequences`` hypotheses per prompt,
    best first, ``(B * R, L0 + new)`` padded after eos, and their scores ``(B * R,)``.

    Each step, for each prompt:

    1. every beam proposes every token: candidate score = beam's sum of log-probs + log p(token);
       the best ``max(2, 1 + #eos) * num_beams`` candidates are kept (drawn without replacement, by
       Gumbel-top-k, when sampling), so that ``num_beams`` of them still continue if some end;
    2. a candidate that ends (eos, or the last step) joins the finished hypotheses if it ranks among the
       first ``num_beams`` candidates, scored ``sum(log p) / L ** length_penalty`` (``L`` new tokens,
       eos included); the best ``num_beams`` finished hypotheses are kept;
    3. the best ``num_beams`` candidates that did not end become the beams;
    4. the prompt is done when no beam can improve on the finished ones (see ``early_stopping``).
    """
    k, lp, max_new = cfg.num_beams, cfg.length_penalty, cfg.max_new_tokens
    n, prompt_len = tokens.shape
    b, device = n // k, tokens.device
    processors = cfg.logits_processors()
    eos = torch.tensor(cfg.eos_ids(), dtype=torch.long, device=device)
    n_candidates = max(2, 1 + eos.numel()) * k
    row0 = torch.arange(b, device=device)[:, None] * k  # first row of each prompt's beams

    # Only the first beam exists at the start: the others are copies and would propose the same tokens.
    beam_scores = torch.full((b, k), float("-inf"), device=device)
    beam_scores[:, 0] = 0.0
    # Finished hypotheses, sorted best first; empty slots score -inf.
    done_tokens = tokens.new_full((b, k, prompt_len + max_new), cfg.pad_id())
    done_tokens[:, :, :prompt_len] = tokens.view(b, k, prompt_len)
    done_scores = torch.full((b, k), float("-inf"), device=device)
    done_lengths = torch.zeros((b, k), dtype=torch.long, device=device)
    done_filled = torch.zeros((b, k), dtype=torch.bool, device=device)
    can_improve = torch.ones(b, dtype=torch.bool, device=device)

    for step in range(max_new):
        new_len, last = step + 1, step == max_new - 1
        log_probs = processors(tokens, next_logits(tokens).log_softmax(dim=-1))  # (B * K, V)
        vocab = log_probs.size(-1)
        n_candidates = min(n_candidates, k * vocab)
        first_k = torch.arange(n_candidates, device=device) < k  # the candidates allowed to finish
        totals = (log_probs.view(b, k, vocab) + beam_scores[..., None]).view(b, k * vocab)
        if cfg.do_sample:  # sampling without replacement = top-k of Gumbel-perturbed log-probs
            gumbel = -torch.empty_like(totals).exponential_(generator=generator).log()
            picks = (totals + gumbel).topk(n_candidates, dim=-1).indices
            cand_scores = totals.gather(1, picks)
        else:
            cand_scores, picks = totals.topk(n_candidates, dim=-1)  # (B, C), best first
        cand_parent = row0 + picks // vocab  # (B, C) row each candidate continues
        cand_token = picks % vocab
        cand_tokens = torch.cat([tokens[cand_parent.flatten()], cand_token.flatten()[:, None]], 1)
        cand_tokens = cand_tokens.view(b, n_candidates, prompt_len + new_len)
        ends = torch.isin(cand_token, eos) | last

        # 2. finished hypotheses: merge the newly ended ones and keep the best k
        pool_full = done_filled.all(dim=1)
        accepting = can_improve & ~(pool_full & (cfg.early_stopping is True))
        finishing = ends & first_k & accepting[:, None]
        new_scores = torch.where(finishing, cand_scores / new_len**lp, float("-inf"))
        padded = done_tokens.new_full((b, n_candidates, done_tokens.size(2)), cfg.pad_id())
        padded[:, :, : prompt_len + new_len] = cand_tokens
        done_scores, best = torch.cat([done_scores, new_scores], dim=1).topk(k, dim=1)
        done_tokens = _take(torch.cat([done_tokens, padded], dim=1), best)
        new_lengths = done_lengths.new_full(new_scores.shape, new_len)
        done_lengths = _take(torch.cat([done_lengths, new_lengths], dim=1), best)
        done_filled = _take(torch.cat([done_filled, finishing], dim=1), best)
        if last:
            break

        # 3. the beams of the next step: the best k candidates that did not end
        beam_scores, keep = cand_scores.masked_fill(ends, float("-inf")).topk(k, dim=1)
        tokens = _take(cand_tokens, keep).view(n, -1)
        next_logits.reorder(_take(cand_parent, keep).flatten())  # caches follow their beams

        # 4. can the best beam still beat the worst finished hypothesis?
        horizon = max_new if (cfg.early_stopping == "never" and lp > 0) else new_len
        best_possible = beam_scores[:, 0] / horizon**lp
        pool_full = done_filled.all(dim=1)
        alive = beam_scores[:, 0] > float("-inf")
        can_improve &= alive & (~pool_full | (best_possible > done_scores[:, -1]))
        if not can_improve.any() or (cfg.early_stopping is True and pool_full.all()):
            break

    r = cfg.num_return_sequences
    length = prompt_len + int(done_lengths[:, :r].max())
    return done_tokens[:, :r, :length].reshape(b * r, length), done_scores[:, :r].reshape(b * r)


def _decode(
    make_logits: Callable[[int], NextTokenLogits],
    prompt: Tensor,
    cfg: GenerationConfig,
    generator: torch.Generator | None,
    streamer: Streamer | None,
) -> GenerateOutput:
    """Run the algorithm ``cfg`` asks for. ``make_logits(e)`` builds the logits function for the batch with
    every prompt repeated ``e`` times (``repeat_interleave``), as is ``prompt``."""
    if cfg.max_new_tokens == 0:
        return GenerateOutput(prompt.repeat_interleave(cfg.num_return_sequences, dim=0))
    expand = cfg.num_beams if cfg.num_beams > 1 else cfg.num_return_sequences
    tokens = prompt.repeat_interleave(expand, dim=0)
    if cfg.num_beams == 1:
        return GenerateOutput(_greedy_or_sample(make_logits(expand), tokens, cfg, generator, streamer))
    sequences, scores = _beam_search(make_logits(expand), tokens, cfg, generator)
    return GenerateOutput(sequences, scores)


# --------------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------------


def _check_ids(name: str, ids: Tensor) -> None:
    if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor of shape (batch, length)")
    if ids.size(0) == 0 or ids.size(1) == 0:
        raise ValueError(f"{name} is empty: shape {tuple(ids.shape)}; give at least one token per row")


def _make_generator(
    seed: int | None, generator: torch.Generator | None, device: torch.device
) -> torch.Generator | None:
    if seed is not None and generator is not None:
        raise ValueError("pass either seed or generator, not both")
    if seed is not None:
        return torch.Generator(device=device).manual_seed(seed)
    return generator  # None: torch's global random state


def _check_streamer(streamer: Streamer | None, cfg: GenerationConfig) -> None:
    if streamer is not None and not callable(streamer):
        raise ValueError("streamer must be a callable receiving each new token tensor")
    if streamer is not None and cfg.num_beams > 1:
        raise ValueError("streamer works with greedy decoding and sampling, not beam search")


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) and no gradients inside; the model's training mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def generate(
    model: nn.Module,
    input_ids: Tensor,
    config: GenerationConfig | None = None,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    streamer: Streamer | None = None,
    return_dict_in_generate: bool = False,
    **options: Any,
) -> Tensor | GenerateOutput:
    """Continue the prompts ``input_ids`` ``(B, T)`` with a decoder-only LM such as
    :class:`~tinyformers.core.models.DecoderLM`.

    ``options``: HF's decoding options, the fields of :class:`GenerationConfig` (``max_new_tokens``,
    ``do_sample``, ``temperature``, ``top_k``, ``top_p``, ``min_p``, ``typical_p``, ``num_beams``...), with
    HF's defaults: sampling uses ``top_k=50`` unless told otherwise (``top_k=None`` or 0: the whole
    vocabulary). They replace the fields of ``config`` if one is given. Beyond them:

    * ``seed`` / ``generator``: randomness for sampling (a seed makes a fresh ``torch.Generator``;
      neither uses torch's global random state, like HF).
    * ``streamer``: a callable receiving each new token tensor ``(B * num_return_sequences,)`` as it is
      produced (greedy and sampling only; rows that already finished receive ``pad_token_id``).
    * Prompts plus output longer than ``model.block_size`` are conditioned on their last ``block_size``
      tokens (a sliding window; see :class:`NextTokenLogits`).

    Returns ``(B * num_return_sequences, T + new)`` prompt + generated tokens (``new <= max_new_tokens``:
    decoding stops once every sequence has produced eos; finished ones are padded with ``pad_token_id``),
    or a :class:`GenerateOutput` with the beam scores if ``return_dict_in_generate``. The model runs in
    eval mode under ``torch.no_grad``; its training mode is restored afterwards.
    """
    cfg = GenerationConfig.from_options(config, **options)
    cfg.validate()
    _check_ids("input_ids", input_ids)
    _check_streamer(streamer, cfg)
    rng = _make_generator(seed, generator, input_ids.device)
    with _eval_mode(model):
        out = _decode(lambda _: _DecoderLMLogits(model, cfg.use_cache), input_ids, cfg, rng, streamer)
    return out if return_dict_in_generate else out.sequences


def generate_seq2seq(
    model: nn.Module,
    src_ids: Tensor,
    src_mask: Tensor | None = None,
    config: GenerationConfig | None = None,
    *,
    decoder_start_token_id: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    streamer: Streamer | None = None,
    return_dict_in_generate: bool = False,
    **options: Any,
) -> Tensor | GenerateOutput:
    """Generate targets for ``src_ids`` ``(B, S)`` (``src_mask`` 1 = real token) with an
    :class:`~tinyformers.core.models.EncoderDecoder`.

    The source is encoded once; the decoder starts from ``decoder_start_token_id`` (default
    ``config.bos_id``) and runs incrementally with a self-attention cache and a cross-attention cache
    (both reordered with the beams). Defaults from the model's config, used when the option is not given
    or None: ``eos_token_id`` = ``eos_id``, ``pad_token_id`` = ``pad_id``, and (unless ``config`` is given)
    ``max_new_tokens`` = ``max_len - 1`` (more is allowed: the decoder then slides its window). An eos id
    outside the vocabulary never stops decoding early. Other options as :func:`generate`.

    Returns the generated target ids *without* the start token, ``(B * num_return_sequences, L)``, each
    row padded with ``pad_token_id`` after its eos (or a :class:`GenerateOutput` if
    ``return_dict_in_generate``).
    """
    model_cfg = model.config
    # max_new_tokens not given (or None), and no config giving it: as long as the model's targets
    if options.get("max_new_tokens") is None and (config is None or "max_new_tokens" in options):
        options["max_new_tokens"] = model_cfg.max_len - 1
    cfg = GenerationConfig.from_options(config, **options)
    if cfg.eos_token_id is None:
        cfg.eos_token_id = model_cfg.eos_id
    if cfg.pad_token_id is None:
        cfg.pad_token_id = model_cfg.pad_id
    cfg.validate()
    _check_ids("src_ids", src_ids)
    if src_mask is not None and src_mask.shape != src_ids.shape:
        raise ValueError(f"src_mask has shape {tuple(src_mask.shape)}, expected {tuple(src_ids.shape)}")
    _check_streamer(streamer, cfg)
    rng = _make_generator(seed, generator, src_ids.device)
    start = model_cfg.bos_id if decoder_start_token_id is None else decoder_start_token_id
    with _eval_mode(model):
        memory, _ = model.encode(src_ids, src_mask)

        def make_logits(expand: int) -> NextTokenLogits:
            mask = None if src_mask is None else src_mask.repeat_interleave(expand, dim=0)
            return _Seq2SeqLogits(model, memory.repeat_interleave(expand, dim=0), mask, cfg.use_cache)

        start_ids = src_ids.new_full((src_ids.size(0), 1), start)
        out = _decode(make_logits, start_ids, cfg, rng, streamer)
    out.sequences = out.sequences[:, 1:]  # drop the start token
    return out if return_dict_in_generate else out.sequences
