"""EpochSampler: (epoch, index) keys, per-epoch permutations, rank shards, seeking for resume."""

from __future__ import annotations

import pytest

from src.data import EpochSampler


def indices(sampler: EpochSampler) -> list[int]:
    keys = list(sampler)
    assert all(epoch == sampler.epoch for epoch, _ in keys)
    return [index for _, index in keys]


def test_training_order_is_a_seeded_permutation_per_epoch() -> None:
    a, b = EpochSampler(10, shuffle=True, seed=3), EpochSampler(10, shuffle=True, seed=3)
    assert sorted(indices(a)) == list(range(10))
    assert indices(a) == indices(b)
    first = indices(a)
    a.seek(1)
    assert indices(a) != first and sorted(indices(a)) == list(range(10))
    assert indices(EpochSampler(10, shuffle=True, seed=4)) != first


def test_training_shards_are_padded_and_disjoint_up_to_the_padding() -> None:
    shards = [EpochSampler(10, shuffle=True, seed=0, num_replicas=3, rank=r) for r in range(3)]
    parts = [indices(s) for s in shards]
    assert [len(p) for p in parts] == [4, 4, 4] and all(s.epoch_size == 4 for s in shards)
    assert sorted(set().union(*parts)) == list(range(10))  # 12 draws cover all 10 samples


def test_evaluation_shards_split_without_padding() -> None:
    shards = [EpochSampler(10, shuffle=False, num_replicas=3, rank=r) for r in range(3)]
    parts = [indices(s) for s in shards]
    assert sorted(sum(parts, [])) == list(range(10))
    assert [len(p) for p in parts] == [4, 3, 3]


def test_seek_skips_what_was_consumed() -> None:
    sampler = EpochSampler(10, shuffle=True, seed=0)
    sampler.seek(2)
    full = indices(sampler)
    sampler.seek(2, skip=6)
    assert indices(sampler) == full[6:] and len(sampler) == 4 and sampler.epoch_size == 10


def test_no_set_epoch_for_fabric_to_call() -> None:
    # Fabric's loader calls sampler.set_epoch(<its iter() count>) when it exists, which would
    # reset a resumed position.
    assert not hasattr(EpochSampler(4, shuffle=True), "set_epoch")


def test_rank_is_checked() -> None:
    with pytest.raises(ValueError, match="rank 2"):
        EpochSampler(4, shuffle=True, num_replicas=2, rank=2)
