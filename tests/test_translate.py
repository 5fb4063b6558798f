"""The translate task on a tiny TSV made here: leak-free split, shared BPE with specials, label-smoothed loss,
learning, BLEU keys, predict/translate through the CLI with beams and the attention picture, the dictionary
parsers on a tiny dictionary file, and every bad input as a one-line error."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from tinyformers.apps.cli import main
from tinyformers.core.tokenizers import tokenizer_from_dict
from tinyformers.data import translation as pairs_io
from tinyformers.tasks import translate as tr

# A toy "language": German-like sources whose word-by-word English is the target.
NOUNS = {"Hund": "dog", "Katze": "cat", "Vogel": "bird", "Fisch": "fish", "Pferd": "horse", "Maus": "mouse"}
VERBS = {"schläft": "sleeps", "läuft": "runs", "frisst": "eats", "spielt": "plays", "wartet": "waits"}
ADVS = {"heute": "today", "hier": "here", "oft": "often", "dort": "there"}
PAIRS = [
    (f"Der {n} {v} {a}.", f"The {ne} {ve} {ae}.")
    for n, ne in NOUNS.items()
    for v, ve in VERBS.items()
    for a, ae in ADVS.items()
]  # 120 pairs
TINY = [
    "d_model=32",
    "n_heads=2",
    "n_layers=1",
    "d_ff=64",
    "dropout=0",
    "vocab_size=300",
    "n_val=8",
    "n_test=8",
    "batch_size=16",
    "warmup_steps=10",
    "num_beams=2",
]


@pytest.fixture(scope="module")
def tsv(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "pairs.tsv"
    path.write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run_dir(tsv, tmp_path_factory):
    out = tmp_path_factory.mktemp("tr") / "run"
    argv = ["train", "translate", "--out", str(out), "--max-steps", "400", "--no-progress"]
    assert main([*argv, "--set", *TINY, f"pairs={tsv}", "lr=5e-3", "eval_every=200"]) == 0
    return out


def test_split_keeps_trivial_variants_together():
    pairs = [
        ("Ich gebe auf.", "I give up."),
        ("Ich gebe auf!", "I quit!"),  # same source up to punctuation
        ("Gib auf!", "I give up."),  # same target as the first
        *[(f"Satz {i} ist da.", f"Sentence {i} is there.") for i in range(30)],
    ]
    groups = pairs_io.group_pairs(sorted(pairs))
    assert sorted(len(g) for g in groups)[-1] == 3 and len(groups) == 31
    for seed in range(5):
        s = pairs_io.split_pairs(sorted(pairs), 3, 3, seed, "test")
        held = {pairs_io.normalise(src) for split in ("val", "test") for src, _ in s[split]}
        assert not held & {pairs_io.normalise(src) for src, _ in s["train"]}
        assert not {pairs_io.normalise(r) for split in ("val", "test") for _, refs in s[split] for r in refs} & {
            pairs_io.normalise(t) for _, t in s["train"]
        }
    examples = dict(pairs_io.held_out_examples(groups))  # variants of one source: one example, all references
    assert examples["Ich gebe auf!"] == ["I give up.", "I quit!"] and examples["Gib auf!"] == ["I give up."]


def test_tokenizer_has_specials_and_round_trips():
    tok = pairs_io.train_tokenizer([t for p in PAIRS for t in p], 300)
    assert [tok.tokenizer.token_to_id(s) for s in pairs_io.SPECIALS] == [pairs_io.PAD, pairs_io.BOS, pairs_io.EOS]
    ids = tok.encode("Der Hund schläft heute.")
    assert pairs_io.PAD not in ids and pairs_io.decode(tok, ids + [pairs_io.EOS, 7, 8]) == "Der Hund schläft heute."


def test_label_smoothing_raises_the_loss_of_a_confident_model():
    task = tr.TranslateTask()
    cfg = tr.TranslateConfig(d_model=16, n_heads=2, n_layers=1, d_ff=32, vocab_size=300, label_smoothing=0.0)
    meta = {"tokenizer": pairs_io.train_tokenizer([t for p in PAIRS for t in p], 300).to_dict()}
    model = task.model(cfg, meta).eval()  # no dropout: the two losses see the same network
    batch = pairs_io.collate_pairs([([5, 6, 7], [8, 9, pairs_io.EOS]), ([5, 6], [8, pairs_io.EOS])])
    plain = task.loss(model, batch, cfg)
    assert plain.item() == pytest.approx(model(**batch).loss.item(), rel=1e-5)  # padding ignored alike
    with torch.no_grad():
        model.lm_head.weight.mul_(50)  # near one-hot predictions: smoothing penalises them
    smoothed = tr.TranslateConfig(d_model=16, n_heads=2, n_layers=1, d_ff=32, vocab_size=300, label_smoothing=0.3)
    assert task.loss(model, batch, smoothed) > task.loss(model, batch, cfg)


def test_training_learns_and_beats_copying(run_dir):
    m = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test_bleu_greedy", "test_bleu_beam", "test_chrf", "copy_bleu", "params", "train_seconds"):
        assert key in m
    assert "lookup_bleu" not in m  # the dictionary baseline exists for the dictionary's own data only
    assert m["test_bleu_greedy"] > 50 > m["copy_bleu"], m
    assert (run_dir / "cross_attention.png").stat().st_size > 0


def test_translate_through_the_cli(run_dir, tmp_path, capsys):
    capsys.readouterr()
    assert main(["translate", str(run_dir), "Der Hund spielt hier.", "Die Maus läuft oft."]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("Der Hund spielt hier.\t")
    png = tmp_path / "att.png"
    argv = ["predict", str(run_dir), "Der Vogel wartet dort.", "--num-beams", "3", "--length-penalty", "0.6"]
    assert main([*argv, "--show-attention", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["attention", str(run_dir), "Der Fisch frisst heute.", "--out", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.png").exists()


def test_beam_search_of_one_beam_is_greedy(run_dir):
    from tinyformers.tasks import load_run

    task, cfg, meta, model = load_run(run_dir)
    sources = [s for s, _ in PAIRS[::7]]
    assert task.predict(model, cfg, meta, sources, num_beams=1) == task.translate(
        model, cfg, tokenizer_from_dict(meta["tokenizer"]), sources
    )


def test_length_penalty_chosen_on_validation(run_dir):
    """length_penalties: beam search on validation with each candidate; the best validation BLEU's is used."""
    from tinyformers.engine.trainer import evaluate_run
    from tinyformers.tasks import get_task

    m = evaluate_run(get_task("translate"), run_dir, ["length_penalties=0.5,1.5"])
    assert set(m) >= {"length_penalty_chosen", "val_bleu_beam_lp0.5", "val_bleu_beam_lp1.5", "test_bleu_beam"}
    chosen = m[f"val_bleu_beam_lp{m['length_penalty_chosen']:g}"]
    assert chosen == max(m["val_bleu_beam_lp0.5"], m["val_bleu_beam_lp1.5"])  # (a BLEU tie is settled by chrF)
    with pytest.raises(ValueError, match="length_penalties"):
        tr.TranslateConfig(length_penalties="short")


def test_length_penalty_metric_picks_by_chrf_when_asked(monkeypatch):
    """Where validation BLEU and chrF disagree, length_penalty_metric decides; the other metric breaks ties."""
    from tinyformers.engine.task import TaskData

    scores = {0.6: (9.0, 30.0), 1.0: (8.0, 33.0), 1.4: (8.0, 34.0), 2.0: (9.0, 29.0)}  # (BLEU, chrF) per value
    monkeypatch.setattr(
        tr.TranslateTask,
        "translate_nbest",
        lambda self, m, c, t, src, beams, lp, cp, n, **kw: [[str(lp)] * n] * len(src),
    )
    monkeypatch.setattr(pairs_io, "corpus_scores", lambda hyps, examples: scores[float(hyps[0])])
    data = TaskData(splits={"val": [("ein Hund", "a dog")]})
    grid = "0.6,1.0,1.4,2.0"
    by_bleu, values = tr.TranslateTask().tune_penalties(None, data, tr.TranslateConfig(length_penalties=grid), None)
    assert by_bleu == (0.6, 0.0)  # BLEU 9 twice: chrF 30 > 29 settles it; no coverage grid: the set value
    assert values["val_bleu_beam_lp1.4"] == 8.0 and values["val_chrf_lp1.4"] == 34.0
    cfg = tr.TranslateConfig(length_penalties=grid, length_penalty_metric="chrf")
    assert tr.TranslateTask().tune_penalties(None, data, cfg, None)[0] == (1.4, 0.0)
    with pytest.raises(ValueError, match="length_penalty_metric"):
        tr.TranslateConfig(length_penalty_metric="ter")


def test_coverage_penalty_chosen_with_the_length_penalty(monkeypatch):
    """coverage_penalties: every (length, coverage) pair is tried on validation and the best pair wins; each
    pair's scores are reported; a negative or unreadable grid is an error naming the setting."""
    from tinyformers.engine.task import TaskData

    chrf = {(1.0, 0.0): 30.0, (1.0, 0.4): 31.0, (2.0, 0.0): 32.0, (2.0, 0.4): 31.5}
    seen = []

    def translate_nbest(self, m, c, t, src, beams, lp, cp, n, **kw):
        seen.append((lp, cp))
        return [[f"{lp} {cp}"] * n] * len(src)

    monkeypatch.setattr(tr.TranslateTask, "translate_nbest", translate_nbest)
    monkeypatch.setattr(
        pairs_io, "corpus_scores", lambda hyps, ex: (1.0, chrf.get(tuple(map(float, hyps[0].split())), 0.0))
    )
    data = TaskData(splits={"val": [("ein Hund", "a dog")]})
    cfg = tr.TranslateConfig(length_penalties="1.0,2.0", coverage_penalties="0,0.4", length_penalty_metric="chrf")
    best, values = tr.TranslateTask().tune_penalties(None, data, cfg, None)
    assert best == (2.0, 0.0) and sorted(seen) == sorted(chrf)
    assert values["val_chrf_lp1_cp0.4"] == 31.0 and values["val_bleu_beam_lp2_cp0"] == 1.0
    cfg = tr.TranslateConfig(coverage_penalties="0,0.4", coverage_penalty=0.2, length_penalty=1.5)
    seen.clear()
    tr.TranslateTask().tune_penalties(None, data, cfg, None)  # no length grid: the set length penalty
    assert seen == [(1.5, 0.0), (1.5, 0.4)]
    for bad in ("0,-0.2", "0.1,inf", "some"):
        with pytest.raises(ValueError, match="coverage_penalties"):
            tr.TranslateConfig(coverage_penalties=bad)
    with pytest.raises(ValueError, match="coverage_penalty"):
        tr.TranslateConfig(coverage_penalty=-1.0)
    with pytest.raises(ValueError, match="coverage_penalty"):
        tr.TranslateConfig(coverage_penalty=float("inf"))


def test_mbr_picks_the_consensus_of_the_beam_and_reports_the_beams_own_best(run_dir):
    """mbr=chrf: the test translations are the minimum Bayes risk picks among the beam's hypotheses, and the
    beam's own best is scored from the same search (``test_*_top``): equal to the scores without mbr."""
    from tinyformers.engine.trainer import evaluate_run
    from tinyformers.tasks import get_task, load_run

    task = get_task("translate")
    plain = evaluate_run(task, run_dir, ["num_beams=3"])
    m = evaluate_run(task, run_dir, ["num_beams=3", "mbr=chrf"])
    assert m["test_chrf_top"] == pytest.approx(plain["test_chrf"])
    assert m["test_bleu_beam_top"] == pytest.approx(plain["test_bleu_beam"])
    _, cfg, meta, model = load_run(run_dir)
    tok = tokenizer_from_dict(meta["tokenizer"])
    sources = [s for s, _ in PAIRS[::5]]
    nbest = task.translate_nbest(model, cfg, tok, sources, 3, 1.0, 0.0, 3)
    assert all(len(c) == 3 for c in nbest)
    assert [c[0] for c in nbest] == task.translate(model, cfg, tok, sources, 3)  # best first (the run has no mbr)
    with_mbr = dataclasses.replace(cfg, mbr="chrf", num_beams=3)
    picks = task.translate(model, with_mbr, tok, sources, 3)
    utility = pairs_io.sentence_utility("chrf")
    for cands, pick in zip(nbest, picks, strict=True):
        expected = [sum(utility(h, y) for j, y in enumerate(cands) if j != i) for i, h in enumerate(cands)]
        assert pick == cands[expected.index(max(expected))]
    # sampled pseudo-references: seeded (the same twice), each candidate scored against all of them
    sampled = dataclasses.replace(with_mbr, mbr_samples=4)
    refs = task.mbr_references(model, sampled, tok, sources)
    assert refs == task.mbr_references(model, sampled, tok, sources) and all(len(r) == 4 for r in refs)
    picks = task.translate(model, sampled, tok, sources, 3)
    for cands, r, pick in zip(nbest, refs, picks, strict=True):
        expected = [sum(utility(h, y) for y in r) for h in cands]
        assert pick == cands[expected.index(max(expected))]
    m = evaluate_run(task, run_dir, ["num_beams=3", "mbr=chrf", "mbr_samples=4"])
    assert m["test_chrf_top"] == pytest.approx(plain["test_chrf"])
    with pytest.raises(ValueError, match="mbr"):
        tr.TranslateConfig(mbr="ter")
    with pytest.raises(ValueError, match="num_beams >= 2"):
        tr.TranslateConfig(mbr="chrf", num_beams=1)
    with pytest.raises(ValueError, match="mbr_samples"):
        tr.TranslateConfig(mbr_samples=4)  # samples without mbr
    with pytest.raises(ValueError, match="mbr_samples"):
        tr.TranslateConfig(mbr="chrf", mbr_samples=-1)


def test_with_mbr_the_length_penalty_is_chosen_for_the_mbr_picks(monkeypatch):
    """On validation each length penalty's MBR picks are scored (they choose it) and so is the beam's own best
    (``val_chrf_top_lp<l>``), from one search per value."""
    from tinyformers.engine.task import TaskData

    # per length penalty: the beam's best is "x", the other two agree with each other on the value
    monkeypatch.setattr(
        tr.TranslateTask,
        "translate_nbest",
        lambda self, m, c, t, src, beams, lp, cp, n, **kw: [["x", f"{lp} a", f"{lp} a"][:n]] * len(src),
    )
    chrf = {"x": 50.0, "1.0 a": 20.0, "2.0 a": 30.0}
    monkeypatch.setattr(pairs_io, "corpus_scores", lambda hyps, ex: (1.0, chrf[hyps[0]]))
    data = TaskData(splits={"val": [("ein Hund", "ein Hund")]})
    cfg = tr.TranslateConfig(length_penalties="1,2", length_penalty_metric="chrf", num_beams=3, mbr="chrf")
    best, values = tr.TranslateTask().tune_penalties(None, data, cfg, None)
    assert best == (2.0, 0.0)  # by the MBR picks' chrF (30 > 20), not the beam's best (50 for both)
    assert values["val_chrf_lp2"] == 30.0 and values["val_chrf_top_lp2"] == 50.0 == values["val_chrf_top_lp1"]


DICTIONARY = """# comment :: line
Hund {m} | Hunde {pl} :: dog | dogs
gehen {vi} | gehend | er/sie geht :: to go | going | he/she goes
der {art} (des; dem; den) :: the
Das ist gut. :: That is good.
Er geht heute nach Hause. | Er schläft. :: He is going home today. | He sleeps.
Sie hat etw. gesagt. :: She said sth.
"""


def test_dictionary_parsers(tmp_path):
    path = tmp_path / "de-en"
    path.write_text(DICTIONARY, encoding="utf-8")
    entries = pairs_io.dictionary_entries(path)
    assert pairs_io.dictionary_sentences(entries) == [
        ("Das ist gut.", "That is good."),
        ("Er geht heute nach Hause.", "He is going home today."),
    ]
    words = pairs_io.dictionary_words(entries)
    assert words["Hund"] == "dog" and words["Hunde"] == "dogs" and words["geht"] == "goes" and words["der"] == "the"
    assert pairs_io.word_by_word("Der Hund geht, heute.", words) == "The dog goes, heute."


def test_dictionary_words_keep_several_candidates_most_frequent_first(tmp_path):
    path = tmp_path / "de-en"
    extra = "Zug {m} :: move\nZug {m} :: train\nZug {m} [techn.] :: train\nZug {m} :: pull\nZüge {pl} :: trains\n"
    path.write_text(DICTIONARY + extra, encoding="utf-8")
    entries = pairs_io.dictionary_entries(path)
    assert pairs_io.dictionary_words(entries)["Zug"] == "train"  # the baseline's one guess: the most frequent
    two, three = pairs_io.dictionary_words(entries, 2), pairs_io.dictionary_words(entries, 3)
    assert two["Zug"] == "train/move" and three["Zug"] == "train/move/pull"  # then by first seen
    assert two["Züge"] == "trains" and two["Hund"] == "dog"  # a word with one translation keeps it alone
    assert pairs_io.word_by_word("Der Zug geht.", three) == "The train/move/pull goes."


def one_line_error(capsys, argv: list[str], match: str) -> None:
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert captured.out == "" and len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert match in err, err


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("Der Hund.\tThe dog.\nnur eine Spalte\n", "line 2 has 1 column(s)"),
        ("Der Hund.\tThe dog.\n\nDie Katze.\tThe cat.\n", "line 2 is empty"),
        ("a\tb\tc\n", "line 1 has 3 column(s)"),
        ("Der Hund.\t \n", "line 1 has an empty target"),
        ("", "no pairs"),
        (b"Der Hund.\tThe dog.\n\xff\xfe\n", "not UTF-8"),
        ("Der Hund.\tThe dog.\nDie Katze.\tThe cat.\n", "need more than n_val + n_test"),
    ],
)
def test_bad_pairs_file_is_one_line_error(tmp_path, capsys, content, match):
    path = tmp_path / "bad.tsv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    argv = ["train", "translate", "--out", str(tmp_path / "r"), "--max-steps", "1", "--no-progress"]
    one_line_error(capsys, [*argv, "--set", *TINY, f"pairs={path}"], match)


def test_missing_pairs_file(tmp_path, capsys):
    argv = ["train", "translate", "--out", str(tmp_path / "r"), "--no-progress", "--set", f"pairs={tmp_path}/x.tsv"]
    one_line_error(capsys, argv, "x.tsv: no such file")


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["", "--num-beams", "2"], "an input is empty"),
        (["Der Hund.", "--num-beams", "0"], "--num-beams 0"),
        (["Der Hund.", "Die Katze.", "--show-attention", "a.png"], "draws one sentence"),
        (["Der Hund.", "--show-attention", "a.jpg"], "ending in .png"),
        (["Der Hund.", "--show-attention", "/nonexistent/dir/a.png"], "cannot write"),
    ],
)
def test_bad_predict_input_is_one_line_error(run_dir, capsys, extra, match):
    one_line_error(capsys, ["predict", str(run_dir), *extra], match)
