"""The sanity tasks: held-out sequences never trained on, the prompt masked out of the decoder-only loss,
and — the Annotated Transformer's check — both architectures really learn to copy on a tiny budget."""

from __future__ import annotations

import pytest
import torch

from tinyformers.engine.task import apply_overrides
from tinyformers.engine.trainer import train
from tinyformers.tasks import get_task
from tinyformers.tasks._digits import digit_rows, sequence_keys
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
    """Row by row, the first ``lengths[i]`` digits count: reversed or sorted within them, never with the padding."""
    digits, lengths = torch.tensor([[1, 2, 3], [3, 1, 0], [5, 0, 0]]), torch.tensor([3, 2, 1])
    answers = {name: get_task(name).transform(digits, lengths).tolist() for name in ("copy", "reverse", "sort")}
    cut = {name: [row[:k] for row, k in zip(rows, [3, 2, 1], strict=True)] for name, rows in answers.items()}
    assert cut["copy"] == [[1, 2, 3], [3, 1], [5]]
    assert cut["reverse"] == [[3, 2, 1], [1, 3], [5]]
    assert cut["sort"] == [[1, 2, 3], [1, 3], [5]]


def test_sequence_keys_tell_sequences_apart_beyond_one_word():
    """The held-out check compares keys: a trailing 0 digit, a shorter sequence and sequences longer than one
    int64 word (18 digits) must all give different keys."""
    seqs = [(1, 0), (1,), (1, 0, 0), (0, 1), tuple([9] * 30), tuple([9] * 29), (*[9] * 29, 8)]
    keys = [tuple(k) for k in sequence_keys(*digit_rows(seqs)).tolist()]
    assert len(set(keys)) == len(seqs)


def test_held_out_sequences_never_in_training_batches_with_two_word_keys():
    """max_digits over 18: the held-out keys are made at batch()'s width (two words) even when every held-out
    sequence fits in one word (data_seed=11: lengths 1, 1, 4, ..., 16)."""
    task = get_task("copy")
    cfg = apply_overrides(task.Config(), ["min_digits=1", "max_digits=19", "n_val=5", "n_test=5", "data_seed=11"])
    data = task.data(cfg)
    held = data.splits["val"] + data.splits["test"]
    short = [s for s in held if len(s) == 1]
    assert max(map(len, held)) <= 18 and len(short) == 2  # 2 of the 10 one-digit sequences are held out
    off = len(SPECIALS)
    for step in range(30):
        batch = task.batch(data, cfg, torch.Generator().manual_seed(step))
        seen = {tuple(t - off for t in row if t >= off) for row in batch["src_ids"].tolist()}
        assert not seen & set(short)


def test_decoder_batch_masks_the_prompt_and_padding():
    task = get_task("reverse")
    cfg = apply_overrides(task.Config(), ["arch=decoder"])
    batch = task.encode(cfg, torch.tensor([[1, 2, 3], [5, 0, 0]]), torch.tensor([3, 1]))
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


@pytest.mark.parametrize("arch", ["seq2seq", "decoder"])
def test_training_continues_after_an_inference_mode_evaluation(arch, tmp_path):
    """The sanity tasks evaluate under torch.inference_mode: nothing evaluate() makes may reach a later backward."""
    task = get_task("reverse")
    assert task.eval_inference_mode
    cfg = apply_overrides(task.Config(), [*TINY, f"arch={arch}", "max_steps=4", "eval_every=2", "compile=off"])
    metrics = train(task, cfg, tmp_path / arch, progress=False)
    assert metrics["steps"] == 4
