"""German-English sentence pairs: the Ding dictionary's example sentences (Debian ``trans-de-en``, GPL: read at
run time, never copied into the repository) or a user's ``source<TAB>target`` file; a split without leaks
(whole groups of trivial variants go to one split), the shared BPE vocabulary, and the dictionary's own
single-word entries for the word-by-word baseline (:mod:`tinyformers.tasks.translate`).

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
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor

from tinyformers.core.tokenizers import BPETokenizer, tokenizer_from_dict
from tinyformers.data import padding
from tinyformers.data.userfiles import PAIRS_TSV, read_user_text
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


def dictionary_words(entries: list[tuple[list[str], list[str]]], candidates: int = 1) -> dict[str, str]:
    """German word -> English, from the single-word dictionary entries.

    A sub-entry counts when, without its annotations (``{m}``, ``[coll.]``, ``(...)``) and a leading pronoun
    of a conjugated form (``er/sie geht :: he/she goes``), a German alternative is one word; its English is
    the first English alternative (without an infinitive's "to"). A word with several translations takes the
    most frequent (ties: the first seen). Sentence entries have at least 3 words, so none of them is used.
    ``candidates`` > 1 keeps up to that many translations per word, most frequent first, joined by ``/``
    (Ding's ``Zeit`` -> ``spell/time of day/time``): a hint for a model that chooses among them, not a translation.
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
    return {word: "/".join(e for e, _ in c.most_common(candidates)) for word, c in counts.items()}


_PLACEHOLDER = re.compile(r"\b(?:sth|sb|jdn|jdm|jds|etw|jd)\.")
_SLASHED = re.compile(r"(\w+)(?:/[\w’']+)+")  # "breakdown/degradation" -> "breakdown"


def dictionary_phrases(entries: list[tuple[list[str], list[str]]]) -> list[Pair]:
    """Every aligned sub-entry that is not a sentence pair, as extra (German, English) training pairs: words,
    inflected forms, phrases and collocations (``Abbau durch Licht :: photochemical breakdown``).

    Annotations and a leading pronoun go (as in :func:`dictionary_words`), a slash keeps its first choice;
    each German alternative (``;``) is paired with the English alternative in the same place, or with the
    first when the counts differ. Alternatives holding a placeholder (``jdn.``, ``sth.``) are left out: no
    sentence has one. Distinct and sorted.
    """
    out: set[Pair] = set()
    for des, ens in entries:
        for d, e in zip(des, ens, strict=True):
            if _is_sentence(d) and _is_sentence(e):
                continue  # a sentence pair: split with the others, never an extra
            de_alts = [_SLASHED.sub(r"\1", a) for a in _strip(d, _PRONOUNS_DE)]
            en_alts = [_SLASHED.sub(r"\1", a) for a in _strip(e, _PRONOUNS_EN)]
            for i, de in enumerate(de_alts):
                en = en_alts[i] if len(en_alts) == len(de_alts) else en_alts[0]
                if de and en and not _PLACEHOLDER.search(de + " " + en):
                    out.add((de, en))
    return sorted(out)


def without_held_out(pairs: list[Pair], held_out: list[Example]) -> list[Pair]:
    """``pairs`` minus every pair whose German or English side, normalised (:func:`normalise`), holds a held-out
    source or reference, normalised, as a run of whole words: no test sentence, nor a trivial variant of it,
    is trained on through the extra pairs."""
    banned = {normalise(text) for source, refs in held_out for text in (source, *refs)}
    banned.discard("")
    lengths = {len(b.split()) for b in banned}

    def holds(text: str) -> bool:
        words = normalise(text).split()
        return any(
            " ".join(words[i : i + n]) in banned for n in lengths if n <= len(words) for i in range(len(words) - n + 1)
        )

    return [p for p in pairs if not holds(p[0]) and not holds(p[1])]


def read_pairs(path: str) -> list[Pair]:
    """``source<TAB>target`` lines of a UTF-8 file; any other line is a :class:`UserError` naming it."""
    lines = read_user_text(path, PAIRS_TSV).splitlines()  # missing, a folder, not UTF-8: one-line errors
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


def corpus_scores(hypotheses: list[str], examples: list[Example]) -> tuple[float, float]:
    """sacreBLEU (BLEU, chrF) of ``hypotheses`` against every reference of each example."""
    from sacrebleu.metrics import BLEU, CHRF

    n_refs = max(len(refs) for _, refs in examples)
    streams = [[refs[i] if i < len(refs) else None for _, refs in examples] for i in range(n_refs)]
    # sacrebleu takes None for an example's missing reference; its annotations say str
    refs: Any = streams
    return BLEU().corpus_score(hypotheses, refs).score, CHRF().corpus_score(hypotheses, refs).score


def sentence_utility(metric: str) -> Callable[[str, str], float]:
    """``utility(hypothesis, reference)``: sacreBLEU's sentence-level chrF or BLEU (``effective_order``: a short
    sentence's missing 4-grams do not zero it), for minimum Bayes risk decoding
    (:func:`tinyformers.core.generation.mbr_pick`)."""
    from sacrebleu.metrics import BLEU, CHRF

    if metric == "chrf":
        chrf = CHRF()
        return lambda hyp, ref: chrf.sentence_score(hyp, [ref]).score
    if metric == "bleu":
        bleu = BLEU(effective_order=True)
        return lambda hyp, ref: bleu.sentence_score(hyp, [ref]).score
    raise ValueError(f"metric {metric!r}: chrf or bleu")


def train_tokenizer(texts: list[str], vocab_size: int) -> BPETokenizer:
    """Byte-level BPE over ``texts`` with ``<pad> <bos> <eos>`` as ids 0, 1, 2.

    The core :meth:`BPETokenizer.train` has no special tokens, which a translation model needs; the trained
    tokenizer is wrapped in :class:`BPETokenizer` so it saves in and loads from a run like any other.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # heavy: loaded to train one

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


def word_by_word(sentence: str, words: dict[str, str]) -> str:
    """Replace each German word by its dictionary translation (kept as is when absent), punctuation kept.

    The first word is looked up in lower case first (``Ich`` is the pronoun, not the noun "ego"); the others
    as written first (nouns are capitalised in German), then in lower case."""
    out: list[str] = []
    for token in sentence.split():
        m = re.fullmatch(r"(\W*)(.*?)(\W*)", token)
        lead, word, trail = m.groups()  # type: ignore[union-attr]  # the pattern matches every string
        # a capital may only mark the sentence start ("Ich"), or be part of the word ("Zeit"): try both orders
        keys = (word.lower(), word) if not out else (word, word.lower())
        out.append(lead + next((words[k] for k in keys if k in words), word) + trail)
    text = " ".join(out)
    return text[:1].upper() + text[1:]


def decode(tok: BPETokenizer, ids: list[int]) -> str:
    """Text of target ids up to the first ``<eos>`` (specials skipped)."""
    ids = ids[: ids.index(EOS)] if EOS in ids else ids
    return tok.decode(ids).strip()


def pad_pairs(pairs: list[tuple[list[int], list[int]]]) -> tuple[padding.PaddedRows, padding.PaddedRows]:
    """(source, target) id pairs as two :class:`~tinyformers.data.padding.PaddedRows`, padded with ``<pad>``."""
    return padding.PaddedRows.of([s for s, _ in pairs], PAD), padding.PaddedRows.of([t for _, t in pairs], PAD)


def run_tokenizer(meta: dict[str, Any]) -> BPETokenizer:
    """The shared BPE tokenizer saved in a run's ``meta`` (config.json); any other kind is a :class:`UserError`."""
    tok = tokenizer_from_dict(meta["tokenizer"])
    if not isinstance(tok, BPETokenizer):
        raise UserError(f"the tokenizer in config.json is {tok.kind!r}; translation runs use 'bpe'")
    return tok


def collate_pairs(
    pairs: list[tuple[list[int], list[int]]] | tuple[padding.PaddedRows, padding.PaddedRows],
) -> dict[str, Tensor]:
    """Padded ``src_ids``, ``src_mask`` (B, S) and ``labels`` (B, T) = target ids + ``<eos>``."""
    src, tgt = pairs if isinstance(pairs, tuple) else pad_pairs(pairs)
    return {"src_ids": src.ids, "src_mask": (src.ids != PAD).long(), "labels": tgt.ids}
