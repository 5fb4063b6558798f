"""A local Hugging Face Llama-family folder (``save_pretrained`` + ``tokenizer.json``) used by the CLI:
``generate``, ``serve`` and LoRA fine-tuning via ``train shakespeare --set init=FOLDER``.

The folders hold tiny random ``LlamaForCausalLM`` / ``Qwen2ForCausalLM`` models and a small BPE trained here: a
Llama-style one (SentencePiece-like ``▁`` spaces, ``<s>`` added before a text) and a Qwen2-style byte-level one
(nothing added). Generated text is compared with HF ``generate`` on the same prompt ids, token for token.
"""

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from tinyformers.apps.cli import main
from tinyformers.core.interop import hf_model_type

transformers = pytest.importorskip("transformers")

TEXT = "the cat sat on the mat. the dog sat on the log. a cat and a dog met on a mat by the log.\n" * 20
PROMPT = "the cat sat"
HF_CLASSES = {"llama": ("LlamaConfig", "LlamaForCausalLM"), "qwen2": ("Qwen2Config", "Qwen2ForCausalLM")}


def tiny_tokenizer(family: str) -> Tokenizer:
    tk = Tokenizer(models.BPE(unk_token="<unk>" if family == "llama" else None))
    if family == "llama":  # SentencePiece-style: spaces become ▁, <s> starts every text
        tk.pre_tokenizer = pre_tokenizers.Metaspace()
        tk.decoder = decoders.Metaspace()
        specials = ["<unk>", "<s>", "</s>"]
    else:  # GPT-2 / Qwen2 byte-level
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = decoders.ByteLevel()
        specials = ["<|endoftext|>"]
    trainer = trainers.BpeTrainer(vocab_size=90, special_tokens=specials, show_progress=False)
    tk.train_from_iterator([TEXT], trainer)
    if family == "llama":
        tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tk


def make_folder(path, family: str, seed: int = 0) -> tuple[torch.nn.Module, Tokenizer]:
    tok = tiny_tokenizer(family)
    eos = tok.token_to_id("</s>" if family == "llama" else "<|endoftext|>")
    config_cls, model_cls = (getattr(transformers, n) for n in HF_CLASSES[family])
    config = config_cls(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=tok.token_to_id("<s>"),
        eos_token_id=eos,
        tie_word_embeddings=family == "qwen2",
    )
    torch.manual_seed(seed)
    hf = model_cls(config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.3)  # a random model with confident, varied predictions
    hf.save_pretrained(path)
    tok.save(str(path / "tokenizer.json"))
    return hf, tok


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def folder(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    hf, tok = make_folder(path, request.param, seed=3)  # seed 3: the qwen2 model ends with eos after 5 tokens
    return path, hf, tok


def hf_continuation(hf: torch.nn.Module, tok: Tokenizer, prompt: str, new: int) -> str:
    """HF ``generate`` (greedy) on the tokenizer's encoding of ``prompt``, decoded without special tokens."""
    ids = torch.tensor([tok.encode(prompt).ids])
    out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, do_sample=False)
    return tok.decode(out[0, ids.size(1) :].tolist())


def test_folder_is_detected_by_its_model_type(folder, tmp_path) -> None:
    path, hf, _ = folder
    assert hf_model_type(path) == hf.config.model_type
    assert hf_model_type(tmp_path) is None


def test_generate_cli_equals_hf_generate(folder, capsys) -> None:
    path, hf, tok = folder
    expected = hf_continuation(hf, tok, PROMPT, 10)
    assert expected  # the continuation is not empty text
    capsys.readouterr()
    assert main(["generate", str(path), "--prompt", PROMPT, "--max-new-tokens", "10", "--no-stream"]) == 0
    assert capsys.readouterr().out == PROMPT + expected + "\n"
    assert main(["generate", str(path), "--prompt", PROMPT, "--max-new-tokens", "10"]) == 0  # streamed
    assert capsys.readouterr().out == PROMPT + expected + "\n"


def test_serve_answers_with_the_folder_model(folder) -> None:
    from fastapi.testclient import TestClient

    from tinyformers.apps.serve import create_app, load_model

    path, hf, tok = folder
    served = load_model(path)
    assert served.id == path.name
    client = TestClient(create_app([served]))
    body = {"model": path.name, "prompt": PROMPT, "max_tokens": 8, "temperature": 0}
    reply = client.post("/v1/completions", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["text"] == hf_continuation(hf, tok, PROMPT, 8)


def test_lora_finetune_from_the_folder(folder, tmp_path, capsys) -> None:
    from tinyformers.tasks import load_adapted, load_run

    path, hf, _ = folder
    corpus = tmp_path / "text.txt"
    corpus.write_text(TEXT)
    out = tmp_path / "run"
    settings = [f"init={path}", "finetune=lora", f"corpus={corpus}", "block_size=16", "batch_size=4"]
    settings += ["eval_windows=8", "eval_every=3", "max_time=0", "lora_targets=q,k,v,o", "lr=3e-2"]
    argv = ["train", "shakespeare", "--out", str(out), "--max-steps", "6", "--no-progress", "--set", *settings]
    assert main(argv) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["val_loss"] < log[0]["val_loss"]  # the adapters learned something
    _, _, _, full = load_run(out)
    _, _, _, adapted = load_adapted(out)  # the HF folder + adapters.safetensors alone
    ids = torch.randint(0, hf.config.vocab_size, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(adapted(ids).logits, full(ids).logits, atol=0, rtol=0)
        frozen = full.state_dict()["embed.tokens.weight"]
        assert torch.equal(frozen, hf.state_dict()["model.embed_tokens.weight"])  # the base stayed frozen
    capsys.readouterr()
    assert main(["generate", str(out), "--prompt", PROMPT, "--max-new-tokens", "4", "--no-stream"]) == 0
    assert capsys.readouterr().out.startswith(PROMPT)


def test_generate_cli_reads_a_gpt2_folder_too(tmp_path, capsys) -> None:
    tok = tiny_tokenizer("qwen2")  # byte-level, as GPT-2's
    # a context (32) shorter than shakespeare's default block_size (64)
    sizes = dict(vocab_size=tok.get_vocab_size(), n_positions=32, n_embd=32, n_layer=1, n_head=2)
    config = transformers.GPT2Config(**sizes, bos_token_id=None, eos_token_id=None)
    torch.manual_seed(3)
    hf = transformers.GPT2LMHeadModel(config).eval()
    hf.save_pretrained(tmp_path)
    tok.save(str(tmp_path / "tokenizer.json"))
    expected = hf_continuation(hf, tok, PROMPT, 6)
    capsys.readouterr()
    assert main(["generate", str(tmp_path), "--prompt", PROMPT, "--max-new-tokens", "6", "--no-stream"]) == 0
    assert capsys.readouterr().out == PROMPT + expected + "\n"
