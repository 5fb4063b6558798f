"""The sanity tasks: held-out sequences never trained on, the prompt masked out of the decoder-only loss,
and — the Annotated Transformer's check — both architectures really learn to copy on a tiny budget."""

from __future__ import annotations

import pytest
import torch

from tinyformers.engine.task import apply_overrides
from tinyformers.engine.trainer import train
from tinyformers.tasks import get_task
from tinyformers.tasks.sanity import EOS, SEP, SPECIALS

TINY = ["max_digits=4", "n_val=64", "n_test=64", "batch_size=32", "d_model=32", "n_heads=2", "d_ff=64"]


@pytest.mark.parametrize("name", ["copy", "reverse", "sort"])
def test_held_out_sequences_never_in_training_batches(name):
    task = get_task(name)
    cfg = apply_overrides(task.Config(), ["min_digits=1", "max_digits=2", "n_val=20", "n_test=20"])
    data = task.data(cfg)
    held = {tuple(s) for s in data.splits["val"] + data.splits["test"]}
    assert len(held) == 40  # distinct
    off = len(SPECIALS)
    for step in range(50):
        batch = task.batch(data, cfg, torch.Generator().manual_seed(step))
        for row in batch["src_ids"].tolist():
            assert tuple(t - off for t in row if t >= off) not in held


def test_transforms():
    assert get_task("reverse").transform([1, 2, 3]) == [3, 2, 1]
    assert get_task("sort").transform([3, 1, 2]) == [1, 2, 3]
    assert get_task("copy").transform([3, 1, 2]) == [3, 1, 2]


def test_decoder_batch_masks_the_prompt_and_padding():
    task = get_task("reverse")
    cfg = apply_overrides(task.Config(), ["arch=decoder"])
    batch = task.encode_pairs(cfg, [([1, 2, 3], [3, 2, 1]), ([5], [5])])
    off = len(SPECIALS)
    ids, targets = batch["input_ids"], batch["labels"]
    # row 0: <bos> 1 2 3 <sep> 3 2 1 <eos>: only the answer and <eos> are predicted
    assert targets[0].tolist() == [-100, -100, -100, -100, off + 3, off + 2, off + 1, EOS]
    assert ids[0, 4].item() == SEP
    assert targets[1].tolist() == [-100, -100, off + 5, EOS, -100, -100, -100, -100]  # padding ignored


@pytest.mark.parametrize("arch", ["seq2seq", "decoder"])
def test_learns_to_copy(arch, tmp_path):
    task = get_task("copy")
    cfg = apply_overrides(
        task.Config(),
        [*TINY, f"arch={arch}", "max_steps=400", "eval_every=400", "lr=3e-3", "warmup_steps=20"],
    )
    metrics = train(task, cfg, tmp_path / arch, progress=False)
    assert metrics["test_exact_match"] >= 0.9, metrics
