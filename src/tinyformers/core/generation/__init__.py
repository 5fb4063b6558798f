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
* **minimum Bayes risk** (:func:`mbr_pick`, module ``mbr``): of several outputs (a beam's hypotheses,
  samples), the one with the highest expected score of a metric against the others.

The logits processors run in HF's order: ``repetition_penalty``, ``no_repeat_ngram_size``, then for
sampling only ``temperature``, ``top_k``, ``top_p``, ``min_p``, ``typical_p``. Greedy and sampling process
the raw logits, beam search the log-probabilities (as HF).

One loop per algorithm serves both model families: a :class:`NextTokenLogits` object maps "all tokens so
far" to "logits of the next token" and hides the model family, the KV cache and the sliding window.

The package: ``processors`` (the logits processors and warpers), ``config`` (:class:`GenerationConfig`),
``search`` (the loops and the two entry points), ``mbr`` (minimum Bayes risk selection).
"""

from tinyformers.core.generation.config import Flag, GenerationConfig
from tinyformers.core.generation.mbr import mbr_pick
from tinyformers.core.generation.processors import (
    LogitsProcessor,
    LogitsProcessorList,
    MinPLogitsWarper,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)
from tinyformers.core.generation.search import GenerateOutput, NextTokenLogits, generate, generate_seq2seq

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
    "mbr_pick",
]
