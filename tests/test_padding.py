"""Rows padded once (data/padding.py): a batch taken from them is the tensor padding the batch's own lists gives."""

from __future__ import annotations

import numpy as np
import torch

from tinyformers.data.padding import PaddedRows, pad_rows


def test_take_equals_padding_the_rows_taken():
    rows = [[5, 6, 7, 8], [1], [2, 3], [9, 9, 9]]
    padded = PaddedRows.of(rows, -100)
    idx = torch.tensor([2, 1, 2])
    taken = padded.take(idx)
    assert torch.equal(taken.ids, pad_rows([rows[i] for i in idx.tolist()], -100))  # width 2, not 4
    assert taken.ids.dtype == torch.long and taken.lengths.tolist() == [2, 1, 2]
    assert taken.mask().tolist() == [[1, 1], [1, 0], [1, 1]]


def test_clips_keep_their_dtype_and_zero_padding():
    clips = [np.array([0.5, -0.5, 0.25], dtype=np.float32), np.array([1.0], dtype=np.float32)]
    taken = PaddedRows.of_arrays(clips).take(torch.tensor([1, 0]))
    assert taken.ids.dtype == torch.float32
    assert taken.ids.tolist() == [[1.0, 0.0, 0.0], [0.5, -0.5, 0.25]]


def test_no_rows():
    assert PaddedRows.of([], 0).ids.shape == (0, 0)
