"""The encoder text tasks' options: the MiniLM recipe (the defaults of ``init=minilm``) and class weighting
(``--set class_weights=balanced|sqrt``): the weights from the training split's label counts, the weighted loss of
both classifiers, and the counts the tasks store in meta; the training-subset and word-dropout options."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tinyformers.core.models import EncoderClassifier, EncoderConfig, EncoderTokenClassifier
from tinyformers.tasks._text import class_weight, drop_words, training_subset
from tinyformers.tasks.ner import NERConfig, NERTask
from tinyformers.tasks.sentiment import SentimentConfig, SentimentTask, tfidf_baseline

SMALL = EncoderConfig(vocab_size=20, d_model=16, n_heads=2, n_layers=1, d_ff=32, max_len=12, dropout=0.0)


def test_weights_from_counts():
    assert class_weight([90, 10], "none") is None
    balanced = class_weight([90, 10], "balanced")
    assert torch.allclose(balanced, torch.tensor([100 / 180, 100 / 20]))
    assert torch.allclose(balanced * torch.tensor([90.0, 10.0]), torch.tensor([50.0, 50.0]))  # equal totals
    assert torch.allclose(class_weight([90, 10], "sqrt"), balanced.sqrt())
    assert class_weight([5, 0, 5], "balanced").tolist() == [1.0, 0.0, 1.0]  # a class never seen weighs nothing


def test_bad_mode_is_refused():
    with pytest.raises(ValueError, match="class_weights"):
        NERConfig(class_weights="inverse")


def test_sequence_classifier_loss_is_weighted_and_weights_are_not_saved():
    torch.manual_seed(0)
    w = torch.tensor([0.5, 3.0, 1.0])
    model = EncoderClassifier(SMALL, 3, pooling="mean", class_weight=w).eval()
    ids, labels = torch.randint(1, 20, (6, 5)), torch.tensor([0, 1, 2, 1, 0, 0])
    out = model(ids, labels=labels)
    assert torch.allclose(out.loss, F.cross_entropy(out.logits, labels, weight=w))
    assert not torch.allclose(out.loss, F.cross_entropy(out.logits, labels))
    assert "class_weight" not in model.state_dict()  # rebuilt from meta by the task, never read from a file
    plain = EncoderClassifier(SMALL, 3, pooling="mean")
    plain.load_state_dict(model.state_dict())  # the same keys with and without weights


def test_token_classifier_loss_is_weighted_and_skips_ignored_positions():
    torch.manual_seed(0)
    w = torch.tensor([0.2, 4.0])
    model = EncoderTokenClassifier(SMALL, 2, class_weight=w).eval()
    ids = torch.randint(1, 20, (2, 4))
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    labels = torch.tensor([[-100, 1, 0, -100], [-100, 0, 1, 1]])  # the last two of row 2 are padding
    out = model(ids, mask, labels=labels)
    keep = torch.tensor([[False, True, True, False], [False, True, False, False]])
    expected = F.cross_entropy(out.logits[keep], labels[keep], weight=w)
    assert torch.allclose(out.loss, expected)


def test_ner_counts_training_tags_and_builds_weighted_model(tmp_path):
    names = ["Paris", "Rome", "Oslo", "Lima"]
    lines = [f"{names[i % 4]} B-loc\nis O\nnice O\ntoday O\n" for i in range(40)]  # O three times as common
    (tmp_path / "t.conll").write_text("\n".join(lines))
    cfg = NERConfig(conll=str(tmp_path / "t.conll"), class_weights="balanced", vocab_size=60, d_model=16, d_ff=32)
    task = NERTask()
    data = task.data(cfg)
    tags = [t for sent in data.splits["train"]["tags"] for t in sent]
    assert data.meta["label_counts"] == [tags.count(t) for t in data.meta["labels"]]
    model = task.model(cfg, data.meta)
    assert torch.allclose(model.class_weight, class_weight(data.meta["label_counts"], "balanced"))
    assert data.meta["labels"][0] == "O" and model.class_weight[0] == model.class_weight.min()  # O is commonest


def test_sentiment_counts_training_labels(tmp_path):
    rows = ["text,label"] + [f"good day number {i},pos" for i in range(30)] + [f"bad {i} night,neg" for i in range(90)]
    (tmp_path / "s.csv").write_text("\n".join(rows) + "\n")
    cfg = SentimentConfig(csv=str(tmp_path / "s.csv"), vocab_size=60, class_weights="sqrt")
    data = SentimentTask().data(cfg)
    train = data.splits["train"]["labels"].tolist()
    assert data.meta["label_counts"] == [train.count(i) for i in range(len(data.meta["classes"]))]
    assert data.meta["classes"] == ["neg", "pos"] and data.meta["label_counts"][0] > data.meta["label_counts"][1]
    model = SentimentTask().model(cfg, data.meta)
    assert model.class_weight[1] > model.class_weight[0]


def test_minilm_recipe_fills_the_fields_left_at_their_defaults():
    scratch = NERConfig()
    assert (scratch.lr, scratch.class_weights, scratch.max_time) == (1e-3, "none", 0.0)
    tuned = NERConfig(init="minilm")
    recipe = NERConfig.MINILM_RECIPE
    assert all(getattr(tuned, k) == v for k, v in recipe.items()) and recipe["lr"] <= 2e-4
    mine = NERConfig(init="minilm", batch_size=8, class_weights="balanced")
    assert (mine.batch_size, mine.class_weights, mine.lr) == (8, "balanced", recipe["lr"])  # a --set value stays
    assert SentimentConfig(init="minilm").batch_size == SentimentConfig.MINILM_RECIPE["batch_size"]


def test_training_subset_is_nested_seeded_and_whole_at_one():
    rows = list(range(100))
    assert training_subset(rows, 1.0, 0) is rows
    quarter, half = training_subset(rows, 0.25, 0), training_subset(rows, 0.5, 0)
    assert len(quarter) == 25 and len(half) == 50
    assert set(quarter) <= set(half)  # a learning curve's smaller sets are parts of the larger ones
    assert quarter == sorted(quarter)  # the rows keep their order
    assert training_subset(rows, 0.25, 0) == quarter and training_subset(rows, 0.25, 1) != quarter
    assert training_subset(rows, 0.001, 0) != []  # at least one row


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5])
def test_bad_train_fraction_is_refused(fraction):
    with pytest.raises(ValueError, match="train_fraction"):
        SentimentConfig(train_fraction=fraction)


def test_train_fraction_shrinks_training_only_and_the_baseline_follows(tmp_path):
    rows = ["text,label"] + [f"good day number {i},pos" for i in range(60)] + [f"bad {i} night,neg" for i in range(60)]
    (tmp_path / "s.csv").write_text("\n".join(rows) + "\n")
    task = SentimentTask()
    full = task.data(SentimentConfig(csv=str(tmp_path / "s.csv"), vocab_size=60))
    part = task.data(SentimentConfig(csv=str(tmp_path / "s.csv"), vocab_size=60, train_fraction=0.5))
    n = len(full.splits["train"]["texts"])
    assert len(part.splits["train"]["texts"]) == round(n / 2)
    assert set(part.splits["train"]["texts"]) < set(full.splits["train"]["texts"])
    for split in ("val", "test"):  # held-out data never changes
        assert part.splits[split]["texts"] == full.splits[split]["texts"]
    assert sum(part.meta["label_counts"]) == round(n / 2)
    assert tfidf_baseline(part)[-1].coef_ is not tfidf_baseline(full)[-1].coef_
    assert len(tfidf_baseline(part)[0].vocabulary_) < len(tfidf_baseline(full)[0].vocabulary_)  # fitted on the subset


def test_ner_train_fraction_keeps_held_out_sentences(tmp_path):
    lines = [f"Name{i} B-per\nsays O\nhi{i} O\n" for i in range(80)]
    (tmp_path / "t.conll").write_text("\n".join(lines))
    task = NERTask()
    full = task.data(NERConfig(conll=str(tmp_path / "t.conll"), vocab_size=80))
    part = task.data(NERConfig(conll=str(tmp_path / "t.conll"), vocab_size=80, train_fraction=0.25))
    assert len(part.splits["train"]["words"]) == round(len(full.splits["train"]["words"]) / 4)
    assert all(w in full.splits["train"]["words"] for w in part.splits["train"]["words"])
    assert part.splits["test"]["words"] == full.splits["test"]["words"]


@pytest.mark.parametrize("pretrain", [0.0, 0.5])  # with and without [MASK] in the vocabulary
def test_word_dropout_replaces_ordinary_pieces_of_training_batches_only(tmp_path, pretrain):
    rows = ["text,label"] + [f"good day number {i},pos" for i in range(40)] + [f"bad {i} night,neg" for i in range(40)]
    (tmp_path / "s.csv").write_text("\n".join(rows) + "\n")
    task = SentimentTask()
    base = SentimentConfig(csv=str(tmp_path / "s.csv"), vocab_size=60, batch_size=64, pretrain=pretrain)
    data = task.data(base)
    plain = task.batch(data, base, torch.Generator().manual_seed(0))
    cfg = SentimentConfig(**{**vars(base), "word_dropout": 0.5})
    dropped = task.batch(data, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(dropped["labels"], plain["labels"]) and torch.equal(
        dropped["attention_mask"], plain["attention_mask"]
    )
    ids, new = plain["input_ids"], dropped["input_ids"]
    changed = ids != new
    first_piece = 5 if pretrain else 4  # [PAD] [UNK] [CLS] [SEP] ([MASK])
    assert (new[changed] == 1).all()  # replaced by [UNK]
    assert not changed[ids < first_piece].any()  # [CLS], [SEP], padding (and [MASK]) stay
    share = changed.sum() / (ids >= first_piece).sum()
    assert 0.35 < share.item() < 0.65
    # off by default: the batch the task gave before the option existed
    assert torch.equal(drop_words(plain, data, base, torch.Generator().manual_seed(1))["input_ids"], ids)
    with pytest.raises(ValueError, match="word_dropout"):
        SentimentConfig(word_dropout=1.0)


def test_ner_word_dropout_keeps_the_tags(tmp_path):
    lines = [f"Name{i} B-per\nsays O\nhi{i} O\n" for i in range(40)]
    (tmp_path / "t.conll").write_text("\n".join(lines))
    task = NERTask()
    cfg = NERConfig(conll=str(tmp_path / "t.conll"), vocab_size=80, word_dropout=0.5, batch_size=32)
    data = task.data(cfg)
    dropped = task.batch(data, cfg, torch.Generator().manual_seed(0))
    plain = task.batch(data, NERConfig(**{**vars(cfg), "word_dropout": 0.0}), torch.Generator().manual_seed(0))
    assert torch.equal(dropped["labels"], plain["labels"])
    assert (dropped["input_ids"] != plain["input_ids"]).any()
