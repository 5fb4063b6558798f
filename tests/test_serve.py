"""``tinyformers serve``: a real server on 127.0.0.1 and the official ``openai`` client talking to it."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from tinyformers.apps.cli import main  # noqa: E402
from tinyformers.apps.serve import create_app, load_model  # noqa: E402

TEXT = (
    "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\n"
    "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?\nDeny thy father and refuse thy name.\n\n"
) * 40
TINY = ["d_model=32", "n_heads=2", "n_layers=1", "block_size=32", "batch_size=8", "eval_windows=20"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny Shakespeare run served on a free port in a background thread; yields (base_url, model)."""
    root = tmp_path_factory.mktemp("serve")
    corpus = root / "play.txt"
    corpus.write_text(TEXT)
    run = root / "bard"
    argv = ["train", "shakespeare", "--out", str(run), "--max-steps", "40", "--no-progress", "--set", *TINY]
    assert main([*argv, f"corpus={corpus}", "eval_every=20", "max_time=0"]) == 0
    model = load_model(run)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app([model]), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}/v1", model
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def client(served):
    return openai.OpenAI(base_url=served[0], api_key="unused", max_retries=0, timeout=60)


def reference(model, prompt: str, **options) -> str:
    """What our own generator gives for the same request, called directly."""
    return model.task.generate(model.model, model.cfg, model.meta, prompt, **options)[0]


def test_models(client):
    ids = [m.id for m in client.models.list()]
    assert ids == ["bard"]
    assert client.models.retrieve("bard").owned_by.startswith("tinyformers")


def test_completion_greedy_equals_our_generator(client, served):
    r = client.completions.create(model="bard", prompt="ROMEO:\n", max_tokens=25, temperature=0)
    assert r.object == "text_completion" and len(r.choices) == 1
    assert r.choices[0].text == reference(served[1], "ROMEO:\n", max_new_tokens=25)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == 7 and r.usage.completion_tokens == 25 and r.usage.total_tokens == 32


def test_seeded_sampling_is_reproducible_and_streams_the_same_text(client, served):
    kw = {"model": "bard", "prompt": "JULIET:\n", "max_tokens": 30, "temperature": 0.9, "top_p": 0.95, "seed": 7}
    a = client.completions.create(**kw).choices[0].text
    assert a == client.completions.create(**kw).choices[0].text
    opts = {"max_new_tokens": 30, "do_sample": True, "temperature": 0.9, "top_p": 0.95, "seed": 7}
    assert a == reference(served[1], "JULIET:\n", **opts)
    chunks = list(client.completions.create(**kw, stream=True))
    assert len(chunks) > 2
    assert "".join(c.choices[0].text for c in chunks) == a
    assert chunks[-1].choices[0].finish_reason == "length"


def test_n_choices_use_consecutive_seeds(client, served):
    r = client.completions.create(model="bard", prompt="O", max_tokens=12, temperature=1.0, n=3, seed=100)
    texts = [c.text for c in sorted(r.choices, key=lambda c: c.index)]
    opts = {"max_new_tokens": 12, "do_sample": True, "temperature": 1.0}
    assert texts == [reference(served[1], "O", **opts, seed=100 + i) for i in range(3)]


def test_hf_decoding_fields_are_accepted(client, served):
    """Beyond OpenAI's fields, GenerationConfig's request fields under their HF names; without top_k the
    whole distribution is sampled (OpenAI's meaning), not generate's default top-50."""
    kw = {"model": "bard", "prompt": "O", "max_tokens": 15, "temperature": 1.2, "seed": 3}
    extra = {"top_k": 4, "min_p": 0.05, "typical_p": 0.9, "repetition_penalty": 1.3}
    text = client.completions.create(**kw, extra_body=extra).choices[0].text
    opts = {"max_new_tokens": 15, "do_sample": True, "temperature": 1.2, "seed": 3}
    assert text == reference(served[1], "O", **opts, **extra)
    assert client.completions.create(**kw).choices[0].text == reference(served[1], "O", **opts, top_k=None)


@pytest.mark.parametrize(
    ("extra", "match"),
    [({"min_p": 1.5}, "min_p"), ({"top_k": 2.5}, "top_k must be an integer"), ({"typical_p": "x"}, "typical_p")],
)
def test_bad_hf_decoding_fields_are_400s(client, extra, match):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="bard", prompt="O", max_tokens=5, extra_body=extra)
    assert e.value.body["param"] == match.split()[0] and match in e.value.body["message"], e.value.body


def test_stop_strings_cut_the_text(client, served):
    full = reference(served[1], "ROMEO:\n", max_new_tokens=60)
    stop = full[10:12]  # a string the greedy text is known to contain
    r = client.completions.create(model="bard", prompt="ROMEO:\n", max_tokens=60, temperature=0, stop=[stop])
    assert r.choices[0].text == full[: full.index(stop)]
    assert r.choices[0].finish_reason == "stop"
    streamed = client.completions.create(
        model="bard", prompt="ROMEO:\n", max_tokens=60, temperature=0, stop=stop, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == full[: full.index(stop)]


def test_chat_plain_and_streaming(client, served):
    messages = [{"role": "user", "content": "ROMEO:"}]
    r = client.chat.completions.create(model="bard", messages=messages, max_tokens=20, temperature=0)
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == reference(served[1], "ROMEO:\n\n", max_new_tokens=20)
    stream = client.chat.completions.create(
        model="bard",
        messages=messages,
        max_tokens=20,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == r.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == 20


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model": "gpt-4"}, "NotFoundError", "does not exist"),
        ({"max_tokens": -1}, "BadRequestError", "max_tokens"),
        ({"temperature": 3.5}, "BadRequestError", "temperature"),
        ({"prompt": "x" * 200_000}, "APIStatusError", "limit"),
        ({"prompt": "Zebra quartz"}, "BadRequestError", "not in the model's vocabulary"),
        ({"n": 0}, "BadRequestError", "n=0"),
    ],
)
def test_bad_requests_get_openai_errors(client, kwargs, error, match):
    request = {"model": "bard", "prompt": "ROMEO:", "max_tokens": 5, **kwargs}
    with pytest.raises(getattr(openai, error)) as e:
        client.completions.create(**request)
    body = e.value.body
    assert body["type"] == "invalid_request_error" and match in body["message"], body


def test_malformed_json_is_a_400(served):
    r = httpx.post(served[0] + "/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def test_concurrent_requests_do_not_mix(served):
    base = served[0]
    prompts = ["ROMEO:\n", "JULIET:\n", "O Romeo", "Deny thy"]

    def ask(i: int) -> str:
        c = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=120)
        kw = {"model": "bard", "prompt": prompts[i], "max_tokens": 20, "temperature": 1.0, "seed": i}
        if i % 2:
            return "".join(ch.choices[0].text for ch in c.completions.create(**kw, stream=True))
        return c.completions.create(**kw).choices[0].text

    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(ask, range(4)))
    one_by_one = [ask(i) for i in range(4)]
    assert together == one_by_one
    assert len(set(together)) == 4


def test_serve_refuses_runs_that_do_not_generate_text(tmp_path, capsys):
    run = tmp_path / "copy"
    tiny = ["d_model=16", "n_heads=2", "n_layers=1", "d_ff=32", "max_digits=4", "n_val=8", "n_test=8"]
    assert main(["train", "copy", "--out", str(run), "--max-steps", "2", "--no-progress", "--set", *tiny]) == 0
    capsys.readouterr()
    assert main(["serve", str(run)]) == 2
    assert "does not generate text" in capsys.readouterr().err
