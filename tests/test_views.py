"""Attention views: the PNG grid and the HTML page of tinyformers.viz.views, the `attention` command of the copy
(encoder-decoder and decoder-only) and shakespeare tasks, and the page driven in a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from PIL import Image

from tinyformers.apps.cli import main
from tinyformers.errors import UserError
from tinyformers.viz.views import display_token, part_paths, save_attention_views

COPY = ["d_model=16", "n_heads=2", "n_layers=2", "d_ff=32", "max_digits=5", "n_val=8", "n_test=8", "batch_size=8"]
TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\n" * 30
SHAKESPEARE = ["d_model=16", "n_heads=2", "n_layers=2", "block_size=16", "batch_size=8", "eval_windows=8"]


def weights(layers: int, heads: int, t_q: int, t_k: int, causal: bool = False) -> list[torch.Tensor]:
    scores = torch.randn(layers, heads, t_q, t_k)
    if causal:
        scores = scores.masked_fill(torch.ones(t_q, t_k).triu(1).bool(), float("-inf"))
    return list(torch.softmax(scores, dim=-1))  # layers x (heads, T_query, T_key)


def page_data(path: Path) -> dict:
    """The JSON data block of a written page."""
    text = path.read_text(encoding="utf-8")
    block = re.search(r'<script id="attention-data" type="application/json">(.*?)</script>', text, re.S)
    return json.loads(block.group(1))


# --- the module ---------------------------------------------------------------------------------------------


def test_png_and_self_contained_html(tmp_path):
    tokens = ["T", "o", " ", "b", "e", "\n", "$x$", "</script><b>"]
    att = weights(3, 4, len(tokens), len(tokens), causal=True)
    paths = save_attention_views(tokens, att, tmp_path / "a.png", tmp_path / "a.html", title="demo")
    assert paths == [str(tmp_path / "a.png"), str(tmp_path / "a.html")]
    with Image.open(tmp_path / "a.png") as im:
        assert im.format == "PNG" and im.width > im.height > 300  # 3 rows x 4 columns of panels
    text = (tmp_path / "a.html").read_text(encoding="utf-8")
    assert text.count("</script>") == 2  # the data block's and the code's: the token cannot end a script
    fetches = re.findall(r"(?:src|href)=|https?://[^\s\"']*|@import", text)
    assert fetches == ["http://www.w3.org/2000/svg"]  # only the SVG namespace name: nothing fetched, works offline
    data = page_data(tmp_path / "a.html")
    assert data["tokens"] == data["query_tokens"] == [display_token(t) for t in tokens]
    assert data["tokens"][2] == "␣" and data["tokens"][5] == "⏎"
    got = torch.tensor(data["attentions"])  # (layers, heads, T, T)
    assert got.shape == (3, 4, 8, 8)
    assert torch.allclose(got, torch.stack(att), atol=1e-4)
    assert "<title>demo</title>" in text


def test_cross_attention_keeps_queries_and_keys_apart(tmp_path):
    att = weights(2, 2, 3, 5)
    save_attention_views(list("abcde"), att, tmp_path / "x.png", tmp_path / "x.html", query_tokens=["<bos>", "1", "2"])
    data = page_data(tmp_path / "x.html")
    assert data["query_tokens"] == ["<bos>", "1", "2"] and data["tokens"] == list("abcde") and data["cross"]
    assert torch.tensor(data["attentions"]).shape == (2, 2, 3, 5)


def test_png_only_without_html(tmp_path):
    assert save_attention_views(list("ab"), weights(1, 1, 2, 2), tmp_path / "a.png") == [str(tmp_path / "a.png")]
    assert not list(tmp_path.glob("*.html"))


@pytest.mark.parametrize(
    ("att", "match"),
    [
        ([], "no attention weights"),
        ([torch.rand(2, 3, 3)], r"\(2, 3, 3\)"),  # 3 tokens of attention for 4 tokens
        ([torch.rand(1, 2, 4, 4)], "expected"),  # a batch dimension left in
        ([torch.rand(2, 4, 4), torch.rand(3, 4, 4)], "layer 1"),  # heads differ between layers
    ],
)
def test_shapes_must_match_the_tokens(tmp_path, att, match):
    with pytest.raises(ValueError, match=match):
        save_attention_views(list("abcd"), att, tmp_path / "a.png")


@pytest.mark.parametrize(
    ("out", "html", "match"),
    [
        ("a.jpg", None, "ending in .png"),
        ("a.png", "a.txt", "ending in .html"),
        ("missing/a.png", None, "does not exist"),
        ("dir.png", None, "is a directory"),
    ],
)
def test_bad_output_paths_are_user_errors(tmp_path, out, html, match):
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(UserError, match=match):
        save_attention_views(list("ab"), weights(1, 1, 2, 2), tmp_path / out, html and tmp_path / html)
    assert not (tmp_path / "a.png").exists()  # nothing half-written


def test_part_paths_name_each_view_after_the_users_paths(tmp_path):
    assert part_paths(tmp_path / "a.png", tmp_path / "v.html", "cross") == (
        tmp_path / "a-cross.png",
        tmp_path / "v-cross.html",
    )
    assert part_paths(tmp_path / "a.png", None, "encoder") == (tmp_path / "a-encoder.png", None)
    with pytest.raises(UserError, match=r"a\.jpg: the attention grid is a PNG"):  # the user's path, not a-cross.jpg
        part_paths(tmp_path / "a.jpg", None, "cross")


# --- the tasks, through the CLI ---------------------------------------------------------------------------


def train(tmp_path_factory, task: str, settings: list[str]) -> Path:
    out = tmp_path_factory.mktemp(task) / "run"
    argv = ["train", task, "--out", str(out), "--max-steps", "4", "--no-progress", "--set", *settings, "eval_every=4"]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def seq2seq_run(tmp_path_factory):
    return train(tmp_path_factory, "copy", COPY)


@pytest.fixture(scope="module")
def decoder_run(tmp_path_factory):
    return train(tmp_path_factory, "reverse", [*COPY, "arch=decoder"])


@pytest.fixture(scope="module")
def shakespeare_run(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("text") / "play.txt"
    corpus.write_text(TEXT)
    return train(tmp_path_factory, "shakespeare", [*SHAKESPEARE, f"corpus={corpus}", "max_time=0"])


def is_causal(att: torch.Tensor) -> bool:
    """(layers, heads, T, T): nothing above the diagonal, every row a distribution."""
    return bool(att.triu(1).abs().max() == 0) and torch.allclose(att.sum(-1), torch.ones(att.shape[:-1]), atol=1e-3)


def test_seq2seq_writes_encoder_decoder_and_cross_views(seq2seq_run, tmp_path, capsys):
    argv = ["attention", str(seq2seq_run), "3141", "--out", str(tmp_path / "a.png"), "--html", str(tmp_path / "a.html")]
    assert main(argv) == 0
    printed = capsys.readouterr().out.split()
    for part in ("encoder", "decoder", "cross"):
        assert str(tmp_path / f"a-{part}.png") in printed and str(tmp_path / f"a-{part}.html") in printed
    encoder = page_data(tmp_path / "a-encoder.html")
    decoder = page_data(tmp_path / "a-decoder.html")
    cross = page_data(tmp_path / "a-cross.html")
    assert encoder["tokens"] == encoder["query_tokens"] == list("3141")
    enc = torch.tensor(encoder["attentions"])
    assert enc.shape == (2, 2, 4, 4) and enc.triu(1).sum() > 0  # the encoder sees the whole source
    dec = torch.tensor(decoder["attentions"])
    assert decoder["tokens"][0] == "<bos>" and is_causal(dec)  # the decoder sees only its past
    assert cross["tokens"] == list("3141") and cross["query_tokens"] == decoder["tokens"]
    assert torch.tensor(cross["attentions"]).shape == (2, 2, len(decoder["tokens"]), 4)


def test_decoder_only_view_covers_prompt_and_answer(decoder_run, tmp_path, capsys):
    assert main(["attention", str(decoder_run), "271", "--out", str(tmp_path / "d.png")]) == 0
    assert capsys.readouterr().out.split() == ["wrote", str(tmp_path / "d.png")]
    assert (
        main(
            ["attention", str(decoder_run), "271", "--out", str(tmp_path / "d.png"), "--html", str(tmp_path / "d.html")]
        )
        == 0
    )
    data = page_data(tmp_path / "d.html")
    assert data["tokens"][:5] == ["<bos>", "2", "7", "1", "<sep>"] and len(data["tokens"]) > 5
    assert is_causal(torch.tensor(data["attentions"]))


def test_shakespeare_view(shakespeare_run, tmp_path):
    argv = [
        "attention",
        str(shakespeare_run),
        "But soft",
        "--out",
        str(tmp_path / "s.png"),
        "--html",
        str(tmp_path / "s.html"),
    ]
    assert main(argv) == 0
    data = page_data(tmp_path / "s.html")
    assert data["tokens"] == ["B", "u", "t", "␣", "s", "o", "f", "t"]
    att = torch.tensor(data["attentions"])
    assert att.shape == (2, 2, 8, 8) and is_causal(att)


def one_line_error(capsys, argv: list[str], match: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert match in err, err


def test_bad_inputs_are_one_line_errors(seq2seq_run, shakespeare_run, tmp_path, capsys):
    run, out = str(seq2seq_run), str(tmp_path / "a.png")
    one_line_error(capsys, ["attention", run, "31a4", "--out", out], "give a sequence of digits")
    one_line_error(capsys, ["attention", run, "1" * 11, "--out", out], "at most 10 digits")
    one_line_error(capsys, ["attention", run, "3141", "--out", str(tmp_path / "a.svg")], "a.svg: the attention grid")
    one_line_error(
        capsys, ["attention", run, "3141", "--out", out, "--html", str(tmp_path / "a.txt")], "ending in .html"
    )
    one_line_error(capsys, ["attention", run, "3141", "--out", str(tmp_path / "no" / "a.png")], "does not exist")
    run = str(shakespeare_run)
    one_line_error(capsys, ["attention", run, "a" * 17, "--out", out], "at most block_size=16")
    one_line_error(capsys, ["attention", run, "Zzz", "--out", out], "not in the model's vocabulary")
    one_line_error(capsys, ["attention", run, "", "--out", out], "the text is empty")


# --- the page in a real browser ---------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class _Elements(HTMLParser):
    """Attributes of every element that has an id, and of <body>, from a DOM dump."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.by_id["body"] = a
        if "id" in a:
            self.by_id[a["id"]] = a


def rendered(page: Path, query: str, tmp_path: Path) -> dict[str, dict[str, str]]:
    """The page's DOM after its script ran in headless Chromium, opened with ``?query``."""
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            f"{page.as_uri()}?{query}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    parser = _Elements()
    parser.feed(result.stdout)
    return parser.by_id


@pytest.mark.skipif(CHROMIUM is None, reason="needs the Debian chromium package (apt-get install chromium)")
def test_page_runs_in_headless_chromium(tmp_path):
    tokens = ["<bos>", "a", "b", "c", "d"]
    att = weights(2, 3, 5, 5, causal=True)
    save_attention_views(tokens, att, tmp_path / "v.png", tmp_path / "v.html")

    # hover query token 3 in layer 2, head 1: its keys are shaded with its weights, one line per key it reads
    dom = rendered(tmp_path / "v.html", "layer=2&head=1&hover=q3", tmp_path)
    assert dom["body"]["data-ready"] == "1" and (dom["body"]["data-layer"], dom["body"]["data-head"]) == ("1", "0")
    assert all(f"q-{i}" in dom and f"k-{i}" in dom for i in range(5))  # the token elements
    assert "active" in dom["q-3"]["class"] and "active" not in dom["q-2"]["class"]
    for k in range(5):
        assert float(dom[f"k-{k}"]["data-weight"]) == pytest.approx(att[1][0][3][k].item(), abs=1e-4)
    assert int(dom["lines"]["data-lines"]) == int((att[1][0][3] >= 0.005).sum())  # causal: keys 0..3 at most
    assert dom["layer"] and dom["head"]

    # hover key token 0 with the mean of the heads: every query attends to it (causal), so each query is shaded
    dom = rendered(tmp_path / "v.html", "layer=1&head=mean&hover=k0", tmp_path)
    assert dom["body"]["data-head"] == "-1"
    mean = att[0].mean(0)  # (T, T)
    for q in range(5):
        assert float(dom[f"q-{q}"]["data-weight"]) == pytest.approx(mean[q][0].item(), abs=1e-3)

    # no hover: every non-negligible weight of layer 1, head 1 is a line and no token is shaded
    dom = rendered(tmp_path / "v.html", "", tmp_path)
    assert int(dom["lines"]["data-lines"]) == int((att[0][0] >= 0.005).sum())
    assert not any("data-weight" in dom[f"k-{k}"] for k in range(5))
