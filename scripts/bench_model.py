"""Benchmark SRLane on the current device: parameters, GMAC, eval-forward and decode latency.

    python scripts/bench_model.py                  # R18, 800x320, batch 1 and 8
    python scripts/bench_model.py --threads 2      # CPU with 2 threads (the reference's 136 ms)

Latencies are medians over ``--repeats`` timed runs after ``--warmup`` untimed ones. The forward
is timed like the reference's latency tool (network only, no decoding); decoding (threshold,
lane NMS, lanes in original-image coordinates) is timed separately on the forward's output
(without ``--weights`` the untrained lengths are set to 0.5 so that lanes come out).
On a CUDA device the batch-1 forward is also timed under fp16 and bf16 autocast.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.models.srlane import SRLane, load_weights  # noqa: E402


def median_ms(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median wall time of ``fn`` in milliseconds (CUDA work is synchronised)."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def count_gmac(model: SRLane, img: torch.Tensor) -> float:
    """Multiply-accumulates of one eval forward, in G (FLOPs / 2, torch's flop counter)."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(img)
    return counter.get_total_flops() / 2e9


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--backbone", default="resnet18", choices=["resnet18", "resnet34", "resnet50"]
    )
    parser.add_argument("--img-w", type=int, default=800)
    parser.add_argument("--img-h", type=int, default=320)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--weights", default=None, help="checkpoint to load (reference or project); else random"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = SRLane(backbone=args.backbone, img_w=args.img_w, img_h=args.img_h)
    if args.weights:
        print(load_weights(model, args.weights))
    model = model.eval().to(device)
    shape = (3, args.img_h, args.img_w)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"device: {device} ({where}), torch {torch.__version__}, threads {torch.get_num_threads()}"
    )

    results: dict[str, float] = {}
    results["params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
    results["gmac"] = count_gmac(model, torch.rand(1, *shape, device=device))
    print(f"model: SRLane {args.backbone}, input {args.img_w}x{args.img_h}")
    print(f"parameters: {results['params_m']:.3f} M")
    print(f"GMAC (batch 1): {results['gmac']:.3f} ({2 * results['gmac']:.2f} GFLOP)")

    for batch in args.batch_sizes:
        img = torch.rand(batch, *shape, device=device)
        with torch.inference_mode():
            forward = median_ms(partial(model, img), device, args.warmup, args.repeats)
            predictions = model(img)
        if not args.weights:
            # Untrained heads predict length ~0, which decodes to no lane at all; give every
            # proposal half the image height so that decoding does its full work.
            predictions = predictions.clone()
            predictions[..., 3] = 0.5
        decode_batch = partial(model.decode, predictions, [0] * batch, [args.img_h] * batch)
        decode = median_ms(decode_batch, device, 2, args.repeats)
        lanes = sum(len(image) for image in decode_batch())
        results[f"forward_b{batch}_ms"], results[f"decode_b{batch}_ms"] = forward, decode
        print(
            f"batch {batch}: eval forward {forward:.1f} ms ({forward / batch:.1f} ms/image); "
            f"decode {decode:.2f} ms ({lanes} lanes)"
        )

    if device.type == "cuda":
        img = torch.rand(1, *shape, device=device)
        precisions = {
            "fp32": nullcontext,
            "fp16": partial(torch.autocast, "cuda", dtype=torch.float16),
            "bf16": partial(torch.autocast, "cuda", dtype=torch.bfloat16),
        }
        for name, precision in precisions.items():

            def run(precision: Callable = precision) -> torch.Tensor:
                with precision():
                    return model(img)

            with torch.inference_mode():
                ms = median_ms(run, device, args.warmup, args.repeats)
            results[f"forward_b1_{name}_ms"] = ms
            print(f"batch 1 {name}: eval forward {ms:.2f} ms")
    return results


if __name__ == "__main__":
    main()
