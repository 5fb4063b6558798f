"""``tinyformers embed``: sentence embeddings of a text file (one text per line) or of a CSV column.

The model is all-MiniLM-L6-v2 loaded into our :class:`~tinyformers.core.models.Encoder`
(:func:`~tinyformers.core.interop.load_minilm`), pooled as Sentence-Transformers does: the mean of the real
tokens' last hidden states, L2-normalised (:func:`~tinyformers.core.models.sentence_embedding`), so the dot
product of two rows is their cosine similarity. ``tests/test_embed.py`` checks the written vectors against
HF ``BertModel`` with the same pooling to 1e-5.

What is written, chosen by the suffix of ``--out``:

* ``OUT.npy``: a float32 array ``(N, 384)``, and ``OUT.npy.ids.txt`` beside it, one id per line, row ``i`` of
  the array is line ``i`` of the ids (``numpy.load`` reads the array; ids are not numbers in general).
* ``OUT.safetensors``: the tensor ``embeddings`` ``(N, 384)``; the ids, in row order, are a JSON list in the
  file's metadata under ``ids`` (with ``model``, ``source`` and ``column``), so one file holds everything.

The id of a text is its 1-based line number in the input file (for a CSV, the line its row starts on), or
the value of ``--id-column``. Blank texts are skipped (their line numbers are simply absent from the ids).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tinyformers.core.interop import load_minilm
from tinyformers.core.models import sentence_embedding
from tinyformers.errors import UserError

SUFFIXES = (".npy", ".safetensors")
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def _read_text(path: Path) -> str:
    """The file's text: UTF-8, else Latin-1 (which decodes any byte); a missing, empty or binary file is a
    :class:`UserError` naming it."""
    if not path.exists():
        raise UserError(f"{path}: not found")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a text or CSV file")
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise UserError(f"{path}: looks binary (NUL bytes), expected a text or CSV file")
    if not raw.strip():
        raise UserError(f"{path}: is empty")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_lines(path: str | Path) -> tuple[list[str], list[str]]:
    """``(texts, ids)`` of a text file, one text per line; ids are 1-based line numbers; blank lines skipped."""
    path = Path(path)
    texts, ids = [], []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if line.strip():
            texts.append(line.strip())
            ids.append(str(number))
    return texts, ids


def read_csv_column(path: str | Path, column: str, id_column: str | None = None) -> tuple[list[str], list[str]]:
    """``(texts, ids)`` of the CSV column ``column`` (the file has a header line); ids are the values of
    ``id_column``, else the line each row starts on. Rows with a blank text are skipped."""
    path = Path(path)
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))  # quoted fields may hold line breaks
    header = [h.strip() for h in next(reader)]
    for col, flag in ((column, "--column"), (id_column, "--id-column")):
        if col is not None and col not in header:
            raise UserError(f"{path}: no column {col!r} (for {flag}); columns: {', '.join(header)}")
    ti = header.index(column)
    ii = None if id_column is None else header.index(id_column)
    texts: list[str] = []
    ids: list[str] = []
    first_line: dict[str, int] = {}  # id -> the line it first appeared on
    start = reader.line_num + 1
    for fields in reader:
        row_start, start = start, reader.line_num + 1
        if not any(f.strip() for f in fields):
            continue  # blank line
        if len(fields) != len(header):
            raise UserError(f"{path}: line {row_start}: {len(fields)} fields, the header has {len(header)}")
        text = fields[ti].strip()
        if not text:
            continue
        key = str(row_start) if ii is None else fields[ii].strip()
        if key in first_line:
            raise UserError(
                f"{path}: line {row_start}: id {key!r} (column {id_column!r}) repeats line {first_line[key]}"
            )
        first_line[key] = row_start
        texts.append(text)
        ids.append(key)
    return texts, ids


@torch.no_grad()
def embed_texts(encoder: Any, tokenizer: Any, texts: list[str], batch_size: int = 32, progress: bool = False) -> Tensor:
    """Sentence embeddings ``(N, d)`` of ``texts`` in their order, ``batch_size`` texts per forward pass.

    Batches are formed from texts of similar length (sorted by length, then put back in order): padding
    does not change an embedding (``tests/test_pretrained_minilm.py``), it only costs compute.
    """
    from tqdm.auto import tqdm

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.zeros(len(texts), encoder.config.d_model)
    starts = range(0, len(texts), batch_size)
    for start in tqdm(starts, desc="embedding", unit="batch", disable=not progress):
        rows = order[start : start + batch_size]
        enc = tokenizer.encode_batch([texts[i] for i in rows])
        ids = torch.tensor([e.ids for e in enc])  # (b, T), padded to the batch's longest
        mask = torch.tensor([e.attention_mask for e in enc])
        out[rows] = sentence_embedding(encoder, ids, mask)  # (b, d)
    return out


def output_paths(out: Path) -> list[Path]:
    """The files ``out`` stands for: ``OUT.npy`` and ``OUT.npy.ids.txt``, or the one ``OUT.safetensors``."""
    if out.suffix not in SUFFIXES:
        raise UserError(f"{out}: --out must end in .npy or .safetensors")
    return [out, out.with_name(out.name + ".ids.txt")] if out.suffix == ".npy" else [out]


def write_embeddings(out: Path, vectors: np.ndarray, ids: list[str], metadata: dict[str, str]) -> list[Path]:
    """Write ``vectors`` ``(N, d)`` and their ``ids`` as described in the module docstring; returns the files."""
    paths = output_paths(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, vectors.astype(np.float32))
        paths[1].write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    else:
        from safetensors.numpy import save_file

        save_file({"embeddings": vectors.astype(np.float32)}, str(out), metadata={**metadata, "ids": json.dumps(ids)})
    return paths


def read_embeddings(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """``(vectors (N, d), ids)`` from a file :func:`write_embeddings` wrote."""
    path = Path(path)
    if path.suffix == ".npy":
        return np.load(path), path.with_name(path.name + ".ids.txt").read_text(encoding="utf-8").splitlines()
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        return f.get_tensor("embeddings"), json.loads(f.metadata()["ids"])


def embed_file(
    source: str | Path,
    out: str | Path,
    column: str | None = None,
    id_column: str | None = None,
    batch_size: int = 32,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[list[Path], int]:
    """Embed the texts of ``source`` into ``out``; returns the files written and the number of texts.

    Every check on the input and the output runs before the model loads, so a bad input fails at once.
    """
    source, out = Path(source), Path(out)
    if batch_size < 1:
        raise UserError("--batch-size must be >= 1")
    if id_column is not None and column is None:
        raise UserError("--id-column needs --column (ids of a plain text file are its line numbers)")
    for path in output_paths(out):
        if path.exists() and not overwrite:
            raise UserError(f"{path}: already exists; use --overwrite to replace it")
    if column is None:
        if source.suffix.lower() == ".csv" and source.is_file():
            raise UserError(f"{source}: a CSV file; choose the column to embed with --column NAME")
        texts, ids = read_lines(source)
    else:
        texts, ids = read_csv_column(source, column, id_column)
    if not texts:
        raise UserError(f"{source}: no text to embed (every {'row' if column else 'line'} is blank)")
    if out.suffix == ".npy" and any("\n" in i or "\r" in i for i in ids):
        raise UserError(f"{source}: an id holds a line break; write .safetensors (ids in its metadata) instead")

    encoder, tokenizer = load_minilm()
    vectors = embed_texts(encoder, tokenizer, texts, batch_size, progress).numpy()
    metadata = {"model": MODEL_NAME, "source": source.name, "column": column or ""}
    return write_embeddings(out, vectors, ids, metadata), len(texts)
