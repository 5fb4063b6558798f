"""Data-parallel training with torchrun: 2 CPU processes (gloo) equal 1 process with the same global batch."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
import torch
from safetensors.torch import load_file

from tinyformers.engine.distributed import Dist

TEXT = (
    "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\n"
    "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?\n\n"
) * 60


def test_shards_partition_the_global_batch():
    batch = {"input_ids": torch.arange(10).view(5, 2), "note": "kept"}
    parts = [Dist(rank=r, world=2).shard(batch) for r in range(2)]
    assert parts[0]["input_ids"][:, 0].tolist() == [0, 4, 8] and parts[1]["input_ids"][:, 0].tolist() == [2, 6]
    assert parts[0]["note"] == "kept"
    assert Dist().shard(batch) is batch


@pytest.mark.slow
def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text(TEXT)
    settings = [
        "--no-progress", "--max-steps", "12", "--set", f"corpus={corpus}", "d_model=32", "n_heads=2", "n_layers=1",
        "block_size=16", "batch_size=8", "eval_windows=16", "max_time=0", "warmup_steps=2", "eval_every=4",
        "amp=off",  # fp32: bf16 rounds a half batch's activations differently from the whole batch's
    ]  # fmt: skip
    one = [sys.executable, "-m", "tinyformers", "train", "shakespeare", "--out", str(tmp_path / "one"), *settings]
    subprocess.run(one, check=True, capture_output=True)
    two = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "tinyformers"]
    for attempt in range(2):
        out = tmp_path / f"two{attempt}"
        r = subprocess.run([*two, "train", "shakespeare", "--out", str(out), *settings], capture_output=True, text=True)
        if r.returncode == 0:
            break
        # Seen once in ~15 full-suite runs under load: a rank aborted (SIGABRT) inside torchrun; cause not
        # identified. Retried once so CI stays meaningful; the warning keeps the first failure visible.
        warnings.warn(f"torchrun attempt {attempt + 1} failed:\n{r.stderr[-6000:]}", stacklevel=1)
    assert r.returncode == 0, r.stderr[-6000:]
    (tmp_path / "two").symlink_to(out)
    assert r.stdout.count("saved run to") == 1  # only rank 0 reports
    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    for k in a:  # stated tolerance: float summation order differs between one and two processes
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5)
    m1, m2 = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))
    assert m1["val_loss"] == pytest.approx(m2["val_loss"], abs=1e-5)
    assert m1["train_tokens"] == m2["train_tokens"]
    steps = [json.loads(x)["step"] for x in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    assert steps == [4, 8, 12]  # one writer
