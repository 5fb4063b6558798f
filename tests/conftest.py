"""Shared test setup: deterministic seeds, and double-check nothing leaks between tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
