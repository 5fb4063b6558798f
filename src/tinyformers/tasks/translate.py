"""German -> English translation with the paper's encoder-decoder, trained from scratch, scored with BLEU.

Data: the example sentences of the Ding German-English dictionary (Debian ``trans-de-en``, GPL: read at run
time, never copied into the repository), or any ``source<TAB>target`` file via ``--set pairs=PATH``.

* **Pairs.** A dictionary line is ``de | de | ... :: en | en | ...``; the i-th German sub-entry translates the
  i-th English one. A sentence pair is a sub-entry whose sides both start with a capital letter, end in
  ``.!?``, have at least 3 words and hold none of the dictionary's placeholders (``sth.``, ``jdn.``) or
  markup (``;{}[]/``): about 15,000 pairs.
* **Split without leaks.** Pairs are grouped by a normalised form of either side (lower case, no punctuation),
  joined transitively: ``Ich gebe auf.`` and ``Ich gebe auf!`` fall in one group, and so do two German
  variants of one English sentence. Whole groups go to train, validation or test (seeded), so no test
  sentence or trivial variant of it is trained on. A held-out source with several translations is one
  example with several references.
* **Tokens.** One byte-level BPE vocabulary shared by both languages (HF ``tokenizers``), trained on the
  training split only, with ``<pad> <bos> <eos>`` as ids 0, 1, 2.
* **Model.** :class:`~tinyformers.core.models.EncoderDecoder` with shared embeddings (§3.4), trained with label
  smoothing (§5.4, Szegedy et al. 2016) under warmup + cosine decay.
* **Scores.** sacreBLEU BLEU and chrF of greedy and beam-search translations (§6.1 uses beam search with a
  length penalty), against two baselines on the same test sentences: copying the source, and translating
  word by word with the dictionary's own single-word entries.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinyformers.core.models import EncoderDecoder, Seq2SeqConfig
from tinyformers.core.tokenizers import BPETokenizer, tokenizer_from_dict
from tinyformers.engine.task import Scorecard, Task, TaskData, TrainConfig
from tinyformers.errors import UserError

DING = Path("/usr/share/trans/de-en")
INSTALL_HINT = (
    f"the German-English dictionary is missing ({DING}); install it with `sudo apt-get install trans-de-en` "
    "or train on your own pairs with --set pairs=FILE.tsv"
)
SPECIALS = ["<pad>", "<bos>", "<eos>"]
PAD, BOS, EOS = range(3)

Pair = tuple[str, str]
Example = tuple[str, list[str]]  # a held-out source and all its reference translations


@dataclass
class TranslateConfig(TrainConfig):
    """Attributes:
    pairs: a UTF-8 TSV of ``source<TAB>target`` lines to use instead of the dictionary ('' = the dictionary).
    n_val, n_test: held-out groups of sentences (see the module docstring). data_seed: fixes the split.
    vocab_size: shared BPE vocabulary. max_len: longest token sequence; longer training pairs are dropped and
        longer held-out sources cut.
    d_model, n_heads, n_layers (encoder and decoder each), d_ff, dropout, activation: the model.
    label_smoothing: probability mass spread over the vocabulary in the training loss (§5.4: 0.1).
    num_beams, length_penalty: beam search for the test scores and for ``predict`` (§6.1: 4 beams).
    """

    pairs: str = ""
    n_val: int = 500
    n_test: int = 1000
    data_seed: int = 0
    vocab_size: int = 2000
    max_len: int = 64
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 512
    dropout: float = 0.1
    activation: str = "relu"
    label_smoothing: float = 0.1
    num_beams: int = 4
    length_penalty: float = 1.0
    max_steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    beta2: float = 0.98
    eval_every: int = 250

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_val < 1 or self.n_test < 1:
            raise ValueError("n_val and n_test must be >= 1")
        if self.vocab_size < 260:
            raise ValueError("a byte-level BPE needs vocab_size >= 260 (3 specials, 256 bytes, merges)")
        if self.max_len < 4:
            raise ValueError("max_len must be >= 4")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError("label_smoothing must be in [0, 1)")
        if self.num_beams < 1:
            raise ValueError("num_beams must be >= 1")


# --------------------------------------------------------------------------------------------------------
# Data: the dictionary's sentences, or the user's TSV
# --------------------------------------------------------------------------------------------------------

_MARKUP = re.compile(r"[;{}\[\]/]|\b(?:sth|sb|jdn|jdm|jds|etw)\.")


def _is_sentence(text: str) -> bool:
    return text[:1].isupper() and text[-1:] in ".!?" and len(text.split()) >= 3 and _MARKUP.search(text) is None


def dictionary_entries(path: Path = DING) -> list[tuple[list[str], list[str]]]:
    """Aligned sub-entries ``([de, ...], [en, ...])`` of each dictionary line (comments and odd lines skipped)."""
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or " :: " not in line:
            continue
        de, en = line.split(" :: ", 1)
        de_parts, en_parts = [s.strip() for s in de.split(" | ")], [s.strip() for s in en.split(" | ")]
        if len(de_parts) == len(en_parts):
            entries.append((de_parts, en_parts))
    return entries


def dictionary_sentences(entries: list[tuple[list[str], list[str]]]) -> list[Pair]:
    """The sentence pairs (German, English) of dictionary entries, distinct, sorted (a stable order to split)."""
    pairs = {(d, e) for des, ens in entries for d, e in zip(des, ens, strict=True) if _is_sentence(d)}
    return sorted(p for p in pairs if _is_sentence(p[1]))


_ANNOTATION = re.compile(r"\{[^}]*\}|\[[^\]]*\]|\([^)]*\)|<[^>]*>")
_PRONOUNS_DE = re.compile(r"^(?:(?:ich|du|er|sie|es|wir|ihr|man)/?)+ ")
_PRONOUNS_EN = re.compile(r"^(?:(?:I|you|he|she|it|we|they|one)/?)+ |^to ")
_ENGLISH = re.compile(r"[A-Za-z][A-Za-z'’ -]*")


def _strip(text: str, pronouns: re.Pattern[str]) -> list[str]:
    """The alternatives of a sub-entry without annotations and without a leading pronoun (or English "to")."""
    return [pronouns.sub("", " ".join(alt.split())) for alt in _ANNOTATION.sub(" ", text).split(";")]


def dictionary_words(entries: list[tuple[list[str], list[str]]]) -> dict[str, str]:
    """German word -> English, from the single-word dictionary entries.

    A sub-entry counts when, without its annotations (``{m}``, ``[coll.]``, ``(...)``) and a leading pronoun
    of a conjugated form (``er/sie geht :: he/she goes``), a German alternative is one word; its English is
    the first English alternative (without an infinitive's "to"). A word with several translations takes the
    most frequent (ties: the first seen). Sentence entries have at least 3 words, so none of them is used.
    """
    counts: dict[str, Counter[str]] = {}
    for des, ens in entries:
        for d, e in zip(des, ens, strict=True):
            english = _strip(e, _PRONOUNS_EN)[0]
            if not _ENGLISH.fullmatch(english):
                continue
            for word in _strip(d, _PRONOUNS_DE):
                if word.isalpha():
                    counts.setdefault(word, Counter())[english] += 1
    return {word: c.most_common(1)[0][0] for word, c in counts.items()}


def read_pairs(path: str) -> list[Pair]:
    """``source<TAB>target`` lines of a UTF-8 file; any other line is a :class:`UserError` naming it."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{path}: {'is a directory, expected a TSV file' if p.is_dir() else 'no such file'}")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start})") from None
    pairs = []
    for n, line in enumerate(lines, 1):
        fields = line.split("\t")
        if not line.strip():
            raise UserError(f"{path}: line {n} is empty; expected source<TAB>target")
        if len(fields) != 2:
            raise UserError(f"{path}: line {n} has {len(fields)} column(s); expected source<TAB>target")
        if not fields[0].strip() or not fields[1].strip():
            raise UserError(f"{path}: line {n} has an empty {'source' if not fields[0].strip() else 'target'}")
        pairs.append((fields[0].strip(), fields[1].strip()))
    if not pairs:
        raise UserError(f"{path}: no pairs; expected source<TAB>target lines")
    return sorted(set(pairs))


def normalise(text: str) -> str:
    """The form two trivial variants share: Unicode NFKC, lower case, punctuation dropped, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    return " ".join(re.sub(r"[^\w\s']", " ", text).split())


def group_pairs(pairs: list[Pair]) -> list[list[Pair]]:
    """Connected groups of pairs sharing a normalised source or a normalised target (union-find)."""
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(x: tuple[str, str]) -> tuple[str, str]:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for s, t in pairs:
        parent[find(("src", normalise(s)))] = find(("tgt", normalise(t)))
    groups: dict[tuple[str, str], list[Pair]] = {}
    for pair in pairs:
        groups.setdefault(find(("src", normalise(pair[0]))), []).append(pair)
    return list(groups.values())


def held_out_examples(groups: list[list[Pair]]) -> list[Example]:
    """One example per distinct normalised source, with every translation of it as a reference."""
    refs: dict[str, tuple[str, list[str]]] = {}
    for group in groups:
        for s, t in group:
            refs.setdefault(normalise(s), (s, []))[1].append(t)
    return [(s, sorted(set(ts))) for s, ts in refs.values()]


def split_pairs(pairs: list[Pair], n_val: int, n_test: int, seed: int, source: str) -> dict[str, Any]:
    """Train pairs and held-out examples; whole groups (see :func:`group_pairs`) go to one split."""
    groups = group_pairs(pairs)
    if len(groups) <= n_val + n_test:
        raise UserError(
            f"{source}: {len(groups)} distinct sentence groups, need more than n_val + n_test = {n_val + n_test}; "
            "lower them with --set n_val=... n_test=..."
        )
    random.Random(seed).shuffle(groups)
    return {
        "val": held_out_examples(groups[:n_val]),
        "test": held_out_examples(groups[n_val : n_val + n_test]),
        "train": [p for g in groups[n_val + n_test :] for p in g],
    }


def train_tokenizer(texts: list[str], vocab_size: int) -> BPETokenizer:
    """Byte-level BPE over ``texts`` with ``<pad> <bos> <eos>`` as ids 0, 1, 2.

    The core :meth:`BPETokenizer.train` has no special tokens, which a translation model needs; the trained
    tokenizer is wrapped in :class:`BPETokenizer` so it saves in and loads from a run like any other.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)  # a word is one token, first or not
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(texts, trainer)
    return BPETokenizer(tk)


def decode(tok: BPETokenizer, ids: list[int]) -> str:
    """Text of target ids up to the first ``<eos>`` (specials skipped)."""
    ids = ids[: ids.index(EOS)] if EOS in ids else ids
    return tok.decode(ids).strip()


# --------------------------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------------------------


def word_by_word(sentence: str, words: dict[str, str]) -> str:
    """Replace each German word by its dictionary translation (kept as is when absent), punctuation kept.

    The first word is looked up in lower case first (``Ich`` is the pronoun, not the noun "ego"); the others
    as written first (nouns are capitalised in German), then in lower case."""
    out = []
    for token in sentence.split():
        m = re.fullmatch(r"(\W*)(.*?)(\W*)", token)
        lead, word, trail = m.groups()  # type: ignore[union-attr]
        # a capital may only mark the sentence start ("Ich"), or be part of the word ("Zeit"): try both orders
        keys = (word.lower(), word) if not out else (word, word.lower())
        out.append(lead + next((words[k] for k in keys if k in words), word) + trail)
    text = " ".join(out)
    return text[:1].upper() + text[1:]


def corpus_scores(hypotheses: list[str], examples: list[Example]) -> tuple[float, float]:
    """sacreBLEU (BLEU, chrF) of ``hypotheses`` against every reference of each example."""
    from sacrebleu.metrics import BLEU, CHRF

    n_refs = max(len(refs) for _, refs in examples)
    streams = [[refs[i] if i < len(refs) else None for _, refs in examples] for i in range(n_refs)]
    return BLEU().corpus_score(hypotheses, streams).score, CHRF().corpus_score(hypotheses, streams).score


# --------------------------------------------------------------------------------------------------------
# The task
# --------------------------------------------------------------------------------------------------------


class TranslateTask(Task):
    name = "translate"
    summary = "German -> English sentences with an encoder-decoder, beam search and BLEU (or your own TSV pairs)"
    Config: ClassVar[type[TrainConfig]] = TranslateConfig
    metric: ClassVar[str] = "bleu_greedy"
    maximize: ClassVar[bool] = True
    scorecard: ClassVar[Scorecard | None] = Scorecard(
        "test_bleu_beam",
        baselines=("copy_bleu", "lookup_bleu"),
        quick=("d_model=32", "n_heads=2", "n_layers=1", "d_ff=64", "n_val=20", "n_test=20", "max_len=24"),
        summary="Held-out corpus BLEU (sacrebleu) of German->English translation with beam search, against copying "
        "the source and a word-by-word dictionary lookup learned from the same training pairs.",
    )

    def data_status(self, cfg: TranslateConfig) -> str | None:  # type: ignore[override]
        return None if cfg.pairs or DING.is_file() else INSTALL_HINT

    def data(self, cfg: TranslateConfig, meta: dict[str, Any] | None = None) -> TaskData:  # type: ignore[override]
        entries = None
        if cfg.pairs:
            pairs, source = read_pairs(cfg.pairs), cfg.pairs
        elif DING.is_file():
            entries = dictionary_entries(DING)
            pairs, source = dictionary_sentences(entries), str(DING)
        else:
            raise UserError(INSTALL_HINT)
        splits = split_pairs(pairs, cfg.n_val, cfg.n_test, cfg.data_seed, source)
        if meta:
            tok = tokenizer_from_dict(meta["tokenizer"])
        else:
            tok = train_tokenizer([text for pair in splits["train"] for text in pair], cfg.vocab_size)
        encoded = [(tok.encode(s), tok.encode(t) + [EOS]) for s, t in splits["train"]]
        splits["train_ids"] = [(s, t) for s, t in encoded if len(s) <= cfg.max_len and len(t) <= cfg.max_len]
        if not splits["train_ids"]:
            raise UserError(f"{source}: no training pair fits in max_len={cfg.max_len} tokens")
        if entries is not None:  # the word-by-word baseline needs the German-English dictionary
            splits["words"] = dictionary_words(entries)
        return TaskData(splits, {"tokenizer": tok.to_dict()})

    def model(self, cfg: TranslateConfig, meta: dict[str, Any]) -> nn.Module:  # type: ignore[override]
        vocab = len(tokenizer_from_dict(meta["tokenizer"]))
        return EncoderDecoder(
            Seq2SeqConfig(
                d_model=cfg.d_model,
                n_heads=cfg.n_heads,
                n_layers=cfg.n_layers,
                d_ff=cfg.d_ff,
                dropout=cfg.dropout,
                activation=cfg.activation,
                max_len=cfg.max_len,
                positions="sinusoidal",
                src_vocab_size=vocab,
                tgt_vocab_size=vocab,
                share_embeddings=True,
                pad_id=PAD,
                bos_id=BOS,
                eos_id=EOS,
            )
        )

    @staticmethod
    def collate(pairs: list[tuple[list[int], list[int]]]) -> dict[str, Tensor]:
        """Padded ``src_ids``, ``src_mask`` (B, S) and ``labels`` (B, T) = target ids + ``<eos>``."""
        src = _pad([s for s, _ in pairs])
        return {"src_ids": src, "src_mask": (src != PAD).long(), "labels": _pad([t for _, t in pairs])}

    def batch(self, data: TaskData, cfg: TranslateConfig, generator: torch.Generator) -> dict[str, Any]:  # type: ignore[override]
        train = data.splits["train_ids"]
        idx = torch.randint(len(train), (cfg.batch_size,), generator=generator).tolist()
        return {**self.collate([train[i] for i in idx]), "label_smoothing": cfg.label_smoothing}

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> Tensor:
        """Cross-entropy with label smoothing (§5.4): the target is ``(1 - eps) one_hot + eps / V``."""
        batch = dict(batch)
        eps = batch.pop("label_smoothing", 0.0)
        out = model(**batch)
        return F.cross_entropy(
            out.logits.flatten(0, 1).float(),
            batch["labels"].flatten(),
            ignore_index=PAD,
            label_smoothing=eps,
        )

    # --- decoding ---------------------------------------------------------------------------------
    def translate(
        self,
        model: nn.Module,
        cfg: TranslateConfig,
        tok: BPETokenizer,
        sources: list[str],
        num_beams: int = 1,
        length_penalty: float = 1.0,
        batch_size: int = 64,
    ) -> list[str]:
        """Translations of ``sources``, batched by source length (little padding), in input order."""
        device = next(model.parameters()).device
        ids = [tok.encode(s)[: cfg.max_len] or [EOS] for s in sources]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: list[str] = [""] * len(ids)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            src = _pad([ids[i] for i in chunk]).to(device)
            max_new = min(cfg.max_len - 1, 2 * src.size(1) + 10)  # a translation is rarely twice as long
            gen = model.generate(
                src, (src != PAD).long(), max_new_tokens=max_new, num_beams=num_beams, length_penalty=length_penalty
            )
            for i, row in zip(chunk, gen.tolist(), strict=True):
                out[i] = decode(tok, row)
        return out

    def evaluate(self, model: nn.Module, data: TaskData, split: str, cfg: TranslateConfig) -> dict[str, float]:  # type: ignore[override]
        """Loss (without smoothing), greedy BLEU/chrF and the baselines; beam search on the test split only
        (it is several times slower, and model selection uses greedy BLEU on validation)."""
        examples: list[Example] = data.splits[split]
        tok = tokenizer_from_dict(data.meta["tokenizer"])
        device = next(model.parameters()).device
        total, count = 0.0, 0
        pairs = [(tok.encode(s)[: cfg.max_len], (tok.encode(refs[0]) + [EOS])[: cfg.max_len]) for s, refs in examples]
        for i in range(0, len(pairs), 128):
            batch = {k: v.to(device) for k, v in self.collate(pairs[i : i + 128]).items()}
            n = int((batch["labels"] != PAD).sum())
            total += model(**batch).loss.item() * n
            count += n
        sources = [s for s, _ in examples]
        greedy = self.translate(model, cfg, tok, sources)
        bleu, chrf = corpus_scores(greedy, examples)
        copy_bleu, copy_chrf = corpus_scores(sources, examples)
        metrics = {
            f"{split}_loss": total / count,
            f"{split}_bleu_greedy": bleu,
            f"{split}_chrf_greedy": chrf,
            "copy_bleu": copy_bleu,
            "copy_chrf": copy_chrf,
        }
        if split != "val":
            beam = self.translate(model, cfg, tok, sources, cfg.num_beams, cfg.length_penalty)
            metrics[f"{split}_bleu_beam"], metrics[f"{split}_chrf"] = corpus_scores(beam, examples)
        if "words" in data.splits:
            lookup = [word_by_word(s, data.splits["words"]) for s in sources]
            metrics["lookup_bleu"], metrics["lookup_chrf"] = corpus_scores(lookup, examples)
        return metrics

    def predict(  # type: ignore[override]
        self,
        model: nn.Module,
        cfg: TranslateConfig,
        meta: dict[str, Any],
        inputs: list[str],
        num_beams: int | None = None,
        length_penalty: float | None = None,
        show_attention: str | Path | None = None,
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
        tok = tokenizer_from_dict(meta["tokenizer"])
        lp = cfg.length_penalty if length_penalty is None else length_penalty
        outputs = self.translate(model, cfg, tok, [t.strip() for t in inputs], beams, lp)
        if show_attention is not None:
            self.draw_cross_attention(model, cfg, tok, inputs[0].strip(), outputs[0], show_attention)
        return outputs

    def attention(self, model: nn.Module, cfg: TranslateConfig, meta: dict[str, Any], text: str, out: Any) -> list[str]:  # type: ignore[override]
        """Translate ``text`` (beam search) and draw the decoder's cross-attention on it."""
        if not text.strip():
            raise UserError("the input is empty; give a sentence to translate")
        tok = tokenizer_from_dict(meta["tokenizer"])
        translation = self.translate(model, cfg, tok, [text.strip()], cfg.num_beams, cfg.length_penalty)[0]
        return [self.draw_cross_attention(model, cfg, tok, text.strip(), translation, out)]

    def draw_cross_attention(
        self, model: nn.Module, cfg: TranslateConfig, tok: BPETokenizer, source: str, translation: str, out: Any
    ) -> str:
        """PNG of the cross-attention weights (averaged over heads), one panel per decoder layer: row i is the
        distribution over source tokens the decoder used to produce target token i."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out = Path(out)
        if out.suffix.lower() != ".png":
            raise UserError(f"{out}: the attention picture is a PNG; give a path ending in .png")
        src = tok.encode(source)[: cfg.max_len]
        tgt = (tok.encode(translation) + [EOS])[: cfg.max_len]
        with torch.no_grad():
            device = next(model.parameters()).device
            batch = {k: v.to(device) for k, v in self.collate([(src, tgt)]).items()}
            cross = model(**batch, output_attentions=True).cross_attentions  # n_layers x (1, H, T, S)
        pieces = [tok.tokenizer.decode([i]).strip() or "␣" for i in src]
        rows = [tok.tokenizer.decode([i]).strip() or "␣" for i in tgt[:-1]] + ["<eos>"]
        n = len(cross)
        fig, axes = plt.subplots(1, n, figsize=(1.5 + 0.35 * len(pieces) * n, 1.5 + 0.3 * len(rows)), squeeze=False)
        for layer, (ax, w) in enumerate(zip(axes[0], cross, strict=True)):
            ax.imshow(w[0].mean(0).float().cpu().numpy(), cmap="Blues", vmin=0, vmax=1)  # (T, S)
            ax.set_xticks(range(len(pieces)), pieces, rotation=90)
            ax.set_yticks(range(len(rows)), rows if layer == 0 else [""] * len(rows))
            ax.set_title(f"decoder layer {layer + 1}")
        fig.tight_layout()
        try:
            fig.savefig(out, dpi=100)
        except OSError as e:
            raise UserError(f"{out}: cannot write ({e.strerror})") from None
        finally:
            plt.close(fig)
        return str(out)

    def plots(self, model: nn.Module, data: TaskData, cfg: TranslateConfig, run_dir: str) -> list[str]:  # type: ignore[override]
        """The cross-attention of the first test sentence, as ``run_dir/cross_attention.png``."""
        tok = tokenizer_from_dict(data.meta["tokenizer"])
        source = data.splits["test"][0][0]
        translation = self.translate(model, cfg, tok, [source], cfg.num_beams, cfg.length_penalty)[0]
        return [self.draw_cross_attention(model, cfg, tok, source, translation, Path(run_dir) / "cross_attention.png")]


def _pad(rows: list[list[int]]) -> Tensor:
    width = max(map(len, rows))
    return torch.tensor([r + [PAD] * (width - len(r)) for r in rows], dtype=torch.long)


TASKS = (TranslateTask,)
