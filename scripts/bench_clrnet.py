"""CLRNet against SRLane in one run: parameters, GMAC, eval-forward and decode latency.

    python scripts/bench_clrnet.py                       # R18, 800x320, batch 1, all threads
    python scripts/bench_clrnet.py --threads 2 --batch-sizes 1 8 --backbone resnet34
    python scripts/bench_clrnet.py --img-w 320 --img-h 128 --skip-latency --train-batch-sizes 8

Both models are built with random weights at the same input size and timed alternately, one
forward of each per round (``bench_model.interleaved_medians``: a shared machine's load drifts),
so the ratio CLRNet / SRLane compares like with like. Decoding (threshold, lane NMS, lanes in
original-image coordinates) is timed on each forward's output, with every prediction given half
the image as length so that lanes come out of the untrained heads. ``--train-batch-sizes`` times
a training step (forward with losses, backward, AdamW step; fp32) of each model on the same
synthetic lanes, alternately. For SRLane alone (precisions,
compile, ONNX, training steps): ``scripts/bench_model.py``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import torch

# The script's own folder is first on sys.path when it runs: the timing helpers are shared.
from bench_model import count_gmac, interleaved_medians, synthetic_lanes

from src.models import clrnet, srlane
from src.models.clrnet import CLRNet
from src.models.srlane import SRLane

# The column holding each model's length (a fraction of the strips): set to 0.5 for decoding.
LENGTH_COLUMN = {"CLRNet": 5, "SRLane": 3}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="resnet18", choices=["resnet18", "resnet34"])
    parser.add_argument("--img-w", type=int, default=800)
    parser.add_argument("--img-h", type=int, default=320)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--skip-latency", action="store_true", help="no eval/decode timing")
    parser.add_argument("--train-batch-sizes", type=int, nargs="*", default=[])
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    size = {"img_w": args.img_w, "img_h": args.img_h}
    models = {
        "CLRNet": CLRNet(backbone=args.backbone, **size).eval(),
        "SRLane": SRLane(backbone=args.backbone, **size).eval(),
    }
    print(f"CPU, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{args.backbone}, input {args.img_w}x{args.img_h}")
    results: dict[str, float] = {}
    for name, model in models.items():
        params = sum(p.numel() for p in model.parameters()) / 1e6
        gmac = count_gmac(model, torch.rand(1, 3, args.img_h, args.img_w))
        results[f"{name}_params_m"], results[f"{name}_gmac"] = params, gmac
        print(f"{name}: {params:.3f} M parameters, {gmac:.2f} GMAC (batch 1)")
    for batch in [] if args.skip_latency else args.batch_sizes:
        img = torch.rand(batch, 3, args.img_h, args.img_w)
        with torch.inference_mode():
            forward = interleaved_medians(
                {name: partial(model, img) for name, model in models.items()},
                torch.device("cpu"),
                args.warmup,
                args.repeats,
            )
        for name, model in models.items():
            with torch.no_grad():  # not inference_mode: the lengths are edited below
                predictions = model(img)
            predictions[..., LENGTH_COLUMN[name]] = 0.5
            decode = partial(model.decode, predictions, [0] * batch, [args.img_h] * batch)
            decode_ms = interleaved_medians({name: decode}, torch.device("cpu"), 1, args.repeats)
            lanes = sum(len(image) for image in decode())
            results[f"{name}_forward_b{batch}_ms"] = forward[name]
            results[f"{name}_decode_b{batch}_ms"] = decode_ms[name]
            print(
                f"batch {batch} {name}: eval forward {forward[name]:.1f} ms, "
                f"decode {decode_ms[name]:.2f} ms ({lanes} lanes)"
            )
        ratio = forward["CLRNet"] / forward["SRLane"]
        results[f"forward_b{batch}_ratio"] = ratio
        print(f"batch {batch}: CLRNet / SRLane eval forward = {ratio:.2f}")
    for batch in args.train_batch_sizes:
        steps = {name: train_step(model, batch, args) for name, model in models.items()}
        train = interleaved_medians(steps, torch.device("cpu"), 1, max(args.repeats // 4, 1))
        for name, ms in train.items():
            results[f"{name}_train_b{batch}_ms"] = ms
            print(f"train step batch {batch} {name}: {ms:.0f} ms")
        results[f"train_b{batch}_ratio"] = train["CLRNet"] / train["SRLane"]
        print(f"train step batch {batch}: CLRNet / SRLane = {results[f'train_b{batch}_ratio']:.2f}")
    return results


def train_step(model: torch.nn.Module, batch: int, args: argparse.Namespace) -> Callable:
    """One fp32 optimizer step of ``model`` on ``batch`` images with the same synthetic lanes."""
    package = clrnet if isinstance(model, CLRNet) else srlane
    targets = package.lane_targets(synthetic_lanes(args.img_w, args.img_h), args.img_w, args.img_h)
    if isinstance(targets, tuple):  # SRLane: (gt_lane, per-stride angle maps)
        targets = {"gt_lane": targets[0], "gt_angle": targets[1]}
    stacked = {
        key: [torch.from_numpy(np.stack([m] * batch)) for m in value]
        if isinstance(value, list)
        else torch.from_numpy(np.stack([value] * batch))
        for key, value in targets.items()
    }
    img = torch.rand(batch, 3, args.img_h, args.img_w)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        model.train()
        model(img, **stacked)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


if __name__ == "__main__":
    main()
