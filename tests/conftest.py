"""Shared test setup: one thread (tiny tensors run faster without thread hand-offs), a fixed seed, no matmul
calibration in reports."""

import os

import pytest
import torch

torch.set_num_threads(1)
# Reports measure matmul GFLOP/s (~1-2 s); tests skip it (tests/test_calibration.py measures it once, small).
os.environ.setdefault("TINYFORMERS_CALIBRATION", "off")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
