"""Logits processors and warpers: ``(input_ids (N, L), scores (N, V)) -> scores (N, V)``, HF's names and
meanings. A removed token gets ``-inf``."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor


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
