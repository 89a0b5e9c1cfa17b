"""Two processes (gloo) with sharded updates give the single-process result."""

import json
import os
import socket

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from src.metrics import CULaneMetric, TuSimpleMetric
from src.testing.lane_sets import culane_images, tusimple_images

WORLD = 2
THRESHOLDS = (0.5, 0.75, 0.9)
CATEGORIES = ("normal", "night", "cross")


def _data():
    culane = culane_images(23, seed=5)
    cats = [CATEGORIES[i % 3] if i % 4 else None for i in range(len(culane))]
    return culane, cats, tusimple_images(31, seed=5)


def _results(rank: int, world: int) -> dict:
    """Metric results over this rank's shard (images i with i % world == rank)."""
    culane, cats, tus = _data()
    cul = CULaneMetric(THRESHOLDS, categories=CATEGORIES)
    mine = list(range(rank, len(culane), world))
    for start in range(0, len(mine), 5):  # uneven batches: batching does not matter either
        chunk = mine[start : start + 5]
        cul.update(
            [culane[i][0] for i in chunk], [culane[i][1] for i in chunk], [cats[i] for i in chunk]
        )
    tus_metric = TuSimpleMetric()
    mine = list(range(rank, len(tus.gt_xs), world))
    tus_metric.update(
        [tus.pred_xs[i] for i in mine],
        [tus.gt_xs[i] for i in mine],
        [tus.h_samples[i] for i in mine],
        [tus.run_times[i] for i in mine],
    )
    return {"culane": cul.compute(), "tusimple": tus_metric.compute()}


def _worker(rank: int, port: int, out_path: str) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # the gloo transport on the loopback interface only
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        result = _results(rank, WORLD)
        if rank == 0:
            with open(out_path, "w") as f:
                json.dump(result, f)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two spawned processes importing torch: ~20 s on 2 cores
def test_sharded_updates_equal_single_process(tmp_path):
    out_path = tmp_path / "rank0.json"
    mp.spawn(_worker, args=(_free_port(), str(out_path)), nprocs=WORLD, join=True)
    sharded = json.loads(out_path.read_text())
    single = json.loads(json.dumps(_results(0, 1)))
    assert sharded["culane"] == single["culane"]  # integer counts: exactly equal
    # Float sums added in a different order: equal up to rounding.
    for key, value in single["tusimple"].items():
        assert sharded["tusimple"][key] == pytest.approx(value, rel=1e-12, abs=1e-12)
    assert single["culane"]["categories"]["normal"]["0.5"]["TP"] > 0
