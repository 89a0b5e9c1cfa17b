"""Ending a DataLoader's worker processes when a run is done with it, not at interpreter exit.

Loaders with persistent workers keep their processes until the loader is garbage collected;
the launcher's are still alive when a run returns (Fabric's wrapper and the training loop's
suspended generators keep them referenced). torch before 2.13 then joins every such worker at
exit, after registering ``atexit`` handlers for persistent workers whenever pin_memory is on
(so on a GPU): each join waits ``MP_STATUS_CHECK_INTERVAL`` (5 s) for a worker nobody told to
stop, then kills it. With 8 training and 8 validation workers that is the 60-95 s a finished
GPU run took to exit (pytorch/pytorch#81794). torch 2.13 shuts the workers down first instead.
Stopping them when the mode ends makes every torch version exit at once.
"""

from __future__ import annotations

from typing import Any


def stop_loader_workers(*loaders: Any) -> None:
    """Shut down the worker processes of ``loaders`` (DataLoaders, or Fabric's wrappers of
    them) now, waiting for each to exit; a later iteration would start new ones. Loaders
    without workers, or whose workers already stopped, are left as they are."""
    for loader in loaders:
        inner = getattr(loader, "_dataloader", loader)  # lightning's _FabricDataLoader
        iterator = getattr(inner, "_iterator", None)  # kept only with persistent workers
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()  # torch's own orderly shutdown: sentinel to each worker, then join
            inner._iterator = None
