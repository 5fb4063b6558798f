"""Decoding: the logits processors against Hugging Face's, greedy/sampling/beam search against HF's
``generate`` and against exhaustive search, the KV cache and sliding window against recomputation."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.generation import logits_process as hf
from transformers.modeling_outputs import CausalLMOutput

from tinyformers.core.attention import KVCache
from tinyformers.core.generation import (
    GenerationConfig,
    MinPLogitsWarper,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
    generate,
    generate_seq2seq,
)
from tinyformers.core.models import DecoderConfig, DecoderLM, EncoderDecoder, ModelOutput, Seq2SeqConfig

INF = float("-inf")


def sharpen(model: nn.Module, std: float, seed: int) -> nn.Module:
    """Re-draw the weight matrices with a large std: a random model with peaked, input-dependent outputs
    (the default init gives near-uniform distributions, where eos never wins and ties are close)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


def tiny_lm(vocab: int = 11, max_len: int = 16, positions: str = "learned", seed: int = 0) -> DecoderLM:
    cfg = DecoderConfig(
        vocab_size=vocab, d_model=32, n_heads=2, n_layers=2, d_ff=64, max_len=max_len, positions=positions
    )
    return sharpen(DecoderLM(cfg), 0.5, seed)


def tiny_seq2seq(tgt_vocab: int = 7, max_len: int = 12, seed: int = 0) -> EncoderDecoder:
    cfg = Seq2SeqConfig(
        src_vocab_size=9,
        tgt_vocab_size=tgt_vocab,
        d_model=32,
        n_heads=2,
        n_layers=2,
        d_ff=64,
        max_len=max_len,
    )
    return sharpen(EncoderDecoder(cfg), 0.2, seed)


def lm_logprob(model: DecoderLM, prompt: Tensor, new: list[int]) -> float:
    """log p(new | prompt) for one prompt (T,), by one full forward pass."""
    ids = torch.cat([prompt, torch.tensor(new)])[None]
    with torch.no_grad():
        logp = model(ids[:, :-1]).logits.log_softmax(-1)[0, len(prompt) - 1 :]
    return logp.gather(1, torch.tensor(new)[:, None]).sum().item()


def seq2seq_logprob(model: EncoderDecoder, src: Tensor, src_mask: Tensor | None, tgt: Tensor) -> Tensor:
    """log p(tgt | src) per row; ``tgt`` (B, L) without bos, anything after the first eos ignored."""
    cfg = model.config
    dec_in = torch.cat([torch.full((tgt.size(0), 1), cfg.bos_id), tgt[:, :-1]], dim=1)
    with torch.no_grad():
        memory, _ = model.encode(src, src_mask)
        logp = model.decode(dec_in, memory, src_mask).logits.log_softmax(-1)
    token_logp = logp.gather(2, tgt[..., None])[..., 0]
    after_eos = (tgt == cfg.eos_id).long().cumsum(1) - (tgt == cfg.eos_id).long() > 0
    return token_logp.masked_fill(after_eos, 0.0).sum(1)


def all_sequences(vocab: int, max_new: int, eos: int | None) -> list[tuple[int, ...]]:
    """Every output beam search can return: ending with eos (eos nowhere else), or of length max_new."""
    out = []
    for n in range(1, max_new + 1):
        for seq in itertools.product(range(vocab), repeat=n):
            if eos is not None and eos in seq[:-1]:
                continue
            if n == max_new or (eos is not None and seq[-1] == eos):
                out.append(seq)
    return out


# --------------------------------------------------------------------------------------------------------
# Logits processors: hand-computed cases, then the same numbers as Hugging Face's
# --------------------------------------------------------------------------------------------------------


def kept(scores: Tensor) -> list[list[int]]:
    return [torch.isfinite(row).nonzero().flatten().tolist() for row in scores]


def test_top_k_keeps_ties_at_the_kth_value() -> None:
    scores = torch.tensor([[5.0, 4.0, 4.0, 4.0, 1.0], [0.0, 3.0, 1.0, 3.0, 2.0]])
    assert kept(TopKLogitsWarper(1)(None, scores)) == [[0], [1, 3]]  # a tie at the top keeps both
    assert kept(TopKLogitsWarper(2)(None, scores)) == [[0, 1, 2, 3], [1, 3]]  # k-th value 4 is tied 3 times
    assert kept(TopKLogitsWarper(3)(None, scores)) == [[0, 1, 2, 3], [1, 3, 4]]
    assert kept(TopKLogitsWarper(99)(None, scores)) == [[0, 1, 2, 3, 4]] * 2  # k > vocab keeps everything
    out = TopKLogitsWarper(3)(None, scores)
    assert torch.equal(out[1, [1, 3, 4]], scores[1, [1, 3, 4]])  # kept scores are untouched


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    probs = torch.tensor([0.05, 0.5, 0.15, 0.3])  # sorted: 0.5 (1), 0.3 (3), 0.15 (2), 0.05 (0)
    scores = probs.log()[None]
    cases = {
        0.01: [1],
        0.4: [1],
        0.6: [1, 3],
        0.79: [1, 3],
        0.81: [1, 2, 3],
        0.9: [1, 2, 3],
        0.97: [0, 1, 2, 3],
    }
    for p, expected in cases.items():
        assert kept(TopPLogitsWarper(p)(None, scores)) == [expected], p
    assert kept(TopPLogitsWarper(1.0)(None, scores)) == [[0, 1, 2, 3]]
    assert kept(TopPLogitsWarper(0.01, min_tokens_to_keep=3)(None, scores)) == [[1, 2, 3]]
    one_hot = torch.tensor([[INF, 0.0, INF]])  # a single possible token is always kept
    assert kept(TopPLogitsWarper(0.5)(None, one_hot)) == [[1]]


def test_temperature_divides_and_rejects_non_positive() -> None:
    scores = torch.tensor([[1.0, -2.0, 4.0]])
    torch.testing.assert_close(TemperatureLogitsWarper(0.5)(None, scores), scores * 2)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature"):
            TemperatureLogitsWarper(bad)


def test_repetition_penalty_hand_example() -> None:
    scores = torch.tensor([[2.0, -1.0, 3.0, -4.0]])
    ids = torch.tensor([[0, 1, 1]])  # tokens 0 and 1 were seen (1 twice: penalised once)
    out = RepetitionPenaltyLogitsProcessor(2.0)(ids, scores)
    assert out.tolist() == [[1.0, -2.0, 3.0, -4.0]]


def test_no_repeat_ngram_hand_example() -> None:
    ids = torch.tensor([[1, 2, 3, 1, 2]])  # bigram "2 3" exists and the sequence ends in 2: ban 3
    scores = torch.zeros(1, 5)
    assert kept(NoRepeatNGramLogitsProcessor(2)(ids, scores)) == [[0, 1, 2, 4]]
    assert kept(NoRepeatNGramLogitsProcessor(3)(ids, scores)) == [[0, 1, 2, 4]]  # "1 2 3", ends "1 2"
    assert kept(NoRepeatNGramLogitsProcessor(1)(ids, scores)) == [[0, 4]]  # every seen token banned
    assert kept(NoRepeatNGramLogitsProcessor(6)(ids, scores)) == [[0, 1, 2, 3, 4]]  # no complete 6-gram


def random_case(seed: int, n: int = 6, length: int = 12, vocab: int = 5) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n, length), generator=g), torch.randn(n, vocab, generator=g) * 2


@pytest.mark.parametrize("penalty", [0.5, 1.0, 1.3, 3.0])
def test_repetition_penalty_matches_hf(penalty: float) -> None:
    for seed in range(5):
        ids, scores = random_case(seed)
        ref = hf.RepetitionPenaltyLogitsProcessor(penalty)(ids, scores.clone())
        torch.testing.assert_close(RepetitionPenaltyLogitsProcessor(penalty)(ids, scores), ref, rtol=0, atol=0)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("length", [1, 3, 12])
def test_no_repeat_ngram_matches_hf(n: int, length: int) -> None:
    for seed in range(5):
        ids, scores = random_case(seed, length=length, vocab=3)
        scores = torch.cat([scores, torch.randn(scores.size(0), 2)], 1)  # vocab 5, ids use only 3
        ref = hf.NoRepeatNGramLogitsProcessor(n)(ids, scores.clone())
        assert torch.equal(NoRepeatNGramLogitsProcessor(n)(ids, scores), ref)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 20])
@pytest.mark.parametrize("keep", [1, 3])
def test_top_k_matches_hf_including_ties(k: int, keep: int) -> None:
    g = torch.Generator().manual_seed(k)
    for scores in (torch.randn(8, 10, generator=g), torch.randint(0, 3, (8, 10), generator=g).float()):
        ref = hf.TopKLogitsWarper(k, min_tokens_to_keep=keep)(None, scores.clone())
        assert torch.equal(TopKLogitsWarper(k, min_tokens_to_keep=keep)(None, scores), ref)


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9, 0.99, 1.0])
@pytest.mark.parametrize("keep", [1, 3])
def test_top_p_matches_hf(p: float, keep: int) -> None:
    g = torch.Generator().manual_seed(int(p * 100))
    for temperature in (0.3, 1.0, 3.0):
        scores = torch.randn(16, 10, generator=g) / temperature
        ref = hf.TopPLogitsWarper(p, min_tokens_to_keep=keep)(None, scores.clone())
        assert torch.equal(TopPLogitsWarper(p, min_tokens_to_keep=keep)(None, scores), ref)


def adversarial_scores(seed: int, rows: int = 48, vocab: int = 5000) -> Tensor:
    """Large vocabularies built to break a filter: ties (quantised and constant rows), -inf entries,
    a single finite token, probabilities that underflow (huge scales) and near-uniform rows."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([0.01, 0.3, 1.0, 3.0, 50.0]).repeat(rows)[:rows, None]
    scores = torch.randn(rows, vocab, generator=g) * scale
    scores[rows // 4 : rows // 2] = scores[rows // 4 : rows // 2].round()  # few distinct values: many ties
    scores[rows // 2 : rows // 2 + 4] = 0.0  # every token tied
    holes = torch.rand(rows, vocab, generator=g) < torch.rand(rows, 1, generator=g) * 0.9
    holes[:, 0] = False  # every row keeps a finite score
    scores[2 * rows // 3 :] = scores[2 * rows // 3 :].masked_fill(holes[2 * rows // 3 :], INF)
    scores[-1, 1:] = INF  # one possible token
    return scores


def test_top_p_ties_keep_the_highest_indices_as_hf() -> None:
    """The outside check's case: 8 equal scores, p = 0.5: HF keeps tokens 4-7, and so do we."""
    scores = torch.zeros(1, 8)
    assert kept(TopPLogitsWarper(0.5)(None, scores)) == [[4, 5, 6, 7]]
    assert kept(hf.TopPLogitsWarper(0.5)(None, scores.clone())) == [[4, 5, 6, 7]]


@pytest.mark.parametrize("p", [1e-6, 1e-3, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.999, 1.0])
@pytest.mark.parametrize("keep", [1, 3])
def test_top_p_matches_hf_bit_for_bit_on_adversarial_vocabularies(p: float, keep: int) -> None:
    for seed in range(2):
        scores = adversarial_scores(seed)
        ref = hf.TopPLogitsWarper(p, min_tokens_to_keep=keep)(None, scores.clone())
        assert torch.equal(TopPLogitsWarper(p, min_tokens_to_keep=keep)(None, scores), ref)


@pytest.mark.parametrize("p", [0.0, 1e-6, 0.05, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("keep", [1, 3])
def test_min_p_matches_hf_bit_for_bit_on_adversarial_vocabularies(p: float, keep: int) -> None:
    for seed in range(2):
        scores = adversarial_scores(seed)
        ref = hf.MinPLogitsWarper(p, min_tokens_to_keep=keep)(None, scores.clone())
        assert torch.equal(MinPLogitsWarper(p, min_tokens_to_keep=keep)(None, scores), ref)


@pytest.mark.parametrize("p", [1e-6, 0.2, 0.5, 0.9, 0.95, 0.999])
@pytest.mark.parametrize("keep", [1, 3])
def test_typical_p_matches_hf_bit_for_bit_on_adversarial_vocabularies(p: float, keep: int) -> None:
    for seed in range(2):
        scores = adversarial_scores(seed)
        ref = hf.TypicalLogitsWarper(p, min_tokens_to_keep=keep)(None, scores.clone())
        assert torch.equal(TypicalLogitsWarper(p, min_tokens_to_keep=keep)(None, scores), ref)


def test_min_p_and_typical_p_hand_examples() -> None:
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    assert kept(MinPLogitsWarper(0.5)(None, probs.log())) == [[0, 1]]  # p >= 0.5 * 0.5
    assert kept(MinPLogitsWarper(0.1)(None, probs.log())) == [[0, 1, 2]]  # p >= 0.05 keeps 0.15, not 0.05
    assert kept(MinPLogitsWarper(0.9, min_tokens_to_keep=3)(None, probs.log())) == [[0, 1, 2]]
    # entropy H = 1.14 nats; |-log p - H|: 0.45, 0.06, 0.76, 1.86 -> typical order 1, 0, 2, 3
    assert kept(TypicalLogitsWarper(0.2)(None, probs.log())) == [[1]]
    assert kept(TypicalLogitsWarper(0.5)(None, probs.log())) == [[0, 1]]  # 0.3 < 0.5: token 0 crosses
    assert kept(TypicalLogitsWarper(0.9)(None, probs.log())) == [[0, 1, 2]]


def test_temperature_matches_hf() -> None:
    scores = torch.randn(4, 10)
    for t in (0.1, 0.7, 2.5):
        assert torch.equal(TemperatureLogitsWarper(t)(None, scores), hf.TemperatureLogitsWarper(t)(None, scores))


def test_processor_order_is_hf() -> None:
    cfg = GenerationConfig(
        do_sample=True,
        temperature=0.7,
        top_k=5,
        top_p=0.9,
        min_p=0.05,
        typical_p=0.9,
        repetition_penalty=1.2,
        no_repeat_ngram_size=2,
    )
    names = [type(p).__name__ for p in cfg.logits_processors()]
    assert names == [
        "RepetitionPenaltyLogitsProcessor",
        "NoRepeatNGramLogitsProcessor",
        "TemperatureLogitsWarper",
        "TopKLogitsWarper",
        "TopPLogitsWarper",
        "MinPLogitsWarper",
        "TypicalLogitsWarper",
    ]
    hf_model = _Wrapped(tiny_lm())  # HF's own chain for the same settings
    hf_cfg = hf_model.generation_config
    for key in ("temperature", "top_k", "top_p", "min_p", "typical_p", "repetition_penalty", "no_repeat_ngram_size"):
        setattr(hf_cfg, key, getattr(cfg, key))
    hf_cfg.do_sample = True
    assert [type(p).__name__ for p in hf_model._get_logits_processor(hf_cfg, input_ids_seq_length=3)] == names
    cfg.do_sample = False  # the warpers only apply to sampling
    assert len(cfg.logits_processors()) == 2
    assert GenerationConfig().logits_processors() == []  # defaults change nothing
    default_sampling = GenerationConfig(do_sample=True).logits_processors()  # HF's default: top_k = 50
    assert [(type(p).__name__, p.top_k) for p in default_sampling] == [("TopKLogitsWarper", 50)]
    for off in (None, 0):
        assert GenerationConfig(do_sample=True, top_k=off).logits_processors() == []


def test_options_are_the_config_fields() -> None:
    cfg = GenerationConfig(max_new_tokens=5, top_p=0.5)
    assert GenerationConfig.from_options(cfg, top_k=None) == GenerationConfig(max_new_tokens=5, top_p=0.5, top_k=None)
    assert cfg.top_k == 50  # the given config is not modified
    with pytest.raises(TypeError, match="top_q"):
        GenerationConfig.from_options(top_q=0.9)
    model, prompts = tiny_lm(), torch.randint(0, 11, (2, 3))
    with pytest.raises(TypeError, match="top_q"):
        generate(model, prompts, top_q=0.9)
    with pytest.raises(TypeError, match="GenerationConfig"):
        generate(model, prompts, 5)  # the old positional max_new_tokens
    via_config = generate(model, prompts, GenerationConfig(max_new_tokens=4, num_beams=2), seed=0)
    assert torch.equal(via_config, generate(model, prompts, max_new_tokens=4, num_beams=2))
    s2s, src = tiny_seq2seq(), torch.randint(3, 9, (2, 5))
    assert generate_seq2seq(s2s, src).size(1) <= s2s.config.max_len - 1  # the model's length, not 20
    assert torch.equal(
        generate_seq2seq(s2s, src, config=GenerationConfig(max_new_tokens=3)), generate_seq2seq(s2s, src)[:, :3]
    )


# --------------------------------------------------------------------------------------------------------
# Against Hugging Face's generate: our model wrapped as an HF model (no cache, full recomputation)
# --------------------------------------------------------------------------------------------------------


class _WrapConfig(PretrainedConfig):
    model_type = "tinyformers-test"


class _Wrapped(PreTrainedModel, GenerationMixin):
    config_class = _WrapConfig

    def __init__(self, inner: DecoderLM) -> None:
        super().__init__(_WrapConfig(vocab_size=inner.config.vocab_size))
        self.inner = inner

    def forward(self, input_ids: Tensor, **kwargs: object) -> CausalLMOutput:
        return CausalLMOutput(logits=self.inner(input_ids).logits)


BEAM_CASES = [
    dict(num_beams=3, eos_token_id=3),
    dict(num_beams=4, num_return_sequences=4, eos_token_id=3, length_penalty=0.0),
    dict(num_beams=2, num_return_sequences=2, eos_token_id=[3, 5], length_penalty=2.0),
    dict(num_beams=5, num_return_sequences=3, eos_token_id=3, length_penalty=-1.0, early_stopping=True),
    dict(num_beams=4, num_return_sequences=2, eos_token_id=[3, 5], early_stopping="never"),
    dict(num_beams=3, num_return_sequences=2, eos_token_id=3, repetition_penalty=1.5, no_repeat_ngram_size=2),
    dict(num_beams=3),  # no eos: every hypothesis has max_new_tokens tokens
]


@pytest.mark.parametrize("kwargs", BEAM_CASES, ids=str)
def test_beam_search_matches_hf(kwargs: dict) -> None:
    model = tiny_lm()
    prompts = torch.randint(0, 11, (3, 3))
    common = dict(max_new_tokens=7, pad_token_id=10, **kwargs)  # HF's beam search fills with eos if pad is 0
    ref = _Wrapped(model).generate(
        prompts, do_sample=False, use_cache=False, output_scores=True, return_dict_in_generate=True, **common
    )
    for use_cache in (True, False):
        out = generate(model, prompts, use_cache=use_cache, return_dict_in_generate=True, **common)
        assert torch.equal(out.sequences, ref.sequences)
        torch.testing.assert_close(out.sequences_scores, ref.sequences_scores, rtol=1e-5, atol=1e-5)


def test_early_stopping_modes_match_hf() -> None:
    """A case where the three stop rules give different outputs, each equal to HF's."""
    model = tiny_lm()
    torch.manual_seed(3)
    prompts = torch.randint(0, 11, (3, 3))
    kw = dict(max_new_tokens=7, num_beams=3, num_return_sequences=2, eos_token_id=[3, 5], length_penalty=2.0)
    outs = []
    for early_stopping in (False, True, "never"):
        common = dict(pad_token_id=10, early_stopping=early_stopping, **kw)
        ref = _Wrapped(model).generate(prompts, do_sample=False, use_cache=False, **common)
        outs.append(generate(model, prompts, **common))
        assert torch.equal(outs[-1], ref)
    assert not torch.equal(outs[0], outs[2])


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(do_sample=False, repetition_penalty=1.3, no_repeat_ngram_size=2),
        dict(do_sample=True),
        dict(
            do_sample=True,
            temperature=0.7,
            top_k=4,
            top_p=0.8,
            repetition_penalty=1.2,
            num_return_sequences=3,
        ),
        dict(do_sample=True, temperature=1.5, top_p=0.5, no_repeat_ngram_size=1),
    ],
    ids=str,
)
def test_greedy_and_sampling_match_hf(kwargs: dict) -> None:
    """Sampling draws with ``torch.multinomial`` from the same distribution as HF: with the global random
    state seeded identically, the samples are identical."""
    model = tiny_lm(seed=1)
    prompts = torch.randint(0, 11, (3, 4))
    common = dict(max_new_tokens=8, eos_token_id=3, pad_token_id=10, **kwargs)
    torch.manual_seed(7)
    ref = _Wrapped(model).generate(prompts, use_cache=False, **common)
    torch.manual_seed(7)
    assert torch.equal(generate(model, prompts, use_cache=False, **common), ref)


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(top_k=None), dict(top_k=0), dict(top_k=7, min_p=0.2), dict(top_k=None, typical_p=0.8, min_p=0.01)],
    ids=str,
)
def test_sampling_defaults_match_hf_on_a_vocabulary_over_50(kwargs: dict) -> None:
    """Vocabulary 80: HF samples among the top 50 unless told otherwise, and so do we."""
    model = tiny_lm(vocab=80, seed=2)
    prompts = torch.randint(0, 80, (3, 4))
    common = dict(max_new_tokens=8, do_sample=True, temperature=1.5, **kwargs)
    torch.manual_seed(5)
    ref = _Wrapped(model).generate(prompts, use_cache=False, pad_token_id=0, **common)
    torch.manual_seed(5)
    assert torch.equal(generate(model, prompts, **common), ref)


def test_sampling_uses_top_k_50_unless_disabled() -> None:
    logits = torch.arange(100.0) / 30  # token 99 most likely; tokens 0-49 hold 16% of the mass
    model, n = FixedLM(logits), 4000
    prompts = torch.zeros(n, 1, dtype=torch.long)
    drawn = generate(model, prompts, max_new_tokens=1, do_sample=True, seed=0)[:, 1]
    assert drawn.min() == 50  # only the 50 most likely
    for off in (None, 0):
        drawn = generate(model, prompts, max_new_tokens=1, do_sample=True, top_k=off, seed=0)[:, 1]
        assert (drawn < 50).float().mean().item() == pytest.approx(logits.softmax(0)[:50].sum().item(), abs=0.03)


# --------------------------------------------------------------------------------------------------------
# Greedy decoding, the KV cache and the sliding window
# --------------------------------------------------------------------------------------------------------


def reference_greedy(model: DecoderLM, ids: Tensor, max_new_tokens: int) -> Tensor:
    """nanoGPT's loop: full forward over the last block_size tokens, argmax."""
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(ids[:, -model.block_size :]).logits[:, -1]
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], 1)
    return ids


@pytest.mark.parametrize("positions", ["learned", "rotary", "sinusoidal"])
@pytest.mark.parametrize(("prompt_len", "new"), [(4, 8), (5, 30), (20, 6)])  # in, past, beyond the window
def test_greedy_cache_equals_recompute_with_sliding_window(positions: str, prompt_len: int, new: int) -> None:
    model = tiny_lm(positions=positions)
    prompts = torch.randint(0, 11, (2, prompt_len))
    ref = reference_greedy(model, prompts, new)
    assert torch.equal(generate(model, prompts, max_new_tokens=new, use_cache=False), ref)
    assert torch.equal(generate(model, prompts, max_new_tokens=new), ref)


def test_beam_search_cache_equals_recompute_past_the_window() -> None:
    model = tiny_lm()
    prompts = torch.randint(0, 11, (2, 10))
    kw = dict(max_new_tokens=12, num_beams=3, num_return_sequences=2, eos_token_id=3)
    assert torch.equal(generate(model, prompts, **kw), generate(model, prompts, use_cache=False, **kw))


def test_greedy_stops_at_eos_and_pads() -> None:
    model = tiny_lm()
    prompts = torch.randint(0, 11, (6, 3))
    free = generate(model, prompts, max_new_tokens=10)
    eos = int(free[0, 4])  # a token the first row produces
    out = generate(model, prompts, max_new_tokens=10, eos_token_id=eos, pad_token_id=0)
    for row, ref in zip(out, free, strict=True):
        new, ref_new = row[3:].tolist(), ref[3:].tolist()
        if eos in ref_new[: len(new)]:
            end = ref_new.index(eos) + 1
            assert new[:end] == ref_new[:end] and all(t == 0 for t in new[end:])
        else:
            assert new == ref_new[: len(new)]
    assert out.size(1) == 3 + max(r[3:].tolist().index(eos) + 1 if eos in r[3:] else 10 for r in free)


def test_max_new_tokens_zero_returns_prompt() -> None:
    model, prompts = tiny_lm(), torch.randint(0, 11, (2, 5))
    assert torch.equal(generate(model, prompts, max_new_tokens=0), prompts)
    assert torch.equal(generate(model, prompts, max_new_tokens=0, num_beams=3), prompts)
    out = generate(model, prompts, max_new_tokens=0, do_sample=True, num_return_sequences=2)
    assert torch.equal(out, prompts.repeat_interleave(2, 0))


def test_model_mode_restored_and_no_grad() -> None:
    model = DecoderLM(DecoderConfig(vocab_size=11, d_model=32, n_heads=2, n_layers=1, d_ff=64, max_len=16, dropout=0.5))
    model.train()
    prompts = torch.randint(0, 11, (2, 3))
    a = generate(model, prompts, max_new_tokens=6)
    b = generate(model, prompts, max_new_tokens=6)
    assert torch.equal(a, b)  # eval mode: dropout off, deterministic
    assert model.training and all(m.training for m in model.modules())
    model.eval()
    assert not generate(model, prompts, max_new_tokens=2).requires_grad and not model.training


def test_streamer_receives_every_token() -> None:
    model, prompts = tiny_lm(), torch.randint(0, 11, (3, 4))
    received: list[Tensor] = []
    out = generate(model, prompts, max_new_tokens=9, streamer=received.append)
    assert len(received) == 9 and torch.equal(torch.stack(received, 1), out[:, 4:])
    received.clear()
    out = generate(
        model,
        prompts,
        max_new_tokens=5,
        do_sample=True,
        seed=0,
        num_return_sequences=2,
        streamer=received.append,
    )
    assert torch.equal(torch.stack(received, 1), out[:, 4:]) and received[0].shape == (6,)


# --------------------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------------------


def test_seeded_sampling_is_reproducible_and_leaves_global_rng_alone() -> None:
    model, prompts = tiny_lm(), torch.randint(0, 11, (4, 3))
    kw = dict(max_new_tokens=12, do_sample=True, top_p=0.95)
    state = torch.get_rng_state()
    a = generate(model, prompts, seed=123, **kw)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(generate(model, prompts, seed=123, **kw), a)
    assert not torch.equal(generate(model, prompts, seed=124, **kw), a)
    assert torch.equal(generate(model, prompts, generator=torch.Generator().manual_seed(123), **kw), a)


def test_tiny_temperature_and_top_k_1_equal_greedy() -> None:
    model, prompts = tiny_lm(), torch.randint(0, 11, (4, 3))
    greedy = generate(model, prompts, max_new_tokens=10)
    assert torch.equal(generate(model, prompts, max_new_tokens=10, do_sample=True, temperature=1e-4, seed=0), greedy)
    assert torch.equal(generate(model, prompts, max_new_tokens=10, do_sample=True, top_k=1, seed=0), greedy)


class FixedLM(nn.Module):
    """A "language model" whose next-token logits are always ``logits``: a known distribution to sample."""

    block_size = 64

    def __init__(self, logits: Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, input_ids: Tensor, cache: KVCache | None = None) -> ModelOutput:
        b, t = input_ids.shape
        if cache is not None:
            cache.update(0, torch.zeros(b, 1, t, 1), torch.zeros(b, 1, t, 1))
        return ModelOutput(logits=self.logits.expand(b, t, -1))

    def new_cache(self) -> KVCache:
        return KVCache(1)


def test_sampling_frequencies_follow_the_warped_distribution() -> None:
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, 1.5])
    model, n = FixedLM(logits), 20000
    prompts = torch.zeros(n, 1, dtype=torch.long)
    out = generate(model, prompts, max_new_tokens=1, do_sample=True, temperature=2.0, top_k=3, seed=0)
    freq = torch.bincount(out[:, 1], minlength=6).float() / n
    expected = torch.zeros(6)
    expected[[0, 5, 1]] = (logits[[0, 5, 1]] / 2).softmax(0)  # the 3 best, renormalised at temperature 2
    torch.testing.assert_close(freq, expected, atol=0.015, rtol=0)
    out = generate(model, prompts, max_new_tokens=1, do_sample=True, top_p=0.6, seed=0)  # nucleus {0, 5}
    probs = logits.softmax(0)
    assert probs[0] < 0.6 <= probs[0] + probs[5]
    freq = torch.bincount(out[:, 1], minlength=6).float() / n
    torch.testing.assert_close(freq[[0, 5]], probs[[0, 5]] / probs[[0, 5]].sum(), atol=0.015, rtol=0)
    assert freq[[1, 2, 3, 4]].sum() == 0


# --------------------------------------------------------------------------------------------------------
# Beam search against exhaustive search
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("eos", "length_penalty"), [(None, 1.0), (3, 0.0), (3, 1.0), (3, 2.0), (3, -0.5)])
def test_beam_search_equals_exhaustive_search(eos: int | None, length_penalty: float) -> None:
    """With num_beams >= every live prefix (vocab 4, 3 new tokens: 4^3 = 64), beam search is exhaustive:
    its ranking must be the ranking of all possible outputs by ``sum log p / L ** length_penalty``."""
    model = tiny_lm(vocab=4, seed=3)
    prompt = torch.tensor([1, 0, 2])
    candidates = all_sequences(4, 3, eos)
    scored = sorted(
        ((lm_logprob(model, prompt, list(s)) / len(s) ** length_penalty, s) for s in candidates), reverse=True
    )
    out = generate(
        model,
        prompt[None],
        max_new_tokens=3,
        num_beams=64,
        num_return_sequences=5,
        length_penalty=length_penalty,
        eos_token_id=eos,
        pad_token_id=0,
        return_dict_in_generate=True,
    )
    for row, score, (ref_score, ref_seq) in zip(out.sequences, out.sequences_scores, scored[:5], strict=True):
        assert tuple(row[3 : 3 + len(ref_seq)].tolist()) == ref_seq
        assert math.isclose(score.item(), ref_score, abs_tol=1e-4)
    assert out.sequences_scores[0].item() >= max(s for s, _ in scored) - 1e-4


def test_beam_sampling_returns_valid_hypotheses() -> None:
    model, prompts = tiny_lm(), torch.randint(0, 11, (2, 3))
    kw = dict(max_new_tokens=6, num_beams=3, num_return_sequences=3, do_sample=True, top_k=5, eos_token_id=3)
    out = generate(model, prompts, seed=0, return_dict_in_generate=True, **kw)
    assert torch.equal(generate(model, prompts, seed=0, **kw), out.sequences)
    assert (out.sequences_scores[:3].diff() <= 0).all()  # best first
    for row, prompt in zip(out.sequences, prompts.repeat_interleave(3, 0), strict=True):
        new = row[3:].tolist()
        length = new.index(3) + 1 if 3 in new else len(new)
        assert torch.equal(row[:3], prompt)
        assert all(t == 3 for t in new[length:])  # pad defaults to eos


# --------------------------------------------------------------------------------------------------------
# Encoder-decoder
# --------------------------------------------------------------------------------------------------------


def reference_seq2seq_greedy(model: EncoderDecoder, src: Tensor, max_new: int) -> Tensor:
    """Recompute the whole decoder every step, argmax, pad after eos."""
    cfg = model.config
    with torch.no_grad():
        memory, _ = model.encode(src)
        ys = torch.full((src.size(0), 1), cfg.bos_id)
        done = torch.zeros(src.size(0), dtype=torch.bool)
        for _ in range(max_new):
            nxt = model.decode(ys, memory).logits[:, -1].argmax(-1)
            nxt = torch.where(done, cfg.pad_id, nxt)
            done |= nxt == cfg.eos_id
            ys = torch.cat([ys, nxt[:, None]], 1)
            if done.all():
                break
    return ys[:, 1:]


def test_seq2seq_greedy_cache_equals_recompute() -> None:
    model = tiny_seq2seq()
    src = torch.randint(3, 9, (6, 5))
    ref = reference_seq2seq_greedy(model, src, 11)
    assert torch.equal(generate_seq2seq(model, src, use_cache=False), ref)
    assert torch.equal(generate_seq2seq(model, src), ref)
    assert torch.equal(model.generate(src), ref)
    assert (ref == model.config.eos_id).any()  # the test exercises stopping and padding
    # Past max_len (12) the decoder slides its window; an eos it cannot produce makes it run to the end.
    long = generate_seq2seq(model, src, max_new_tokens=25, eos_token_id=99)
    assert long.shape == (6, 25)
    assert torch.equal(generate_seq2seq(model, src, max_new_tokens=25, eos_token_id=99, use_cache=False), long)


def test_seq2seq_output_format_and_source_padding() -> None:
    model, cfg = tiny_seq2seq(), tiny_seq2seq().config
    src = torch.randint(3, 9, (3, 5))
    out = generate_seq2seq(model, src, num_beams=3, num_return_sequences=2)
    assert out.size(0) == 6 and out.size(1) <= cfg.max_len - 1
    for row in out.tolist():  # pad only after eos
        if cfg.eos_id in row:
            assert all(t == cfg.pad_id for t in row[row.index(cfg.eos_id) + 1 :])
    # A padded source row decodes like the same source alone (src_mask reaches every step and beam).
    padded = torch.cat([src[:1, :3], torch.zeros(1, 2, dtype=torch.long)], 1)
    batch, mask = torch.cat([padded, src[1:]]), torch.ones(3, 5, dtype=torch.long)
    mask[0, 3:] = 0
    for k in (1, 3):
        alone = generate_seq2seq(model, src[:1, :3], num_beams=k)
        both = generate_seq2seq(model, batch, mask, num_beams=k)
        assert torch.equal(both[0, : alone.size(1)], alone[0]) and (both[0, alone.size(1) :] == cfg.pad_id).all()


def test_seq2seq_beam_cache_equals_recompute() -> None:
    model, src = tiny_seq2seq(), torch.randint(3, 9, (4, 5))
    kw = dict(num_beams=4, num_return_sequences=2, length_penalty=0.5)
    a = generate_seq2seq(model, src, return_dict_in_generate=True, **kw)
    b = generate_seq2seq(model, src, use_cache=False, return_dict_in_generate=True, **kw)
    assert torch.equal(a.sequences, b.sequences)
    torch.testing.assert_close(a.sequences_scores, b.sequences_scores)


def test_seq2seq_beam_is_exhaustive_and_beats_greedy() -> None:
    """tgt vocab 5 and 3 new tokens: num_beams=64 covers every prefix, so beam search (length_penalty=0:
    pure log-probability) finds the most probable output, at least as probable as greedy's."""
    model = tiny_seq2seq(tgt_vocab=5, seed=1)
    cfg = model.config
    src = torch.randint(3, 9, (3, 5))
    greedy = generate_seq2seq(model, src, max_new_tokens=3)
    beam = generate_seq2seq(model, src, max_new_tokens=3, num_beams=64, length_penalty=0.0)
    assert (seq2seq_logprob(model, src, None, beam) >= seq2seq_logprob(model, src, None, greedy) - 1e-5).all()
    for i in range(3):
        outputs = all_sequences(5, 3, cfg.eos_id)
        tgts = torch.tensor([list(s) + [cfg.pad_id] * (3 - len(s)) for s in outputs])
        logp = seq2seq_logprob(model, src[i : i + 1].expand(len(tgts), -1), None, tgts)
        best = tgts[logp.argmax()]
        assert torch.equal(F.pad(beam[i], (0, 3 - beam.size(1)), value=cfg.pad_id), best)


def gnmt_score(model: EncoderDecoder, src: Tensor, mask: Tensor, tgt: Tensor, lp: float, beta: float) -> Tensor:
    """GNMT's beam score of each row of ``tgt`` (B, L) by one full forward pass: ``log p / L ** lp + beta *
    sum_i log(min(c_i, 1))``, ``c_i`` the last decoder layer's cross-attention (heads averaged) on source token
    ``i`` summed over the positions that produced the output (eos included), real source tokens only."""
    cfg = model.config
    ends = (tgt == cfg.eos_id).long()
    length = torch.where(ends.any(1), ends.argmax(1) + 1, torch.tensor(tgt.size(1)))  # new tokens, eos included
    dec_in = torch.cat([torch.full((tgt.size(0), 1), cfg.bos_id), tgt[:, :-1]], dim=1)
    with torch.no_grad():
        memory, _ = model.encode(src, mask)
        attn = model.decode(dec_in, memory, mask, output_attentions=True).cross_attentions[-1].mean(1)  # (B, L, S)
    produced = torch.arange(tgt.size(1))[None, :] < length[:, None]
    coverage = (attn * produced[..., None]).sum(1)
    penalty = coverage.clamp(max=1.0).log().masked_fill(mask == 0, 0.0).sum(1)
    return seq2seq_logprob(model, src, mask, tgt) / length**lp + beta * penalty


@pytest.mark.parametrize("use_cache", [True, False])
def test_coverage_penalty_scores_are_gnmt(use_cache: bool) -> None:
    """Every hypothesis beam search returns scores what GNMT's formula gives it by a full forward pass, padding
    excluded; and the penalty changes what is chosen (the same search without it returns other outputs)."""
    model = tiny_seq2seq(seed=2)
    src, mask = torch.randint(3, 9, (4, 6)), torch.ones(4, 6, dtype=torch.long)
    mask[1, 4:] = 0
    mask[3, 2:] = 0
    kw = dict(num_beams=4, num_return_sequences=3, length_penalty=0.7, max_new_tokens=8, use_cache=use_cache)
    out = generate_seq2seq(model, src, mask, coverage_penalty=0.8, return_dict_in_generate=True, **kw)
    rows = mask.repeat_interleave(3, dim=0)
    expected = gnmt_score(model, src.repeat_interleave(3, dim=0), rows, out.sequences, 0.7, 0.8)
    torch.testing.assert_close(out.sequences_scores, expected, atol=1e-4, rtol=1e-4)
    plain = generate_seq2seq(model, src, mask, **kw)
    assert not torch.equal(F.pad(plain, (0, 9 - plain.size(1))), F.pad(out.sequences, (0, 9 - out.sequences.size(1))))


def test_coverage_penalty_needs_a_source() -> None:
    with pytest.raises(ValueError, match="encoder-decoder"):
        generate(tiny_lm(), torch.randint(0, 11, (1, 3)), num_beams=2, coverage_penalty=0.2)
    for bad in (-0.1, float("inf")):
        with pytest.raises(ValueError, match="coverage_penalty"):
            generate_seq2seq(tiny_seq2seq(), torch.randint(3, 9, (1, 4)), num_beams=2, coverage_penalty=bad)


# --------------------------------------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------------------------------------

BAD_ARGS = [
    dict(max_new_tokens=-1),
    dict(max_new_tokens=2.5),
    dict(do_sample=True, temperature=0.0),
    dict(do_sample=True, temperature=-1.0),
    dict(top_p=0.0),
    dict(top_p=1.5),
    dict(top_k=1.5),
    dict(top_k=-3),
    dict(min_p=-0.1),
    dict(min_p=1.5),
    dict(typical_p=0.0),
    dict(typical_p=1.5),
    dict(num_beams=0),
    dict(num_beams=2, num_return_sequences=3),
    dict(num_return_sequences=2),  # greedy
    dict(num_return_sequences=0, do_sample=True),
    dict(repetition_penalty=0.0),
    dict(no_repeat_ngram_size=-1),
    dict(length_penalty=float("nan")),
    dict(early_stopping="sometimes"),
    dict(eos_token_id=-1),
    dict(eos_token_id=[]),
    dict(eos_token_id="2"),
    dict(pad_token_id=-1),
    dict(seed=0, generator=torch.Generator()),
    dict(streamer=print, num_beams=2),
    dict(streamer="not callable"),
]


@pytest.mark.parametrize(
    "kwargs",
    BAD_ARGS,
    ids=lambda kw: ",".join(
        f"{k}={type(v).__name__ if callable(v) or isinstance(v, torch.Generator) else v}" for k, v in kw.items()
    ),
)
def test_bad_arguments_raise_value_error(kwargs: dict) -> None:
    model, prompts = tiny_lm(), torch.randint(0, 11, (2, 3))
    with pytest.raises(ValueError) as info:
        generate(model, prompts, **kwargs)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError):
        generate_seq2seq(tiny_seq2seq(), prompts, **kwargs)


@pytest.mark.parametrize(
    "ids",
    [
        torch.zeros(2, 0, dtype=torch.long),
        torch.zeros(0, 3, dtype=torch.long),
        torch.zeros(4),
        torch.zeros(3),
    ],
)
def test_bad_prompts_raise_value_error(ids: Tensor) -> None:
    with pytest.raises(ValueError):
        generate(tiny_lm(), ids)
    with pytest.raises(ValueError):
        generate_seq2seq(tiny_seq2seq(), ids)
