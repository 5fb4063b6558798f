"""Shared test setup: one thread (tiny tensors run faster without thread hand-offs), a fixed seed, no matmul
calibration in reports."""

import os

import pytest
import torch

torch.set_num_threads(1)
# The CLI sets its threads from OMP_NUM_THREADS when given (else the physical cores); tests/test_bad_inputs.py forks
# the CLI from this process, and a forked child that starts a second OpenMP thread can hang. `make test` sets it;
# this makes a bare `pytest` the same.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Reports measure matmul GFLOP/s (~1-2 s); tests skip it (tests/test_calibration.py measures it once, small).
os.environ.setdefault("TINYFORMERS_CALIBRATION", "off")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
