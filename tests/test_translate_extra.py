"""``extra_pairs=dictionary`` of the translate task: the dictionary's words and phrases as extra training pairs,
on a tiny dictionary made here. The held-out sentences are exactly those of ``extra_pairs=none``, and no extra
pair holds a held-out sentence or its normalised form (the leak test)."""

from __future__ import annotations

import pytest
import torch

from tinyformers.apps.cli import main
from tinyformers.data import translation as pairs_io
from tinyformers.tasks import translate as tr

NOUNS = {"Hund": "dog", "Katze": "cat", "Vogel": "bird", "Fisch": "fish", "Pferd": "horse"}
VERBS = {"schläft": "sleeps", "läuft": "runs", "spielt": "plays", "wartet": "waits"}
ADVS = {"heute": "today", "hier": "here", "oft": "often"}
SENTENCES = [
    (f"Der {n} {v} {a}.", f"The {ne} {ve} {ae}.")
    for n, ne in NOUNS.items()
    for v, ve in VERBS.items()
    for a, ae in ADVS.items()
]  # 60 pairs


def dictionary_text() -> str:
    """Sentence entries, word entries with annotations, and for every sentence two near copies that are not
    sentences (lower case, no full stop; and inside a longer alternative): leaks if its sentence is held out."""
    lines = ["# a comment"]
    for (de, en), (n, ne) in zip(SENTENCES, list(NOUNS.items()) * 12, strict=True):
        lines.append(f"{n} {{m}} | {de} :: {ne} [zool.] | {en}")
        lines.append(f"{de[:-1].lower()} :: {en[:-1].lower()}")
        lines.append(f"na ja; also {de[:-1]} jetzt :: oh well; so {en[:-1]} now")
    lines.append("jdn. sehen; sehen :: to see sb.; to see")
    lines.append("Erdabbau (von etw.) :: breakdown/degradation")
    return "\n".join(lines) + "\n"


def test_dictionary_phrases_clean_entries(tmp_path):
    path = tmp_path / "de-en"
    path.write_text(dictionary_text(), encoding="utf-8")
    phrases = pairs_io.dictionary_phrases(pairs_io.dictionary_entries(path))
    assert ("Hund", "dog") in phrases  # annotations {m} and [zool.] gone
    assert ("Erdabbau", "breakdown") in phrases  # "(von etw.)" gone, the slash keeps its first choice
    assert ("sehen", "see") in phrases and not any("jdn." in d or "sb." in e for d, e in phrases)  # placeholders
    assert ("na ja", "oh well") in phrases and (
        "also Der Hund schläft heute jetzt",
        "so The dog sleeps today now",
    ) in phrases
    assert not set(SENTENCES) & set(phrases)  # sentence pairs are split, never extras


def test_without_held_out_drops_copies_and_containers():
    held = [("Ich gebe auf.", ["I give up.", "I quit."])]
    pairs = [
        ("ich gebe auf", "surrender"),  # the source, normalised
        ("Na gut, ich gebe auf!", "fine"),  # the source inside a longer text
        ("aufgeben", "I quit"),  # a reference, normalised
        ("aufgeben", "give up"),  # kept
        ("ich gebe", "I give"),  # a part of a held-out sentence is not the sentence: kept
    ]
    assert pairs_io.without_held_out(pairs, held) == [("aufgeben", "give up"), ("ich gebe", "I give")]


def test_extra_pairs_leave_the_held_out_split_unchanged_and_never_leak(tmp_path, monkeypatch):
    path = tmp_path / "de-en"
    path.write_text(dictionary_text(), encoding="utf-8")
    monkeypatch.setattr(pairs_io, "DING", path)
    sizes = {"vocab_size": 300, "n_val": 6, "n_test": 6, "batch_size": 10}
    plain = tr.TranslateTask().data(tr.TranslateConfig(**sizes))
    data = tr.TranslateTask().data(tr.TranslateConfig(**sizes, extra_pairs="dictionary", extra_share=0.3))
    for split in ("val", "test", "train"):
        assert data.splits[split] == plain.splits[split]
    assert plain.splits["extra"] == [] and plain.splits["extra_ids"] == []
    held = {pairs_io.normalise(t) for s, refs in data.splits["val"] + data.splits["test"] for t in (s, *refs)}
    extra = data.splits["extra"]
    for de, en in extra:  # a plain substring check on whole words, independent of the filter's own search
        for text in (de, en):
            assert not any(f" {h} " in f" {pairs_io.normalise(text)} " for h in held), (de, en)
    train = {pairs_io.normalise(s) for s, _ in data.splits["train"]}
    kept = {pairs_io.normalise(de) for de, _ in extra}
    assert train <= kept  # the near copies of *training* sentences stay: the filter removes leaks only
    assert len(data.splits["extra_ids"]) == len(extra) > len(NOUNS)
    cfg = tr.TranslateConfig(**sizes, extra_pairs="dictionary", extra_share=0.3)
    batch = tr.TranslateTask().batch(data, cfg, torch.Generator().manual_seed(0))
    rows = [tuple(r[r != pairs_io.PAD].tolist()) for r in batch["src_ids"]]
    assert set(rows[:7]) <= {tuple(s) for s, _ in data.splits["train_ids"]}  # 70% sentences, 30% extras
    assert set(rows[7:]) <= {tuple(s) for s, _ in data.splits["extra_ids"]} and len(rows) == 10


def test_extra_pairs_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="extra_pairs"):
        tr.TranslateConfig(extra_pairs="wiki")
    with pytest.raises(ValueError, match="not pairs="):
        tr.TranslateConfig(extra_pairs="dictionary", pairs=str(tmp_path / "p.tsv"))
    with pytest.raises(ValueError, match="extra_share"):
        tr.TranslateConfig(extra_share=1.0)
    with pytest.raises(ValueError, match="extra_batch"):
        tr.TranslateConfig(extra_batch=-1)
    with pytest.raises(ValueError, match="extra_batch"):
        tr.TranslateConfig(extra_batch=8)  # needs the extra pairs


def test_by_length_is_a_shuffled_stable_sort_and_neighbours_are_a_window():
    pairs = [([1] * (i % 5 + 1), [2] * (i % 3 + 1)) for i in range(40)]
    ordered = tr.by_length(pairs, seed=0)
    assert sorted(map(str, ordered)) == sorted(map(str, pairs))  # the same pairs
    keys = [(len(s), len(t)) for s, t in ordered]
    assert keys == sorted(keys) and tr.by_length(pairs, seed=0) == ordered  # sorted, by the seed alone
    window = tr.neighbours(40, 8, torch.Generator().manual_seed(3))
    assert window.tolist() == list(range(int(window[0]), int(window[0]) + 8))
    assert tr.neighbours(5, 8, torch.Generator()).tolist() == [0, 1, 2, 3, 4]  # never past the end


def test_extra_batch_is_a_length_bucket_of_its_own_and_the_loss_weighs_tokens(tmp_path, monkeypatch):
    path = tmp_path / "de-en"
    path.write_text(dictionary_text(), encoding="utf-8")
    monkeypatch.setattr(pairs_io, "DING", path)
    sizes = {"vocab_size": 300, "n_val": 6, "n_test": 6, "batch_size": 10}
    task = tr.TranslateTask()
    mixed_cfg = tr.TranslateConfig(**sizes, extra_pairs="dictionary")
    mixed = task.data(mixed_cfg)
    cfg = tr.TranslateConfig(**sizes, extra_pairs="dictionary", extra_batch=16, length_buckets=True)
    data = task.data(cfg)
    for split in ("val", "test", "train"):  # bucketing reorders training pairs only
        assert data.splits[split] == mixed.splits[split]
    assert sorted(map(str, data.splits["train_ids"])) == sorted(map(str, mixed.splits["train_ids"]))
    batch = task.batch(data, cfg, torch.Generator().manual_seed(0))
    assert batch["src_ids"].shape[0] == 10 and batch["extra_src_ids"].shape[0] == 16  # all sentences + 16 extras
    sentences = {tuple(s) for s, _ in data.splits["train_ids"]}
    extras = {tuple(s) for s, _ in data.splits["extra_ids"]}
    assert {tuple(r[r != pairs_io.PAD].tolist()) for r in batch["src_ids"]} <= sentences
    assert {tuple(r[r != pairs_io.PAD].tolist()) for r in batch["extra_src_ids"]} <= extras
    # a bucket is padded to about its own length, not to the longest sentence
    lengths = (batch["extra_src_ids"] != pairs_io.PAD).sum(1)
    assert int(lengths.max() - lengths.min()) <= 2 and batch["extra_src_mask"].shape == batch["extra_src_ids"].shape
    # the loss: the mean over the target tokens of both parts, with the same smoothing
    torch.manual_seed(0)
    model = task.model(tr.TranslateConfig(**sizes, d_model=16, n_heads=2, n_layers=1, d_ff=32), data.meta).eval()
    main = {k: v for k, v in batch.items() if not k.startswith("extra_")}
    extra = {k.removeprefix("extra_"): v for k, v in batch.items() if k.startswith("extra_")}
    n, n_extra = (main["labels"] != pairs_io.PAD).sum(), (extra["labels"] != pairs_io.PAD).sum()
    both = model(**main, label_smoothing=0.1).loss * n + model(**extra, label_smoothing=0.1).loss * n_extra
    assert torch.allclose(task.loss(model, batch, cfg), both / (n + n_extra))
    # the default mode's draws are unchanged by the new options (recorded runs keep their meaning)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    idx = torch.randint(len(mixed.splits["train_ids"]), (5,), generator=g2)
    jdx = torch.randint(len(mixed.splits["extra_ids"]), (5,), generator=g2).tolist()
    expected = pairs_io.collate_pairs(
        [mixed.splits["train_ids"][i] for i in idx.tolist()] + [mixed.splits["extra_ids"][j] for j in jdx]
    )
    got = task.batch(mixed, mixed_cfg, g1)
    assert all(torch.equal(got[k], expected[k]) for k in expected) and set(got) == set(expected)


def test_pretranslate_feeds_the_sentence_and_its_lookup_and_keeps_the_split(tmp_path, monkeypatch):
    path = tmp_path / "de-en"
    path.write_text(dictionary_text(), encoding="utf-8")
    monkeypatch.setattr(pairs_io, "DING", path)
    words = tr.dictionary_words(str(path))
    assert tr.hinted("Der Hund schläft.", None) == "Der Hund schläft."
    assert tr.hinted("Der Hund schläft.", words) == "Der Hund schläft. || Der dog schläft."  # what lookup knows
    sizes = {"vocab_size": 300, "n_val": 6, "n_test": 6, "batch_size": 10, "max_len": 16}
    task = tr.TranslateTask()
    plain = task.data(tr.TranslateConfig(**sizes, extra_pairs="dictionary"))
    cfg = tr.TranslateConfig(**sizes, extra_pairs="dictionary", pretranslate=True)
    data = task.data(cfg)
    for split in ("val", "test", "train", "extra"):  # the same sentences and extras: only the encoder input differs
        assert data.splits[split] == plain.splits[split]
    tok = pairs_io.run_tokenizer(data.meta)
    fits = [de for de, en in data.splits["train"] if len(tok.encode(en)) < 16]  # targets + <eos> within max_len
    hinted_train = [tok.encode(tr.hinted(de, words)) for de in fits]
    assert [s for s, _ in data.splits["train_ids"]] == hinted_train  # every source fits in 2 * max_len here
    assert [t for _, t in data.splits["train_ids"]] == [t for _, t in plain.splits["train_ids"]]  # targets as before
    assert pairs_io.decode(tok, hinted_train[0]).strip() == tr.hinted(data.splits["train"][0][0], words)
    assert cfg.source_len == 32 and max(map(len, hinted_train)) > 16  # longer than max_len, and they fit
    extras = [s for s, _ in data.splits["extra_ids"]]
    assert extras[0] == tok.encode(tr.hinted(data.splits["extra"][0][0], words))  # the extras are hinted too...
    plain_extras = task.data(
        tr.TranslateConfig(**sizes, extra_pairs="dictionary", pretranslate=True, pretranslate_extras=False)
    )
    unhinted = plain_extras.splits["extra_ids"]  # ...unless told not to: plain (a longer source limit lets more in)
    assert set(map(str, plain.splits["extra_ids"])) <= set(map(str, unhinted))
    assert not any("||" in pairs_io.decode(tok, s) for s, _ in unhinted)
    held = [s for s, _ in data.splits["test"]]
    assert task.source_ids(cfg, tok, held) == [tok.encode(tr.hinted(h, words))[:32] for h in held]
    small = tr.TranslateConfig(**sizes, pretranslate=True, d_model=16, n_heads=2, n_layers=1, d_ff=32)
    model = task.model(small, data.meta).eval()
    assert len(task.translate(model, cfg, tok, held[:2])) == 2  # sources longer than max_len run through


def test_hint_candidates_lengthen_the_lookup_and_the_source_limit(tmp_path, monkeypatch):
    path = tmp_path / "de-en"
    path.write_text(dictionary_text() + "Hund {m} :: hound\n", encoding="utf-8")
    monkeypatch.setattr(pairs_io, "DING", path)
    sizes = {"vocab_size": 300, "n_val": 6, "n_test": 6, "batch_size": 10, "max_len": 16}
    cfg = tr.TranslateConfig(**sizes, extra_pairs="dictionary", pretranslate=True, hint_candidates=2)
    assert cfg.source_len == 48  # the sentence and a lookup up to twice as long
    task = tr.TranslateTask()
    words = task.hint_words(cfg)
    assert words is not None and words["Hund"] == "dog/hound"
    assert tr.hinted("Der Hund schläft.", words) == "Der Hund schläft. || Der dog/hound schläft."
    data = task.data(cfg)
    tok = pairs_io.run_tokenizer(data.meta)
    held = [s for s, _ in data.splits["test"]]
    assert task.source_ids(cfg, tok, held) == [tok.encode(tr.hinted(h, words))[:48] for h in held]
    with pytest.raises(ValueError, match="hint_candidates"):
        tr.TranslateConfig(**sizes, hint_candidates=2)  # a hint needs pretranslate
    with pytest.raises(ValueError, match="hint_candidates"):
        tr.TranslateConfig(**sizes, pretranslate=True, hint_candidates=0)


def test_pretranslate_needs_the_dictionary(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pairs_io, "DING", tmp_path / "missing")
    tsv = tmp_path / "p.tsv"
    tsv.write_text("".join(f"{de}\t{en}\n" for de, en in SENTENCES), encoding="utf-8")
    argv = [
        "train",
        "translate",
        "--out",
        str(tmp_path / "r"),
        "--no-progress",
        "--set",
        f"pairs={tsv}",
        "n_val=5",
        "n_test=5",
    ]
    assert main([*argv, "pretranslate=true"]) != 0
    err = capsys.readouterr().err
    assert "pretranslate=true needs the dictionary" in err and "apt-get install trans-de-en" in err
    assert "Traceback" not in err and not (tmp_path / "r").exists()
