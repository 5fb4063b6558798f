"""``tinyformers serve``: trained language models behind the OpenAI-compatible HTTP API.

Endpoints (the subset every OpenAI client uses): ``GET /v1/models``, ``POST /v1/completions`` and
``POST /v1/chat/completions``, plain or streamed as server-sent events (``stream: true``). Request fields map
to our generator: ``max_tokens`` -> max_new_tokens, ``temperature`` (0 = greedy) and ``top_p`` -> sampling,
``n`` -> that many choices, ``seed`` -> reproducible sampling (choice i uses seed + i), ``stop`` -> the text is
cut before the first stop string and decoding ends there. Sampling uses the whole distribution, as OpenAI's
(no top-k); the request may also give the HF decoding options that are request fields of
:class:`~tinyformers.core.generation.GenerationConfig` (``top_k``, ``min_p``, ``typical_p``,
``repetition_penalty``, ``no_repeat_ngram_size``), under those names, as vLLM and llama.cpp accept them.

Our models are small and not chat-tuned: a chat request's messages are joined into one prompt (each message's
content on its own paragraph) that the model continues. That keeps every OpenAI client working against them.

Errors have OpenAI's body, ``{"error": {"message", "type", "param", "code"}}``, with status 400 (bad request),
404 (unknown model) or 413 (prompt too long). Requests to one model are served one at a time (a lock per
model), so concurrent requests never mix; generation runs in worker threads, so the server stays responsive.
"""

from __future__ import annotations

import hashlib
import json
import math
import queue
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tinyformers.apps import chatpdf
from tinyformers.core.generation import GenerationConfig
from tinyformers.core.tokenizers import tokenizer_from_dict
from tinyformers.engine.task import GeneratesText
from tinyformers.errors import UserError
from tinyformers.tasks import load_run

try:  # module level: FastAPI resolves the endpoints' type hints (``Request``) from this module's globals
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
    from starlette.concurrency import run_in_threadpool
except ImportError as e:  # the CLI reports it as one line
    raise UserError("serving needs fastapi and uvicorn: pip install 'tinyformers[serve]'") from e

# The decoding options a request may give: GenerationConfig's request fields (top_p, top_k, min_p...)
_REQUEST_FIELDS = [f.name for f in fields(GenerationConfig) if f.metadata["request"]]
MAX_PROMPT_CHARS = 100_000
MAX_TOKENS = 4096


class _Stop(Exception):
    """Raised from the streamer to end decoding early (a stop string, or the client went away)."""


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


@dataclass
class ServedModel:
    """A run directory loaded for serving."""

    id: str
    task: Any
    cfg: Any
    meta: dict
    model: Any
    created: int = field(default_factory=lambda: int(time.time()))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def stream(
        self, prompt: str, options: dict[str, Any], stop: list[str], cancelled: threading.Event
    ) -> Iterator[Any]:
        """Yield text pieces as they are generated, then a final ``("finish", reason, n_tokens)`` tuple."""
        pieces: queue.Queue = queue.Queue()
        state = {"tokens": 0}

        def on_piece(text: str) -> None:
            if cancelled.is_set():
                raise _Stop
            state["tokens"] += 1
            pieces.put(text)

        def work() -> None:
            try:
                with self.lock:
                    self.task.generate(self.model, self.cfg, self.meta, prompt, streamer=on_piece, **options)
                pieces.put(("done", None))
            except _Stop:
                pieces.put(("done", None))
            except (UserError, ValueError) as e:
                pieces.put(("error", str(e)))
            except Exception as e:  # noqa: BLE001 - reported to the client as a 500, never lost
                pieces.put(("error500", f"{type(e).__name__}: {e}"))

        threading.Thread(target=work, daemon=True).start()
        text, sent, reason = "", 0, "length"
        while True:
            item = pieces.get()
            if isinstance(item, tuple):
                kind, message = item
                if kind == "error":
                    raise APIError(400, message)
                if kind == "error500":
                    raise APIError(500, message)
                break
            text += item
            hit = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
            if hit >= 0:  # a stop string: send what comes before it and end decoding
                cancelled.set()
                if hit > sent:
                    yield text[sent:hit]
                reason = "stop"
                break
            # hold back a tail that could be the start of a stop string
            safe = len(text) - max((len(s) - 1 for s in stop), default=0)
            if safe > sent:
                yield text[sent:safe]
                sent = safe
        if reason == "length" and len(text) > sent:
            yield text[sent:]
        if reason == "length" and state["tokens"] < options["max_new_tokens"]:
            reason = "stop"  # the model ended the text itself (eos)
        yield ("finish", reason, state["tokens"])


def load_model(run_dir: str | Path, name: str | None = None) -> ServedModel:
    task, cfg, meta, model = load_run(run_dir)
    if not isinstance(task, GeneratesText):
        raise UserError(f"{run_dir}: task {task.name!r} does not generate text; serve a language model run")
    return ServedModel(name or Path(run_dir).resolve().name, task, cfg, meta, model.eval())


def _options(body: dict[str, Any], default_max: int) -> tuple[dict[str, Any], list[str], int]:
    """Validate the OpenAI sampling fields; return generator options, stop strings and n."""

    def number(key: str, default: float | None, lo: float, hi: float, integer: bool = False) -> Any:
        value = body.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
            raise APIError(400, f"{key} must be {'an integer' if integer else 'a number'}", key, "invalid_type")
        if not lo <= value <= hi:
            raise APIError(400, f"{key}={value} is out of range [{lo}, {hi}]", key, "invalid_value")
        return value

    max_tokens = number("max_tokens", default_max, 0, MAX_TOKENS, integer=True)
    if "max_completion_tokens" in body and "max_tokens" not in body:
        max_tokens = number("max_completion_tokens", default_max, 0, MAX_TOKENS, integer=True)
    temperature = number("temperature", 1.0, 0, 2)
    n = number("n", 1, 1, 16, integer=True)
    seed = number("seed", None, -(2**63), 2**63 - 1, integer=True)
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
        raise APIError(400, "stop must be a non-empty string or a list of up to 4 of them", "stop", "invalid_value")
    options: dict[str, Any] = {"max_new_tokens": max_tokens, "do_sample": temperature > 0, "seed": seed}
    if temperature > 0:
        # OpenAI samples from the whole distribution: no top-k unless the request asks for it
        options.update(temperature=temperature, top_k=None)
        for key in _REQUEST_FIELDS:  # HF's decoding options beyond OpenAI's, by their names
            value = number(key, None, -math.inf, math.inf, integer=GenerationConfig.option_type(key) is int)
            if value is not None:
                try:
                    GenerationConfig(do_sample=True, **{key: value}).validate()
                except ValueError as e:
                    raise APIError(400, str(e), key, "invalid_value") from None
                options[key] = value
    return options, stop, n


def _chat_prompt(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "messages must be a non-empty list", "messages", "invalid_value")
    parts = []
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise APIError(400, "each message needs a text content", "messages", "invalid_value")
        parts.append(content)
    return "\n\n".join(parts) + "\n\n"


def create_app(models: list[ServedModel], pdf: Any = None) -> Any:
    """The FastAPI application serving ``models`` (by their ``id``) and, with ``pdf`` (a
    :class:`PdfChat`), the chat-with-a-PDF page at ``/``."""
    by_id = {m.id: m for m in models}
    app = FastAPI(title="tinyformers", description="tinyformers models behind the OpenAI-compatible API")

    @app.exception_handler(APIError)
    async def api_error(_: Request, e: APIError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(m) for m in models]}

    @app.get("/v1/models/{model_id}")
    async def get_model(model_id: str) -> dict[str, Any]:
        return _model_card(_find(by_id, model_id))

    async def _body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            raise APIError(400, "the request body is not valid JSON", None, "invalid_json") from None
        if not isinstance(body, dict):
            raise APIError(400, "the request body must be a JSON object", None, "invalid_json")
        return body

    async def complete(request: Request, chat: bool) -> Any:
        body = await _body(request)
        served = _find(by_id, body.get("model"))
        if chat:
            prompt = _chat_prompt(body.get("messages"))
        else:
            raw = body.get("prompt")
            if isinstance(raw, list) and len(raw) == 1 and isinstance(raw[0], str):
                raw = raw[0]
            if not isinstance(raw, str) or not raw:
                raise APIError(400, "prompt must be a non-empty string", "prompt", "invalid_value")
            prompt = raw
        if len(prompt) > MAX_PROMPT_CHARS:
            raise APIError(413, f"the prompt has {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}", "prompt")
        options, stop, n = _options(body, 256 if chat else 16)
        call = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        seeds = [None if options["seed"] is None else options["seed"] + i for i in range(n)]

        def run_choice(i: int, cancelled: threading.Event) -> Iterator[Any]:
            return served.stream(prompt, {**options, "seed": seeds[i]}, stop, cancelled)

        prompt_tokens = _count_tokens(served, prompt)
        if body.get("stream"):
            return StreamingResponse(
                _sse(served, call, created, chat, n, run_choice, prompt_tokens, body), media_type="text/event-stream"
            )

        def collect() -> tuple[list[dict[str, Any]], int]:
            choices, completion_tokens = [], 0
            for i in range(n):
                text, reason = "", "length"
                for item in run_choice(i, threading.Event()):
                    if isinstance(item, tuple):
                        _, reason, tokens = item
                        completion_tokens += tokens
                    else:
                        text += item
                choices.append(_choice(i, text, reason, chat))
            return choices, completion_tokens

        choices, completion_tokens = await run_in_threadpool(collect)
        return {
            "id": call,
            "object": "chat.completion" if chat else "text_completion",
            "created": created,
            "model": served.id,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        return await complete(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        return await complete(request, chat=True)

    if pdf is not None:
        _add_pdf_routes(app, pdf, _body)
    return app


@dataclass
class PdfChat:
    """The document the web page answers about (replaceable by an upload) and the LLM endpoint, if any."""

    index: Any
    base_url: str | None = None
    model: str | None = None
    uploads: Path | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def _add_pdf_routes(app: Any, chat: PdfChat, read_body: Any) -> None:
    page = (Path(__file__).parent / "web" / "chat_pdf.html").read_text()

    @app.get("/", response_class=HTMLResponse)
    async def home() -> str:
        return page

    @app.get("/chat-pdf/document")
    async def document() -> dict[str, Any]:
        return {"name": chat.index.pdf.name, "pages": max(p.page for p in chat.index.passages)}

    @app.post("/chat-pdf/ask")
    async def ask(request: Request) -> dict[str, Any]:
        body = await read_body(request)
        question = body.get("question")
        if not isinstance(question, str) or not question.strip():
            raise APIError(400, "question must be a non-empty string", "question", "invalid_value")

        def run() -> dict[str, Any]:
            with chat.lock:
                try:
                    return chatpdf.answer(chat.index, question, 3, chat.base_url, chat.model)
                except UserError as e:
                    raise APIError(400, str(e)) from None

        return await run_in_threadpool(run)

    @app.post("/chat-pdf/upload")
    async def upload(request: Request) -> dict[str, Any]:
        data = await request.body()
        if not data.startswith(b"%PDF"):
            raise APIError(400, "the upload is not a PDF file", "file", "invalid_file")
        name = Path(request.headers.get("x-filename", "upload.pdf")).name or "upload.pdf"
        folder = chat.uploads or Path(tempfile.mkdtemp(prefix="tinyformers-pdf-"))
        chat.uploads = folder
        path = folder / f"{hashlib.sha256(data).hexdigest()[:16]}-{name}"
        path.write_bytes(data)

        def index() -> dict[str, Any]:
            with chat.lock:
                try:
                    chat.index = chatpdf.PdfIndex(path, chat.index.embedder)
                except UserError as e:
                    raise APIError(400, str(e)) from None
                return {"name": name, "pages": max(p.page for p in chat.index.passages)}

        return await run_in_threadpool(index)


def _find(by_id: dict[str, ServedModel], model_id: Any) -> ServedModel:
    if model_id not in by_id:
        known = ", ".join(sorted(by_id))
        raise APIError(404, f"the model {model_id!r} does not exist; served here: {known}", "model", "model_not_found")
    return by_id[model_id]


def _model_card(m: ServedModel) -> dict[str, Any]:
    return {"id": m.id, "object": "model", "created": m.created, "owned_by": f"tinyformers ({m.task.name})"}


def _count_tokens(served: ServedModel, text: str) -> int:
    try:
        return len(tokenizer_from_dict(served.meta["tokenizer"]).encode(text))
    except UserError as e:
        raise APIError(400, str(e), "prompt", "invalid_value") from None
    except (KeyError, ValueError):
        return 0


def _choice(i: int, text: str, reason: str, chat: bool) -> dict[str, Any]:
    if chat:
        return {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": reason}
    return {"index": i, "text": text, "logprobs": None, "finish_reason": reason}


def _sse(served, call, created, chat, n, run_choice, prompt_tokens, body) -> Iterator[str]:  # noqa: ANN001
    """Server-sent events: one chunk per piece of text, a last chunk per choice with its finish_reason,
    optional usage (``stream_options.include_usage``), then ``[DONE]``."""
    kind = "chat.completion.chunk" if chat else "text_completion"

    def chunk(i: int, text: str | None, reason: str | None, first: bool = False) -> str:
        if chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
            if text is not None:
                delta["content"] = text
            choice = {"index": i, "delta": delta, "finish_reason": reason}
        else:
            choice = {"index": i, "text": text or "", "logprobs": None, "finish_reason": reason}
        payload = {"id": call, "object": kind, "created": created, "model": served.id, "choices": [choice]}
        return f"data: {json.dumps(payload)}\n\n"

    completion_tokens = 0
    for i in range(n):
        cancelled = threading.Event()
        try:
            if chat:
                yield chunk(i, None, None, first=True)
            for item in run_choice(i, cancelled):
                if isinstance(item, tuple):
                    _, reason, tokens = item
                    completion_tokens += tokens
                    yield chunk(i, None if chat else "", reason)
                else:
                    yield chunk(i, item, None)
        except APIError as e:
            yield f"data: {json.dumps(e.body())}\n\n"
            return
        finally:
            cancelled.set()  # the client went away (generator closed): stop decoding
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        payload = {"id": call, "object": kind, "created": created, "model": served.id, "choices": [], "usage": usage}
        yield f"data: {json.dumps(payload)}\n\n"
    yield "data: [DONE]\n\n"


def serve(
    run_dirs: list[Path],
    host: str = "127.0.0.1",
    port: int = 8000,
    names: list[str] | None = None,
    pdf: Path | None = None,
    base_url: str | None = None,
    llm_model: str | None = None,
) -> None:
    """Load the runs (and the PDF) and serve them until Ctrl-C."""
    import uvicorn  # lazy: optional (the serve extra), needed only to listen

    models = [load_model(d, names[i] if names else None) for i, d in enumerate(run_dirs)]
    ids = [m.id for m in models]
    if len(set(ids)) != len(ids):
        raise UserError(f"two runs have the same model id ({', '.join(ids)}); name them with --name")
    chat = None
    if pdf is not None:
        chat = PdfChat(chatpdf.PdfIndex(pdf), base_url, llm_model)
    if ids:
        print(f"serving {', '.join(ids)} at http://{host}:{port}/v1 (OpenAI-compatible)")
    if pdf is not None:
        print(f"chat with {pdf.name} at http://{host}:{port}/")
    print("Ctrl-C stops")
    uvicorn.run(create_app(models, chat), host=host, port=port, log_level="warning")
