"""The decoding loops (greedy / sampling, beam search) and :func:`generate` / :func:`generate_seq2seq`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from tinyformers.core.attention import KVCache
from tinyformers.core.generation.config import GenerationConfig

if TYPE_CHECKING:  # types only: the models import this package (their generate methods)
    from tinyformers.core.models.decoder import DecoderLM
    from tinyformers.core.models.seq2seq import EncoderDecoder

Streamer = Callable[[Tensor], object]


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

    def coverage_log_sum(self) -> Tensor:
        """``sum_i log(min(c_i, 1))`` per row (N,) over the real source tokens (``coverage_penalty``; encoder-decoders
        only: :func:`generate` refuses the option)."""
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

    def __init__(self, model: DecoderLM, use_cache: bool) -> None:
        super().__init__(int(model.block_size), use_cache)
        self.model = model

    def forward(self, tokens: Tensor, cache: KVCache | None) -> Tensor:
        return self.model(tokens, cache=cache).logits

    def new_cache(self) -> KVCache:
        return self.model.new_cache()


class _Seq2SeqLogits(NextTokenLogits):
    """The decoder of an encoder-decoder over a fixed encoder ``memory``; cross-attention keys and values
    are computed once (cross cache) and reused at every step."""

    def __init__(
        self, model: EncoderDecoder, memory: Tensor, src_mask: Tensor | None, use_cache: bool, coverage: bool = False
    ) -> None:
        super().__init__(int(model.config.max_len), use_cache)
        self.model, self.memory, self.src_mask = model, memory, src_mask
        self.cross_cache = model.new_caches()[1] if use_cache else None
        # with ``coverage``: the cross-attention mass each source token received from the rows so far (N, S),
        # summed over the decoder positions that produced a token (last layer, heads averaged)
        self.coverage: Tensor | None = memory.new_zeros(memory.shape[:2]) if coverage else None

    def forward(self, tokens: Tensor, cache: KVCache | None) -> Tensor:
        offset = cache.seq_len if cache is not None else 0  # positions already counted in the coverage
        out = self.model.decode(
            tokens, self.memory, self.src_mask, cache, self.cross_cache, output_attentions=self.coverage is not None
        )
        if self.coverage is not None:
            mass = out.cross_attentions[-1].float().mean(dim=1).sum(dim=1)  # (N, H, t, S) -> (N, S)
            # incremental: add the new positions; a fresh or no cache feeds every position: start again
            self.coverage = self.coverage + mass if offset else mass
        assert out.logits is not None  # decode always computes them (ModelOutput's field is optional for encoders)
        return out.logits

    def coverage_log_sum(self) -> Tensor:
        assert self.coverage is not None, "built without coverage"
        # log(0) would be -inf: a probability that underflowed counts as 1e-9 of a token's attention
        logs = self.coverage.clamp(1e-9, 1.0).log()
        if self.src_mask is not None:
            logs = logs.masked_fill(self.src_mask == 0, 0.0)  # padding is not a source word
        return logs.sum(dim=-1)

    def new_cache(self) -> KVCache:
        return self.model.new_caches()[0]

    def reorder(self, index: Tensor) -> None:
        super().reorder(index)
        self.memory = self.memory[index]
        self.src_mask = None if self.src_mask is None else self.src_mask[index]
        self.coverage = None if self.coverage is None else self.coverage[index]
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
       eos included; plus ``coverage_penalty * sum_i log(min(c_i, 1))`` when it is set, ``c_i`` the attention
       mass source token ``i`` received from the positions that produced the hypothesis); the best
       ``num_beams`` finished hypotheses are kept;
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
        final = cand_scores / new_len**lp
        if cfg.coverage_penalty:  # the coverage of the beam a candidate continues (its last row included)
            final = final + cfg.coverage_penalty * next_logits.coverage_log_sum()[cand_parent]
        new_scores = torch.where(finishing, final, float("-inf"))
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
    model: DecoderLM,
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
    if cfg.coverage_penalty:
        raise ValueError("coverage_penalty needs an encoder-decoder (cross-attention over a source)")
    _check_ids("input_ids", input_ids)
    _check_streamer(streamer, cfg)
    rng = _make_generator(seed, generator, input_ids.device)
    with _eval_mode(model):
        out = _decode(lambda _: _DecoderLMLogits(model, cfg.use_cache), input_ids, cfg, rng, streamer)
    return out if return_dict_in_generate else out.sequences


def generate_seq2seq(
    model: EncoderDecoder,
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

        coverage = cfg.coverage_penalty > 0 and cfg.num_beams > 1  # only beam search scores with it

        def make_logits(expand: int) -> NextTokenLogits:
            mask = None if src_mask is None else src_mask.repeat_interleave(expand, dim=0)
            return _Seq2SeqLogits(model, memory.repeat_interleave(expand, dim=0), mask, cfg.use_cache, coverage)

        start_ids = src_ids.new_full((src_ids.size(0), 1), start)
        out = _decode(make_logits, start_ids, cfg, rng, streamer)
    out.sequences = out.sequences[:, 1:]  # drop the start token
    return out if return_dict_in_generate else out.sequences
