"""Shared benchmark fixtures."""

from __future__ import annotations

import pytest
import torch

THREADS = 1
"""One torch thread: on a shared 2-core machine two threads swing by 40x, and CI runners differ in cores."""


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield THREADS
    torch.set_num_threads(before)
