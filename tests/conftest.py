"""Shared test setup: one thread (tiny tensors run faster without thread hand-offs) and a fixed seed."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
