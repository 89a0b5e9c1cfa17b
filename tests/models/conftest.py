"""Model tests run single-threaded: they are many small tensor ops, for which intra-op threads
buy nothing, and on a busy machine every parallel region waits for a descheduled thread (one
training step of the small model took 0.2 s with 1 thread and 3 s with 2 under load)."""

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
