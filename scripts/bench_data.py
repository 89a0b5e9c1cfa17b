"""Benchmark the training input pipeline: where a sample's CPU time goes, what the DataLoader
delivers end to end, for each place the image augmentation can run and with the decoded cache.

Writes a small CULane-format tree of 1640x590 JPEGs with 4 lanes each (road images from the
synthetic renderer, so the JPEGs have realistic detail and size), listed --repeat times so an
epoch holds enough batches, and builds the CULane training dataset on it (augmentation on,
800x320). Prints, in one run:

1. per-stage CPU ms of one sample in one process and thread (decode, crop + resize, each
   augmentation step when it fires and weighted by how often it fires, lanes + targets, the
   hand-over conversion);
2. per mode, the worker's CPU ms per sample (``dataset[(epoch, index)]`` in one process; the
   modes timed in turn, in --rounds rounds, the least taken) and the main process's CPU ms per
   sample of ``prepare_batch`` (the device augmentation, here on the
   CPU). Modes: today (float32 hand-over, as before issue 21), worker (uint8 hand-over),
   device (image steps in ``prepare_batch``), and both again reading the decoded cache;
3. per mode and --workers, end-to-end samples/s of the launcher's own training loader
   (src/main.py's make_loader: collate, pin_memory, persistent workers) followed by
   ``device_batches`` on the CPU, with the ratio of that rate to workers x (1 / worker CPU per
   sample), the CPU the workers and the main process actually spent per sample, and the
   threads each worker process holds;
4. the hand-over alone (ready images, float32 vs uint8) through one worker;
5. on CUDA (or with --step-batches on the CPU): prepare_batch's samples/s per mode against the
   training step's at batch 8 and 40, as ratios.

The last line: ``worker CPU per sample vs worker mode: device X.XXx, cache Y.YYx`` (cache:
decoded cache + device mode). Goals (issue 21): device <= 0.5x, cache <= 0.2x.

    python scripts/bench_data.py [--samples 200] [--rounds 3] [--workers 1 2] [--batch 8]
        [--batches 24]
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from lightning.fabric import Fabric
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from src.data import EpochSampler, build_dataset, collate_lanes, device_batches, prepare_batch
from src.data import augment as aug
from src.data.config import DatasetConfig
from src.data.dataset import LaneDataset
from src.data.device_draws import device_params
from src.data.pipeline import input_array, read_image
from src.data.synthetic_scene import SceneTextures, render_scene
from src.engine.build import make_loader
from src.models.srlane import PLUGIN as SRLANE

# The reference SRLane (imgaug) pipeline, per sample per core, measured once in November 2026 on
# another machine and session (imgaug is not installed here): a rough scale, not a same-run ratio.
REFERENCE_MS = 26.4
WIDTH, HEIGHT, LANES = 1640, 590, 4
# name: (hand-over, decoded cache)
MODES = {
    "today (float32)": ("float", False),
    "worker": ("worker", False),
    "device": ("device", False),
    "cache + worker": ("worker", True),
    "cache + device": ("device", True),
}


def write_culane_tree(root: Path, images: int, quality: int, repeat: int, seed: int = 0) -> float:
    """CULane tree with ``images`` 4-lane JPEGs, each listed ``repeat`` times; returns the mean
    JPEG size in kB."""
    textures = SceneTextures.create(WIDTH, HEIGHT, seed)
    names, sizes, attempt = [], [], 0
    while len(names) < images:
        scene = render_scene(np.random.default_rng([seed, attempt]), WIDTH, HEIGHT, textures)
        attempt += 1
        if len(scene.lanes) != LANES:
            continue
        name = f"driver_bench/clip.MP4/{len(names):05d}.jpg"
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        ok, data = cv2.imencode(".jpg", scene.image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        path.write_bytes(data.tobytes())
        sizes.append(len(data))
        lines = []
        for xs in scene.lanes:  # CULane: bottom-up x y pairs
            points = [(x, y) for x, y in zip(xs, scene.h_samples, strict=True) if x >= 0]
            lines.append(" ".join(f"{x:.3f} {y:.3f}" for x, y in reversed(points)))
        path.with_suffix(".lines.txt").write_text("\n".join(lines) + "\n")
        names.append(name)
    (root / "list").mkdir(exist_ok=True)
    (root / "list" / "train_gt.txt").write_text(
        "".join(f"/{n} /laneseg/{n[:-3]}png 1 1 1 1\n" for n in names * repeat)
    )
    return float(np.mean(sizes)) / 1e3


def cpu_ms(fn: Callable[[int], object], count: int) -> float:
    """CPU ms per call of fn(i) over i < count (this process)."""
    start = time.process_time()
    for i in range(count):
        fn(i)
    return (time.process_time() - start) / count * 1e3


def stage_table(dataset: LaneDataset, count: int) -> list[tuple[str, float, float]]:
    """(stage, CPU ms when it runs, probability it runs) for one sample's stages."""
    pipe, cfg = dataset.pipeline, dataset.cfg.augment
    paths = [s.img_path for s in dataset.samples]
    images = [read_image(p) for p in paths[: min(len(paths), 24)]]
    views = [pipe.network_view(im) for im in images]
    lanes = [s.load_lanes()[1] for s in dataset.samples[: len(images)]]
    n = len(images)
    draws = [pipe.draw(np.random.default_rng([0, 1, i])) for i in range(count)]
    affine = next(d.affine for d in draws if d.affine is not None)
    warp = aug.affine_matrix(800, 320, *affine)
    from src.data.geometry import opencv_matrix

    def each_space(i: int) -> None:
        space = aug._SPACE_NAMES[i % len(aug._SPACE_NAMES)]
        aug.adjust_brightness(views[i % n], space, 1.1, 5.0, i % 2 == 0)

    blur = cfg.blur_p / 3.0
    third = "jpeg" if cfg.third_op == "jpeg" else "coarse dropout"
    third_fn = (
        (lambda i: aug.jpeg_roundtrip(views[i % n], 12))
        if cfg.third_op == "jpeg"
        else (lambda i: aug.coarse_dropout(views[i % n], 0.03, 0.035, i))
    )

    def targets(i: int) -> None:
        matrix = pipe.matrix(WIDTH, HEIGHT, draws[i])
        pipe.targets(pipe.transform_lanes(lanes[i % n], matrix))

    rows = [
        ("JPEG read + decode", cpu_ms(lambda i: read_image(paths[i % n]), count), 1.0),
        ("crop + cubic resize", cpu_ms(lambda i: pipe.network_view(images[i % n]), count), 1.0),
        ("draw", cpu_ms(lambda i: pipe.draw(np.random.default_rng([0, 2, i])), count), 1.0),
        ("lanes + targets", cpu_ms(targets, count), 1.0),
        ("flip", cpu_ms(lambda i: cv2.flip(views[i % n], 1), count), cfg.hflip_p),
        (
            "channel shuffle",
            cpu_ms(lambda i: np.ascontiguousarray(views[i % n][:, :, [2, 0, 1]]), count),
            cfg.channel_shuffle_p,
        ),
        ("brightness (6 spaces)", cpu_ms(each_space, count), cfg.brightness_p),
        (
            "hue + saturation",
            cpu_ms(lambda i: aug.add_hue_saturation(views[i % n], 7), count),
            cfg.hue_saturation_p,
        ),
        ("motion blur", cpu_ms(lambda i: aug.motion_blur(views[i % n], 5, 30.0, 0.3), count), blur),
        ("median blur", cpu_ms(lambda i: cv2.medianBlur(views[i % n], 5), count), blur),
        (third, cpu_ms(third_fn, count), blur),
        (
            "affine warp",
            cpu_ms(lambda i: cv2.warpAffine(views[i % n], opencv_matrix(warp), (800, 320)), count),
            cfg.affine_p,
        ),
        ("device parameters", cpu_ms(lambda i: device_params(draws[i], 800, 320, cfg), count), 1.0),
        ("float32 conversion (today)", cpu_ms(lambda i: input_array(views[i % n]), count), 1.0),
    ]
    return rows


def make_dataset(root: Path, handover: str, cache: bool) -> LaneDataset:
    cfg = DatasetConfig(
        name="culane",
        root=str(root),
        ori_w=WIDTH,
        ori_h=HEIGHT,
        cut_height=270,
        img_w=800,
        img_h=320,
        max_lanes=4,
        cache_dir=str(root / "cache"),
        decoded_cache=cache,
    )
    # The default model's targets are part of every training sample's worker cost.
    dataset = build_dataset(cfg, "train", True, 0, SRLANE.training_targets)
    dataset.set_handover(handover)
    return dataset


def worker_ms(datasets: dict[str, LaneDataset], count: int, rounds: int) -> dict[str, tuple]:
    """Per mode, worker CPU ms per sample (``dataset[(epoch, index)]`` in this process): the
    same ``count`` keys timed in ``rounds`` rounds that take the modes in turn, so a burst of
    load on a shared machine hits one round of every mode rather than one mode. Returns (min,
    max) over the rounds: the min is the undisturbed cost the ratios use."""
    for dataset in datasets.values():  # warm the page cache, OpenCV and the colour tables
        for i in range(min(len(dataset), 16)):
            dataset[(0, i)]
    times: dict[str, list[float]] = {name: [] for name in datasets}
    for _ in range(rounds):
        for name, dataset in datasets.items():
            n = len(dataset)
            times[name].append(cpu_ms(lambda i, d=dataset, n=n: d[(1 + i // n, i % n)], count))
    return {name: (min(ms), max(ms)) for name, ms in times.items()}


def main_ms(dataset: LaneDataset, batch: int) -> float:
    """Main-process CPU ms per sample of prepare_batch on the CPU (the device steps)."""
    n = len(dataset)
    batches = [
        collate_lanes([dataset[(2, (b * batch + j) % n)] for j in range(batch)]) for b in range(4)
    ]
    prepare_batch(batches[0], "cpu")
    return cpu_ms(lambda i: prepare_batch(batches[i % len(batches)], "cpu"), 8) / batch


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _epochs(loader, sampler: EpochSampler, prepare: bool) -> Iterator[dict]:
    """Batches of epoch after epoch, as the training loop asks for them (``prepare``: through
    device_batches on the CPU)."""
    for epoch in itertools.count():
        sampler.seek(epoch)
        yield from device_batches(loader, "cpu") if prepare else loader


def loader_rate(
    dataset: Dataset, fabric: Fabric, workers: int, batch: int, batches: int, prepare: bool = True
) -> dict:
    """End-to-end rate of the launcher's training loader (+ device_batches on the CPU)."""
    cfg = OmegaConf.create({"dataset": {"num_workers": workers}, "seed": 0})
    sampler = EpochSampler(len(dataset), shuffle=True, seed=0)
    loader = make_loader(fabric, dataset, sampler, batch, cfg, move_to_device=False)
    stream = _epochs(loader, sampler, prepare)
    for _ in range(workers + 1):  # every worker has started and delivered
        next(stream)
    pids = [w.pid for w in getattr(loader._dataloader._iterator, "_workers", [])]
    threads = [len(os.listdir(f"/proc/{pid}/task")) for pid in pids]
    worker_cpu = sum(_proc_cpu_s(pid) for pid in pids)
    wall, main_cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(stream)
    samples = batches * batch
    wall = time.perf_counter() - wall
    out = {
        "rate": samples / wall,
        "main_ms": (time.process_time() - main_cpu) / samples * 1e3,
        "worker_ms": (sum(_proc_cpu_s(pid) for pid in pids) - worker_cpu) / samples * 1e3,
        "threads": threads,
    }
    del stream, loader
    return out


class ReadyImages(Dataset):
    """Items that cost nothing to make: the hand-over alone (a copy of a ready 800x320 image,
    float32 (3, H, W) as before issue 21 or uint8 (H, W, 3))."""

    def __init__(self, dtype: torch.dtype, count: int) -> None:
        shape = (3, 320, 800) if dtype == torch.float32 else (320, 800, 3)
        self.image = torch.zeros(shape, dtype=dtype)
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, key: tuple[int, int]) -> dict:
        return {"img": self.image.clone(), "meta": {"index": key[1]}}


def handover_cost(fabric: Fabric, batch: int, batches: int) -> None:
    """Worker and main-process CPU per sample of handing over ready images, one worker."""
    print(f"\n4. hand-over alone (ready 800x320 images, 1 worker, batch {batch}): CPU ms/sample")
    for name, dtype in (("float32 (3.1 MB)", torch.float32), ("uint8 (0.77 MB)", torch.uint8)):
        dataset = ReadyImages(dtype, batch * (batches + 4))
        r = loader_rate(dataset, fabric, 1, batch, batches, prepare=False)
        print(
            f"   {name:18s} worker {r['worker_ms']:6.2f}   main {r['main_ms']:6.2f} "
            f"({r['rate']:.0f} samples/s)"
        )


def _pinned(value: object) -> object:
    if isinstance(value, torch.Tensor):
        return value.pin_memory()
    if isinstance(value, dict):
        return {k: _pinned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_pinned(v) for v in value]
    return value


def device_rates(datasets: dict, device: torch.device, batches: list[int], loader: float) -> None:
    """5. On ``device``, per batch size: samples/s of prepare_batch (copy, augmentation, float
    conversion) per mode and of a training step (scripts/bench_model.py's), as ratios; and the
    best loader rate of section 3 against the step."""
    import bench_model  # scripts/ is on sys.path when this runs as a script

    precision = "16-mixed" if device.type == "cuda" else "32-true"
    args = argparse.Namespace(
        backbone="resnet18",
        img_w=800,
        img_h=320,
        train_precision=precision,
        train_batch_sizes=batches,
        train_warmup=3,
        train_repeats=10,
    )
    report = bench_model.Report(None, {})
    print(f"\n5. on {device}: training step ({precision}) vs prepare_batch, 800x320")
    bench_model.bench_train_steps(args, device, report)
    for row in report.train:
        size, step = row["batch"], row["samples_per_s"]
        for name in ("worker", "device", "cache + device"):
            items = [datasets[name][(3, i % len(datasets[name]))] for i in range(size)]
            batch = collate_lanes(items)
            if device.type == "cuda":  # as the loader's pin_memory hands it over
                batch = {k: _pinned(v) for k, v in batch.items()}
            ms = bench_model.median_ms(lambda b=batch: prepare_batch(b, device), device, 3, 10)
            rate = size * 1e3 / ms
            print(
                f"   batch {size:3d} {name:15s} prepare_batch {rate:8.0f} samples/s = "
                f"{rate / step:6.2f}x the step ({step:.0f} samples/s); adds {ms:.1f} ms per step"
            )
        print(f"   batch {size:3d} best loader of section 3: {loader / step:.2f}x the step")


def print_stages(rows: list[tuple[str, float, float]]) -> None:
    print("\n1. per-stage CPU ms of one sample (one process, one thread)")
    print(f"   {'stage':28s} {'ms when run':>11s} {'runs':>6s} {'ms/sample':>9s}")
    for name, ms, p in rows:
        print(f"   {name:28s} {ms:11.2f} {p:6.2f} {ms * p:9.2f}")
    worker_side = {"JPEG read + decode", "crop + cubic resize", "draw", "lanes + targets"}
    base = sum(ms * p for name, ms, p in rows if name in worker_side)
    steps = sum(ms * p for name, ms, p in rows if name not in worker_side and "(today)" not in name)
    steps -= next(ms for name, ms, _ in rows if name == "device parameters")
    print(
        f"   decode + resize + draw + targets {base:.2f} ms, image steps {steps:.2f} ms (expected)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="samples timed per mode")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of section 2")
    parser.add_argument("--images", type=int, default=24, help="distinct JPEGs written")
    parser.add_argument("--repeat", type=int, default=10, help="times each JPEG is listed")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of the images")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=24, help="batches timed per loader")
    parser.add_argument(
        "--step-batches",
        type=int,
        nargs="*",
        default=[8, 40] if torch.cuda.is_available() else [],
        help="section 5 at these batch sizes (default: 8 40 on CUDA, skipped on the CPU)",
    )
    args = parser.parse_args()

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    fabric = Fabric(accelerator="cpu", devices=1)
    with tempfile.TemporaryDirectory(prefix="bench-culane-") as tmp:
        root = Path(tmp)
        kb = write_culane_tree(root, args.images, args.quality, args.repeat)
        print(
            f"{args.images} distinct {WIDTH}x{HEIGHT} JPEGs with {LANES} lanes (quality "
            f"{args.quality}, mean {kb:.0f} kB) listed {args.repeat}x, 800x320 training samples, "
            f"os.cpu_count()={os.cpu_count()}, torch {torch.__version__}"
        )
        datasets = {name: make_dataset(root, *spec) for name, spec in MODES.items()}
        print_stages(stage_table(datasets["worker"], args.samples))
        print(
            "\n2. CPU ms per sample: worker (one item; min and max of "
            f"{args.rounds} interleaved rounds) and main process (prepare_batch)"
        )
        cpu = worker_ms(datasets, args.samples, args.rounds)
        for name, dataset in datasets.items():
            low, high = cpu[name]
            main = main_ms(dataset, args.batch)
            print(f"   {name:18s} worker {low:6.2f} (max {high:6.2f})   main {main:6.2f}")
        print(
            f"   reference pipeline {REFERENCE_MS} ms/sample/core (measured once, elsewhere: a "
            f"scale, not a same-run ratio) -> worker mode {REFERENCE_MS / cpu['worker'][0]:.2f}x "
            "faster (goal >= 2x)"
        )
        print(
            f"\n3. launcher loader + device_batches on the CPU, batch {args.batch}, "
            f"{args.batches} batches timed"
        )
        print(
            f"   {'mode':18s} {'workers':>7s} {'samples/s':>9s} {'ratio':>6s} "
            f"{'worker ms':>9s} {'main ms':>7s}  threads/worker"
        )
        best = 0.0
        for name, dataset in datasets.items():
            for workers in args.workers:
                r = loader_rate(dataset, fabric, workers, args.batch, args.batches)
                best = max(best, r["rate"])
                ideal = max(workers, 1) * 1e3 / cpu[name][0]
                print(
                    f"   {name:18s} {workers:7d} {r['rate']:9.1f} {r['rate'] / ideal:6.2f} "
                    f"{r['worker_ms']:9.2f} {r['main_ms']:7.2f}  {r['threads']}"
                )
        print(
            "   ratio: samples/s / (workers x 1000 / worker ms of section 2); worker ms, main "
            "ms: CPU the loader's workers and main process spent per sample"
        )
        handover_cost(fabric, args.batch, args.batches)
        if args.step_batches:
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            device_rates(datasets, device, args.step_batches, best)
    worker = cpu["worker"][0]
    print(
        f"worker CPU per sample vs worker mode: device {cpu['device'][0] / worker:.2f}x, "
        f"cache {cpu['cache + device'][0] / worker:.2f}x"
    )


if __name__ == "__main__":
    main()
