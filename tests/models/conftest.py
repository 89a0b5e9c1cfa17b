"""Model tests run single-threaded: they are many small tensor ops, for which intra-op threads
buy nothing, and on a busy machine every parallel region waits for a descheduled thread (one
training step of the small model took 0.2 s with 1 thread and 3 s with 2 under load)."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from src.models.common.download import weights_cache_dir
from tests.models.weights_server import WeightsServer


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def serve() -> Iterator[Callable[..., WeightsServer]]:
    servers: list[WeightsServer] = []

    def start(files: dict[str, bytes], truncate: bool = False) -> WeightsServer:
        servers.append(WeightsServer(files, truncate))
        return servers[-1]

    yield start
    for server in servers:
        if server.thread.is_alive():
            server.stop()


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch.hub cache (TORCH_HOME in tmp_path); returns its checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    assert weights_cache_dir() == folder
    return folder
