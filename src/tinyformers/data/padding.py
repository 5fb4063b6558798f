"""Token id lists (or audio clips) as one right-padded tensor: padded once per split, so a training batch is a row
index and a trim to its longest row, not a Python loop over its rows at every step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn


def pad_rows(rows: list[list[int]], value: int) -> Tensor:
    """(B, T) long tensor of ``rows`` right-padded with ``value`` to the longest."""
    width = max(map(len, rows), default=0)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long).view(len(rows), width)


@dataclass
class PaddedRows:
    """Rows ``ids`` (N, T), right-padded to the longest, and their ``lengths`` (N,).

    ``take(idx)`` gives the tensor :func:`pad_rows` gives for those rows' lists (same values, same width: the
    longest row taken), by indexing.
    """

    ids: Tensor
    lengths: Tensor

    @classmethod
    def of(cls, rows: list[list[int]], value: int) -> PaddedRows:
        return cls(pad_rows(rows, value), torch.tensor([len(r) for r in rows], dtype=torch.long))

    @classmethod
    def of_arrays(cls, arrays: list[np.ndarray]) -> PaddedRows:
        """1-D arrays (audio clips), zero-padded as ``pad_sequence`` pads them, in their dtype."""
        padded = nn.utils.rnn.pad_sequence([torch.from_numpy(a) for a in arrays], batch_first=True)
        return cls(padded, torch.tensor([len(a) for a in arrays], dtype=torch.long))

    def __len__(self) -> int:
        return len(self.lengths)

    def take(self, idx: Tensor) -> PaddedRows:
        """Rows ``idx`` (B,), trimmed to the longest of them."""
        lengths = self.lengths[idx]
        return PaddedRows(self.ids[idx, : int(lengths.max())], lengths)

    def mask(self) -> Tensor:
        """HF's ``attention_mask`` (B, T): 1 for a real token, 0 for padding."""
        return (torch.arange(self.ids.size(1)) < self.lengths[:, None]).long()
