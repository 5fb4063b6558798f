"""The decoding settings: :class:`GenerationConfig`, the one declaration of every option."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, NamedTuple, get_args, get_type_hints

from torch import Tensor

from tinyformers.core.generation.processors import (
    LogitsProcessorList,
    MinPLogitsWarper,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)


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
    coverage_penalty: float = _option(
        0.0,
        ">= 0; encoder-decoders only, beam search only. A finished hypothesis's score gets "
        "``coverage_penalty * sum_i log(min(c_i, 1))``, ``c_i`` the cross-attention mass source token ``i`` "
        "received while the hypothesis was generated (last decoder layer, heads averaged; GNMT, Wu et al. 2016 "
        "§7): translations that leave source words unattended score lower. 0 = off (HF has no such option).",
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
        if not (is_number(self.coverage_penalty) and 0 <= self.coverage_penalty < math.inf):
            raise ValueError(
                f"coverage_penalty must be a finite number >= 0 (0 disables it), got {self.coverage_penalty}"
            )
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
