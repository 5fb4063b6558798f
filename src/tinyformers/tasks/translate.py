"""German -> English translation with the paper's encoder-decoder, trained from scratch, scored with BLEU.

Data: the example sentences of the Ding German-English dictionary (Debian ``trans-de-en``, GPL: read at run
time, never copied into the repository), or any ``source<TAB>target`` file via ``--set pairs=PATH``.

* **Pairs, split, tokens** (:mod:`tinyformers.data.translation`): about 15,000 sentence pairs, split without
  leaks (trivial variants of a sentence stay in one split), one byte-level BPE vocabulary for both languages.
* **Model.** :class:`~tinyformers.core.models.EncoderDecoder` with shared embeddings (§3.4), trained with label
  smoothing (§5.4, Szegedy et al. 2016) under warmup + cosine decay.
* **Scores.** sacreBLEU BLEU and chrF of greedy and beam-search translations (§6.1 uses beam search with a
  length penalty), against two baselines on the same test sentences: copying the source, and translating
  word by word with the dictionary's own single-word entries.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import torch
from torch import Tensor, nn

from tinyformers.core.generation.mbr import mbr_pick
from tinyformers.core.models import EncoderDecoder, Seq2SeqConfig
from tinyformers.core.tokenizers import BPETokenizer
from tinyformers.data import translation as pairs_io
from tinyformers.data.padding import pad_rows
from tinyformers.data.translation import BOS, EOS, PAD, Example, decode, run_tokenizer
from tinyformers.engine.task import Batch, ModelSizes, Predicts, Scorecard, Task, TaskData, TrainConfig, ViewsAttention
from tinyformers.errors import UserError
from tinyformers.viz.figures import draw_cross_attention

IdPair = tuple[list[int], list[int]]  # (source ids, target ids + <eos>)


@dataclass
class TranslateConfig(ModelSizes, TrainConfig):
    """Attributes:
    pairs: a UTF-8 TSV of ``source<TAB>target`` lines to use instead of the dictionary ('' = the dictionary).
    n_val, n_test: held-out groups of sentences (see the module docstring). data_seed: fixes the split.
    vocab_size: shared BPE vocabulary. max_len: longest token sequence; longer training pairs are dropped and
        longer held-out sources cut.
    d_model, n_heads, n_layers (encoder and decoder each), d_ff, dropout, activation: the model.
    label_smoothing: probability mass spread over the vocabulary in the training loss (§5.4: 0.1).
    num_beams, length_penalty: beam search for the test scores and for ``predict`` (§6.1: 4 beams).
    length_penalties: candidate length penalties, comma-separated (e.g. '0.6,1.0,1.4'): before the test scores,
        beam search translates the validation split with each and the best one (by ``length_penalty_metric``)
        is used for the test ('' = length_penalty as set). metrics.json reports the choice (``length_penalty_chosen``).
    length_penalty_metric: what picks the length penalty on validation: 'bleu' (then chrF on a tie) or 'chrf'
        (then BLEU). chrF weighs character n-gram recall twice as much as precision (beta = 2), so it can prefer
        longer translations than BLEU does.
    mbr: '' (off), 'chrf' or 'bleu': minimum Bayes risk decoding (:mod:`tinyformers.core.generation.mbr`). Beam
        search keeps its ``num_beams`` finished hypotheses and the translation is the one with the highest mean
        sentence-level chrF (or BLEU) against the pseudo-references -- the consensus -- instead of the most
        probable; the length penalty is then chosen on validation for the MBR picks. The test metrics of the
        beam's own best (``test_bleu_beam_top``, ``test_chrf_top``; on validation ``val_chrf_top_lp<l>``...)
        come from the same search, for comparison. Needs ``num_beams >= 2``. mbr_samples: the pseudo-references:
        0 = the beam's other hypotheses; N = N translations sampled from the model (temperature 1, the whole
        vocabulary; seeded by ``seed``, so an evaluation repeats), which estimate the expected score without the
        beam's bias to similar outputs, at the cost of sampling N translations a sentence.
    coverage_penalty: beam search's coverage penalty (GNMT, Wu et al. 2016; ``GenerationConfig.coverage_penalty``):
        a translation that leaves source tokens unattended scores lower. 0 = off. coverage_penalties: candidates,
        comma-separated, chosen on validation together with the length penalty (every pair of the two grids;
        metrics.json: ``coverage_penalty_chosen``, ``val_chrf_lp<l>_cp<c>``...).
    extra_pairs: 'dictionary' adds the dictionary's other entries (words, forms, phrases) as training pairs, none
        holding a held-out sentence (the held-out sentences stay as with 'none'). extra_share: their share of a batch.
    extra_batch: 0 = the extra pairs are ``extra_share`` of the batch, padded with the sentences to the longest
        row (most extra pairs are a few tokens long, so most of their row is padding). N > 0 = every step also
        takes N extra pairs as a sub-batch of their own (the sentence batch keeps all ``batch_size`` rows,
        ``extra_share`` is not used), N neighbours in the extra pairs sorted by length (shuffled first), so the
        sub-batch is padded to about its own length: length bucketing, as NMT toolkits batch by tokens. The
        loss is the mean over the target tokens of both.
    length_buckets: draw each step's sentences as ``batch_size`` neighbours in the training pairs sorted by
        length (shuffled first) instead of at random, so a batch is padded to about its own length (random
        batches of 64 are padded to ~2x their mean length).
    pretranslate: the encoder reads the German sentence, ``' || '`` and its word-by-word dictionary lookup (the
        baseline's output), in training and at test time: pre-translation (Niehues et al., 2016, "Pre-Translation
        for Neural Machine Translation"). The model then learns to reorder and to choose among the dictionary's
        guesses instead of recalling 282,058 word forms from ~15k sentences. Needs the dictionary installed (also
        with ``pairs=``); a source may then be up to ``2 * max_len`` tokens. pretranslate_extras: the extra pairs
        (``extra_pairs``) get their lookup too (false: they stay plain, short and cheap; the sentences and every
        held-out source still get theirs). hint_candidates: with ``pretranslate``, each word of the lookup
        is its N most frequent dictionary translations joined by ``/`` (``Zeit`` -> ``spell/time of day``; 1 = the
        baseline's one guess), so the model can choose the one the sentence needs; a source may then be up to
        ``(1 + N) * max_len`` tokens.
    """

    pairs: str = ""
    n_val: int = 500
    n_test: int = 1000
    data_seed: int = 0
    vocab_size: int = 2000
    max_len: int = 64
    d_model: int = 128
    d_ff: int = 512
    dropout: float = 0.1
    activation: str = "relu"
    label_smoothing: float = 0.1
    num_beams: int = 4
    length_penalty: float = 1.0
    length_penalties: str = ""
    length_penalty_metric: str = "bleu"
    mbr: str = ""
    mbr_samples: int = 0
    coverage_penalty: float = 0.0
    coverage_penalties: str = ""
    max_steps: int = 1500
    cpu_bf16: bool = True  # bf16 autocast on a CPU with native bf16: faster at equal steps (docs/speed.md)
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    beta2: float = 0.98
    eval_every: int = 250
    extra_pairs: str = "none"
    extra_share: float = 0.5
    extra_batch: int = 0
    length_buckets: bool = False
    pretranslate: bool = False
    pretranslate_extras: bool = True
    hint_candidates: int = 1

    @property
    def source_len(self) -> int:
        """Longest source in tokens: ``max_len``; with ``pretranslate`` (the sentence and its lookup) ``1 +
        hint_candidates`` times that."""
        return (1 + self.hint_candidates) * self.max_len if self.pretranslate else self.max_len

    def __post_init__(self) -> None:
        super().__post_init__()
        bad = {
            "n_val and n_test must be >= 1": self.n_val < 1 or self.n_test < 1,
            "a byte-level BPE needs vocab_size >= 260 (3 specials, 256 bytes, merges)": self.vocab_size < 260,
            "max_len must be >= 4": self.max_len < 4,
            "label_smoothing must be in [0, 1)": not 0 <= self.label_smoothing < 1,
            "num_beams must be >= 1": self.num_beams < 1,
            "length_penalty_metric: bleu or chrf": self.length_penalty_metric not in ("bleu", "chrf"),
            "mbr: '' (off), chrf or bleu; with num_beams >= 2": self.mbr not in ("", "chrf", "bleu")
            or (bool(self.mbr) and self.num_beams < 2),
            "mbr_samples must be >= 0, and > 0 only with mbr": self.mbr_samples < 0
            or (self.mbr_samples > 0 and not self.mbr),
            "extra_pairs: none, or dictionary (with the dictionary's sentences, not pairs=)": self.extra_pairs
            not in ("none", "dictionary")
            or bool(self.pairs and self.extra_pairs != "none"),
            "extra_share must be in [0, 1)": not 0 <= self.extra_share < 1,
            "extra_batch must be >= 0, and > 0 only with extra_pairs=dictionary": self.extra_batch < 0
            or (self.extra_batch > 0 and self.extra_pairs != "dictionary"),
            "hint_candidates must be >= 1, and > 1 only with pretranslate=true": self.hint_candidates < 1
            or (self.hint_candidates > 1 and not self.pretranslate),
        }
        for message in (m for m, b in bad.items() if b):
            raise ValueError(message)  # the first one
        if self.length_penalties:
            penalty_grid(self.length_penalties)
        grid = penalty_grid(self.coverage_penalties, "coverage_penalties") if self.coverage_penalties else []
        if not all(0 <= v < float("inf") for v in [self.coverage_penalty, *grid]):
            raise ValueError("coverage_penalty and coverage_penalties must be finite numbers >= 0")


def by_length(pairs: list[IdPair], seed: int) -> list[IdPair]:
    """``pairs`` shuffled (by ``seed``), then stably sorted by (source, target) length: pairs of one length stay in
    random order, and any run of neighbours has similar lengths (a length bucket)."""
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted((pairs[i] for i in order), key=lambda p: (len(p[0]), len(p[1])))


def neighbours(n: int, size: int, generator: torch.Generator) -> Tensor:
    """Indices of ``size`` consecutive items (fewer if ``n`` is smaller) starting at a random place of ``0..n-1``."""
    size = min(size, n)
    start = int(torch.randint(n - size + 1, (1,), generator=generator))
    return torch.arange(start, start + size)


SEPARATOR = " || "  # between a sentence and its word-by-word lookup (``pretranslate``)
NEEDS_DICTIONARY = f"pretranslate=true needs the dictionary's words: {pairs_io.INSTALL_HINT}"


@functools.cache
def dictionary_words(path: str, candidates: int = 1) -> dict[str, str]:
    """The word-by-word dictionary of the file at ``path``, up to ``candidates`` translations a word (read once
    per process and ``candidates``: ~3 s for Ding's 282k forms)."""
    return pairs_io.dictionary_words(pairs_io.dictionary_entries(Path(path)), candidates)


def hinted(source: str, words: dict[str, str] | None) -> str:
    """``source`` as the encoder reads it: itself, or with ``pretranslate`` (``words`` given) followed by
    :data:`SEPARATOR` and its word-by-word lookup: ``'Ich bin müde. || I am tired.'``."""
    return source if words is None else source + SEPARATOR + pairs_io.word_by_word(source, words)


def mbr_translations(nbest: list[list[str]], metric: str, references: list[list[str]] | None = None) -> list[str]:
    """For each source's candidate translations, the minimum Bayes risk pick under sentence-level ``metric``
    (``chrf`` or ``bleu``): the one agreeing most with that source's ``references`` (samples), or with the other
    candidates when there are none."""
    utility = pairs_io.sentence_utility(metric)
    refs: list[list[str] | None] = [None] * len(nbest) if references is None else list(references)
    return [cands[mbr_pick(cands, utility, r)] for cands, r in zip(nbest, refs, strict=True)]


def penalty_grid(text: str, setting: str = "length_penalties") -> list[float]:
    """``'0.6,1.0,1.4'`` -> [0.6, 1.0, 1.4]; a ValueError naming the setting for anything else."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{setting}={text!r}: comma-separated numbers, e.g. 0.6,1.0,1.4") from None


class TranslateTask(Task[TranslateConfig], Predicts, ViewsAttention):
    name = "translate"
    summary = "German -> English sentences with an encoder-decoder, beam search and BLEU (or your own TSV pairs)"
    Config: ClassVar[type[TrainConfig]] = TranslateConfig
    predict_options: ClassVar[tuple[str, ...]] = ("num_beams", "length_penalty", "show_attention")
    metric: ClassVar[str] = "bleu_greedy"
    maximize: ClassVar[bool] = True
    scorecard: ClassVar[Scorecard | None] = Scorecard(
        "test_bleu_beam",
        baselines=("copy_bleu", "lookup_bleu"),
        also=(("test_chrf", ("copy_chrf", "lookup_chrf")),),
        quick=(  # without the extra pairs: parsing 0.5M of them takes minutes
            "d_model=32",
            "n_heads=2",
            "n_layers=1",
            "d_ff=64",
            "n_val=20",
            "n_test=20",
            "max_len=24",
            "extra_pairs=none",
            "extra_batch=0",
            "num_beams=2",
        ),
        summary="Held-out corpus BLEU and chrF (sacrebleu) of German->English translation with beam search, "
        "against copying the source and a word-by-word dictionary lookup (the dictionary's single-word entries); "
        "a win needs both metrics ahead.",
        # docs/tasks/translate.md, "Minimum Bayes risk decoding": pre-translation, 128 extra pairs, 8 beams, MBR
        recipe=(
            "pretranslate=true",
            "vocab_size=4000",
            "extra_pairs=dictionary",
            "extra_batch=128",
            "length_buckets=true",
            "num_beams=8",
            "length_penalties=1.0,1.4,2.0,2.5",
            "length_penalty_metric=chrf",
            "mbr=chrf",
            "mbr_samples=32",
            "max_steps=100000",
            "eval_every=1000",
            "compile=off",
        ),
        budget_minutes=30.0,
    )

    def data_status(self, cfg: TranslateConfig) -> str | None:
        if cfg.pretranslate and not pairs_io.DING.is_file():
            return NEEDS_DICTIONARY
        return None if cfg.pairs or pairs_io.DING.is_file() else pairs_io.INSTALL_HINT

    def data(self, cfg: TranslateConfig, meta: dict[str, Any] | None = None) -> TaskData:
        entries = None
        if cfg.pairs:
            pairs, source = pairs_io.read_pairs(cfg.pairs), cfg.pairs
        elif pairs_io.DING.is_file():
            entries = pairs_io.dictionary_entries(pairs_io.DING)
            pairs, source = pairs_io.dictionary_sentences(entries), str(pairs_io.DING)
        else:
            raise UserError(pairs_io.INSTALL_HINT)
        splits = pairs_io.split_pairs(pairs, cfg.n_val, cfg.n_test, cfg.data_seed, source)
        splits["extra"], held_out = [], splits["val"] + splits["test"]
        if cfg.extra_pairs == "dictionary" and entries is not None:  # with pairs=, the config refuses it
            splits["extra"] = pairs_io.without_held_out(pairs_io.dictionary_phrases(entries), held_out)
        texts = [text for pair in splits["train"] + splits["extra"] for text in pair]
        tok = run_tokenizer(meta) if meta else pairs_io.train_tokenizer(texts, cfg.vocab_size)
        words = self.hint_words(cfg)
        extra_words = words if cfg.pretranslate_extras else None
        for name, part, hints in (("train_ids", splits["train"], words), ("extra_ids", splits["extra"], extra_words)):
            sides = [text for de, en in part for text in (hinted(de, hints), en)]  # source, target, source, ...
            ids = [e.ids for e in tok.tokenizer.encode_batch(sides)]
            encoded = zip(ids[0::2], [t + [EOS] for t in ids[1::2]], strict=True)
            splits[name] = [(s, t) for s, t in encoded if len(s) <= cfg.source_len and len(t) <= cfg.max_len]
        if not splits["train_ids"]:
            raise UserError(f"{source}: no training pair fits in max_len={cfg.max_len} tokens")
        if cfg.length_buckets:
            splits["train_ids"] = by_length(splits["train_ids"], cfg.data_seed)
        if cfg.extra_batch:
            splits["extra_ids"] = by_length(splits["extra_ids"], cfg.data_seed)
        splits["train_rows"] = pairs_io.pad_pairs(splits["train_ids"])  # padded once: a batch indexes rows
        if entries is not None:  # the word-by-word baseline needs the German-English dictionary
            splits["words"] = pairs_io.dictionary_words(entries)
        return TaskData(splits, {"tokenizer": tok.to_dict()})

    def hint_words(self, cfg: TranslateConfig) -> dict[str, str] | None:
        """The dictionary's word-by-word translations with ``pretranslate`` (else None); a UserError if missing."""
        if not cfg.pretranslate:
            return None
        if not pairs_io.DING.is_file():
            raise UserError(NEEDS_DICTIONARY)
        return dictionary_words(str(pairs_io.DING), cfg.hint_candidates)

    def source_ids(self, cfg: TranslateConfig, tok: BPETokenizer, sources: list[str]) -> list[list[int]]:
        """Token ids of ``sources`` as the encoder reads them (with their lookup under ``pretranslate``), cut to
        ``cfg.source_len``."""
        words = self.hint_words(cfg)
        return [tok.encode(hinted(s, words))[: cfg.source_len] for s in sources]

    def model(self, cfg: TranslateConfig, meta: dict[str, Any]) -> nn.Module:
        vocab = len(run_tokenizer(meta))
        return EncoderDecoder(
            Seq2SeqConfig(
                **cfg.sizes(),
                activation=cfg.activation,
                max_len=cfg.source_len,
                positions="sinusoidal",
                src_vocab_size=vocab,
                tgt_vocab_size=vocab,
                share_embeddings=True,
                pad_id=PAD,
                bos_id=BOS,
                eos_id=EOS,
            )
        )

    def batch(self, data: TaskData, cfg: TranslateConfig, generator: torch.Generator) -> Batch:
        """Training pairs drawn at random (or, with ``length_buckets``, as neighbours in length order); extra pairs
        as ``extra_share`` of the batch, or as a length-bucketed sub-batch of ``extra_batch`` pairs of their own."""
        train, extra = data.splits["train_ids"], data.splits["extra_ids"]
        src, tgt = data.splits["train_rows"]
        mixed = round(cfg.extra_share * cfg.batch_size) if extra and not cfg.extra_batch else 0
        size = cfg.batch_size - mixed
        if cfg.length_buckets:
            idx = neighbours(len(train), size, generator)
        else:
            idx = torch.randint(len(train), (size,), generator=generator)
        if not extra or not (mixed or cfg.extra_batch):  # the training split alone: its rows were padded once
            return pairs_io.collate_pairs((src.take(idx), tgt.take(idx)))
        if cfg.extra_batch:  # all batch_size sentences, and a length bucket of extra pairs of its own
            sentences = pairs_io.collate_pairs((src.take(idx), tgt.take(idx)))
            bucket = pairs_io.collate_pairs([extra[i] for i in neighbours(len(extra), cfg.extra_batch, generator)])
            return {**sentences, **{f"extra_{k}": v for k, v in bucket.items()}}
        jdx = torch.randint(len(extra), (mixed,), generator=generator).tolist()
        return pairs_io.collate_pairs([train[i] for i in idx.tolist()] + [extra[j] for j in jdx])

    def loss(self, model: nn.Module, batch: Batch, cfg: TranslateConfig) -> Tensor:
        """Cross-entropy with label smoothing (§5.4): the target is ``(1 - eps) one_hot + eps / V``; padding
        ignored. With a sub-batch of extra pairs (``extra_batch``), the mean over the target tokens of both."""
        main = {k: v for k, v in batch.items() if not k.startswith("extra_")}
        loss = cast(Tensor, model(**main, label_smoothing=cfg.label_smoothing).loss)
        if "extra_labels" not in batch:
            return loss
        extra = {k.removeprefix("extra_"): v for k, v in batch.items() if k.startswith("extra_")}
        extra_loss = cast(Tensor, model(**extra, label_smoothing=cfg.label_smoothing).loss)
        n, n_extra = (batch["labels"] != PAD).sum(), (batch["extra_labels"] != PAD).sum()
        return (loss * n + extra_loss * n_extra) / (n + n_extra)

    def translate(
        self,
        model: nn.Module,
        cfg: TranslateConfig,
        tok: BPETokenizer,
        sources: list[str],
        num_beams: int = 1,
        length_penalty: float = 1.0,
        coverage_penalty: float = 0.0,
    ) -> list[str]:
        """Translations of ``sources``, batched by source length (little padding), in input order; with beam search
        and ``cfg.mbr``, each the minimum Bayes risk pick among the beam's hypotheses (:meth:`beam_and_chosen`)."""
        refs = self.mbr_references(model, cfg, tok, sources) if cfg.mbr and num_beams >= 2 else None
        return self.beam_and_chosen(model, cfg, tok, sources, num_beams, length_penalty, coverage_penalty, refs)[1]

    def translate_nbest(
        self,
        model: nn.Module,
        cfg: TranslateConfig,
        tok: BPETokenizer,
        sources: list[str],
        num_beams: int = 1,
        length_penalty: float = 1.0,
        coverage_penalty: float = 0.0,
        n: int = 1,
        **sampling: Any,
    ) -> list[list[str]]:
        """The ``n`` best translations of each source (beam search's finished hypotheses, best first; ``n <=
        num_beams``), batched by source length (little padding), in input order. ``sampling``: generation
        options that draw ``n`` translations instead (``do_sample=True``...; ``seed`` is offset per batch)."""
        device = next(model.parameters()).device
        ids = [s or [EOS] for s in self.source_ids(cfg, tok, sources)]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: list[list[str]] = [[] for _ in ids]
        for start in range(0, len(order), 64):
            chunk = order[start : start + 64]
            src = pad_rows([ids[i] for i in chunk], PAD).to(device)
            max_new = min(cfg.max_len - 1, 2 * src.size(1) + 10)  # a translation is rarely twice as long
            seed = {"seed": sampling["seed"] + start} if "seed" in sampling else {}
            gen = cast(EncoderDecoder, model).generate(  # the model this task built (maybe compiled)
                src,
                (src != PAD).long(),
                max_new_tokens=max_new,
                num_beams=num_beams,
                length_penalty=length_penalty,
                coverage_penalty=coverage_penalty,  # (greedy ignores it, as it does length_penalty)
                num_return_sequences=n,
                **{**sampling, **seed},
            )
            rows = gen.tolist()
            for j, i in enumerate(chunk):
                out[i] = [decode(tok, row) for row in rows[j * n : (j + 1) * n]]
        return out

    def evaluate(self, model: nn.Module, data: TaskData, split: str, cfg: TranslateConfig) -> dict[str, float]:
        """Loss (without smoothing), greedy BLEU/chrF and the baselines; beam search on the test split only
        (it is several times slower, and model selection uses greedy BLEU on validation)."""
        examples: list[Example] = data.splits[split]
        tok = run_tokenizer(data.meta)
        device = next(model.parameters()).device
        total, count = 0.0, 0
        sources = [s for s, _ in examples]
        targets = [(tok.encode(refs[0]) + [EOS])[: cfg.max_len] for _, refs in examples]
        pairs = list(zip(self.source_ids(cfg, tok, sources), targets, strict=True))
        for i in range(0, len(pairs), 128):
            batch = {k: v.to(device) for k, v in pairs_io.collate_pairs(pairs[i : i + 128]).items()}
            n = int((batch["labels"] != PAD).sum())
            total += model(**batch).loss.item() * n
            count += n
        greedy = self.translate(model, cfg, tok, sources)
        bleu, chrf = pairs_io.corpus_scores(greedy, examples)
        copy_bleu, copy_chrf = pairs_io.corpus_scores(sources, examples)
        metrics = {
            f"{split}_loss": total / count,
            f"{split}_bleu_greedy": bleu,
            f"{split}_chrf_greedy": chrf,
            "copy_bleu": copy_bleu,
            "copy_chrf": copy_chrf,
        }
        if split != "val":
            lp, cp = cfg.length_penalty, cfg.coverage_penalty
            if cfg.length_penalties or cfg.coverage_penalties:
                (lp, cp), by_value = self.tune_penalties(model, data, cfg, tok)
                metrics.update(length_penalty_chosen=lp, **by_value)
                if cfg.coverage_penalties:
                    metrics["coverage_penalty_chosen"] = cp
            refs = self.mbr_references(model, cfg, tok, sources) if cfg.mbr else None
            top, chosen = self.beam_and_chosen(model, cfg, tok, sources, cfg.num_beams, lp, cp, refs)
            metrics[f"{split}_bleu_beam"], metrics[f"{split}_chrf"] = pairs_io.corpus_scores(chosen, examples)
            if cfg.mbr:
                metrics[f"{split}_bleu_beam_top"], metrics[f"{split}_chrf_top"] = pairs_io.corpus_scores(top, examples)
        if "words" in data.splits:
            lookup = [pairs_io.word_by_word(s, data.splits["words"]) for s in sources]
            metrics["lookup_bleu"], metrics["lookup_chrf"] = pairs_io.corpus_scores(lookup, examples)
        return metrics

    def tune_penalties(
        self, model: nn.Module, data: TaskData, cfg: TranslateConfig, tok: Any
    ) -> tuple[tuple[float, float], dict[str, float]]:
        """The (length penalty, coverage penalty) pair of ``cfg.length_penalties`` x ``cfg.coverage_penalties``
        (an empty grid: the single value set) whose beam search scores the best validation BLEU then chrF
        (``length_penalty_metric=chrf``: chrF then BLEU); and each pair's validation BLEU and chrF
        (``val_bleu_beam_lp<l>``, ``val_chrf_lp<l>``; ``..._cp<c>`` with a coverage grid)."""
        examples: list[Example] = data.splits["val"]
        sources = [s for s, _ in examples]
        lps = penalty_grid(cfg.length_penalties) if cfg.length_penalties else [cfg.length_penalty]
        cps = (
            penalty_grid(cfg.coverage_penalties, "coverage_penalties")
            if cfg.coverage_penalties
            else [cfg.coverage_penalty]
        )
        scores: dict[tuple[float, float], tuple[float, float]] = {}
        tops: dict[tuple[float, float], tuple[float, float]] = {}  # the beam's own best, with mbr
        refs = self.mbr_references(model, cfg, tok, sources) if cfg.mbr else None  # the same for every penalty
        for lp in lps:
            for cp in cps:
                top, chosen = self.beam_and_chosen(model, cfg, tok, sources, cfg.num_beams, lp, cp, refs)
                scores[lp, cp] = pairs_io.corpus_scores(chosen, examples)
                if cfg.mbr:
                    tops[lp, cp] = pairs_io.corpus_scores(top, examples)
        first = 0 if cfg.length_penalty_metric == "bleu" else 1
        best = max(scores, key=lambda v: (scores[v][first], scores[v][1 - first]))

        def key(lp: float, cp: float) -> str:
            return f"lp{lp:g}_cp{cp:g}" if cfg.coverage_penalties else f"lp{lp:g}"

        by_value = {f"val_bleu_beam_{key(*v)}": bleu for v, (bleu, _) in scores.items()}
        by_value.update({f"val_chrf_{key(*v)}": chrf for v, (_, chrf) in scores.items()})
        by_value.update({f"val_bleu_beam_top_{key(*v)}": bleu for v, (bleu, _) in tops.items()})
        by_value.update({f"val_chrf_top_{key(*v)}": chrf for v, (_, chrf) in tops.items()})
        return best, by_value

    def beam_and_chosen(
        self,
        model: nn.Module,
        cfg: TranslateConfig,
        tok: BPETokenizer,
        sources: list[str],
        num_beams: int,
        lp: float,
        cp: float,
        references: list[list[str]] | None = None,
    ) -> tuple[list[str], list[str]]:
        """Beam search's best translations and the ones the recipe outputs: the same, or with ``cfg.mbr`` (and
        ``num_beams >= 2``) the minimum Bayes risk picks among all ``num_beams`` hypotheses of the same search,
        against ``references`` (:meth:`mbr_references`: computed once for every penalty tried)."""
        mbr = bool(cfg.mbr) and num_beams >= 2
        nbest = self.translate_nbest(model, cfg, tok, sources, num_beams, lp, cp, num_beams if mbr else 1)
        top = [best[0] for best in nbest]
        return top, (mbr_translations(nbest, cfg.mbr, references) if mbr else top)

    def mbr_references(
        self, model: nn.Module, cfg: TranslateConfig, tok: BPETokenizer, sources: list[str]
    ) -> list[list[str]] | None:
        """MBR's pseudo-references for each source: ``cfg.mbr_samples`` translations sampled from the model
        (temperature 1, the whole vocabulary, seeded by ``cfg.seed``); None (the beam's own hypotheses) when 0."""
        if not cfg.mbr_samples:
            return None
        return self.translate_nbest(
            model, cfg, tok, sources, 1, n=cfg.mbr_samples, do_sample=True, top_k=0, seed=cfg.seed
        )

    def predict(
        self,
        model: nn.Module,
        cfg: TranslateConfig,
        meta: dict[str, Any],
        inputs: list[str],
        *,
        num_beams: int | None = None,
        length_penalty: float | None = None,
        show_attention: str | Path | None = None,
        **options: Any,
    ) -> list[str]:
        """Translate each input (beam search with ``cfg.num_beams`` unless told otherwise); with
        ``show_attention``, also draw the cross-attention of the (single) input to that PNG."""
        if any(not text.strip() for text in inputs):
            raise UserError("an input is empty; give a sentence to translate")
        if show_attention is not None and len(inputs) != 1:
            raise UserError("--show-attention draws one sentence; give one input")
        beams = cfg.num_beams if num_beams is None else num_beams
        if beams < 1:
            raise UserError(f"--num-beams {beams}: must be >= 1")
        tok = run_tokenizer(meta)
        lp = cfg.length_penalty if length_penalty is None else length_penalty
        outputs = self.translate(model, cfg, tok, [t.strip() for t in inputs], beams, lp, cfg.coverage_penalty)
        if show_attention is not None:
            self.draw_cross_attention(model, cfg, tok, inputs[0].strip(), outputs[0], show_attention)
        return outputs

    def attention(
        self,
        model: nn.Module,
        cfg: TranslateConfig,
        meta: dict[str, Any],
        text: str,
        out: Path,
        html: Path | None = None,
    ) -> list[str]:
        """Translate ``text`` (beam search) and draw the decoder's cross-attention on it."""
        if html is not None:
            raise UserError(f"task {self.name!r} does not take --html")
        if not text.strip():
            raise UserError("the input is empty; give a sentence to translate")
        tok = run_tokenizer(meta)
        translation = self.translate(
            model, cfg, tok, [text.strip()], cfg.num_beams, cfg.length_penalty, cfg.coverage_penalty
        )[0]
        return [self.draw_cross_attention(model, cfg, tok, text.strip(), translation, out)]

    def draw_cross_attention(
        self, model: nn.Module, cfg: TranslateConfig, tok: BPETokenizer, source: str, translation: str, out: Any
    ) -> str:
        """PNG of the cross-attention weights (averaged over heads), one panel per decoder layer: row i is the
        distribution over source tokens the decoder used to produce target token i."""
        out = Path(out)
        if out.suffix.lower() != ".png":
            raise UserError(f"{out}: the attention picture is a PNG; give a path ending in .png")
        src = self.source_ids(cfg, tok, [source])[0]
        tgt = (tok.encode(translation) + [EOS])[: cfg.max_len]
        with torch.no_grad():
            device = next(model.parameters()).device
            batch = {k: v.to(device) for k, v in pairs_io.collate_pairs([(src, tgt)]).items()}
            cross = model(**batch, output_attentions=True).cross_attentions  # n_layers x (1, H, T, S)
        pieces = [tok.tokenizer.decode([i]).strip() or "␣" for i in src]
        rows = [tok.tokenizer.decode([i]).strip() or "␣" for i in tgt[:-1]] + ["<eos>"]
        draw_cross_attention(cross, pieces, rows, out)
        return str(out)

    def plots(self, model: nn.Module, data: TaskData, cfg: TranslateConfig, run_dir: str) -> list[str]:
        """The cross-attention of the first test sentence, as ``run_dir/cross_attention.png``."""
        tok = run_tokenizer(data.meta)
        source = data.splits["test"][0][0]
        translation = self.translate(
            model, cfg, tok, [source], cfg.num_beams, cfg.length_penalty, cfg.coverage_penalty
        )[0]
        return [self.draw_cross_attention(model, cfg, tok, source, translation, Path(run_dir) / "cross_attention.png")]


TASKS = (TranslateTask,)
