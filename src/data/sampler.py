"""Sampling keys (epoch, index) so that augmentation randomness is a function of the sample.

The dataset seeds each sample's augmentation from (seed, epoch, index). Streams then differ per
worker and per epoch, do not depend on the number of workers, and a run resumed mid-epoch
replays exactly: the sampler skips the samples already consumed instead of the loader
re-reading them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` keys for one rank.

    Training (``shuffle=True``): a permutation seeded by (seed, epoch), padded by wrapping
    around to a multiple of ``num_replicas`` so every rank gets the same number of samples
    (as DistributedSampler does). Evaluation (``shuffle=False``): the dataset in order, split
    into disjoint, unpadded shards, so no sample is counted twice by a summed metric.
    """

    def __init__(
        self,
        size: int,
        shuffle: bool,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside [0, {num_replicas})")
        self.size = size
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.start = 0

    def seek(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch to iterate; skip this rank's first ``skip`` samples (resume).

        Deliberately not named ``set_epoch``: Fabric's data loader calls ``set_epoch(n)`` with
        its own count of ``iter()`` calls, which would reset the position on resume.
        """
        self.epoch = epoch
        self.start = skip

    def _shard(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.rank, self.size, self.num_replicas)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
        padded = -(-self.size // self.num_replicas) * self.num_replicas
        order = np.resize(order, padded)  # wraps around, like DistributedSampler's padding
        return order[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self._shard()[self.start :]:
            yield self.epoch, int(index)

    @property
    def epoch_size(self) -> int:
        """Samples this rank sees in a whole epoch (ignoring ``start``)."""
        if not self.shuffle:
            return len(range(self.rank, self.size, self.num_replicas))
        return -(-self.size // self.num_replicas)

    def __len__(self) -> int:
        return max(self.epoch_size - self.start, 0)
