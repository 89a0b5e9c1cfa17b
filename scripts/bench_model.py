"""Benchmark SRLane on the current device: parameters, GMAC, eval-forward and decode latency.

    python scripts/bench_model.py                  # R18, 800x320, batch 1 and 8
    python scripts/bench_model.py --threads 2      # CPU with 2 threads
    python scripts/bench_model.py --precisions fp32 fp16 bf16 --compile --json infer.json
    python scripts/bench_model.py --threads 2 --paths --f1-checkpoint RUN/checkpoints/best.ckpt
    python scripts/bench_model.py --skip-latency --train-batch-sizes 8 40 \
        --train-precision 16-mixed --json train.json

Latencies are medians over ``--repeats`` timed runs after ``--warmup`` untimed ones. The forward
is timed like the reference's latency tool (network only, no decoding); decoding (threshold,
lane NMS, lanes in original-image coordinates) is timed separately on the forward's output
(without ``--weights`` the untrained lengths are set to 0.5 so that lanes come out).
Without ``--precisions``, on a CUDA device the batch-1 forward is also timed under fp16 and
bf16 autocast.

``--precisions`` times, for every precision (autocast dtype; fp32 = no autocast), batch size
and mode (eager; with ``--compile`` also ``torch.compile``): the eval forward, forward + decode
(what a deployed detector runs; FPS = images per second of forward + decode) and the max abs
difference of the raw predictions from the eager fp32 ones on the same input.
``--train-batch-sizes`` times a training step (forward with losses, backward, AdamW step;
``--train-precision`` as Lightning names it: 16-mixed adds a grad scaler) on fixed synthetic
targets, and on CUDA reports the peak memory allocated. ``--json`` writes every figure to a
file, rewritten after each measurement (a run cut short keeps what it measured).

``--onnx`` (needs the extra ``deploy``) exports the model (src/inference/export.py) and times
ONNX Runtime (CPU execution provider, ``--threads`` intra-op threads) against the torch eager
fp32 forward at each batch size in the same run: the latency ratio and the max abs difference
of the raw predictions from torch's.

``--paths`` times every inference path a user can pick, at each batch size, interleaved in one
run (one forward + decode of each per round): eager and frozen-compile (``evaluation.compile=true``:
torch.compile with inductor freezing), each in fp32 and under bf16 autocast
(``trainer.precision=bf16-mixed``), and ONNX Runtime fp32 where the extra ``deploy`` is
installed, and int8 (``evaluation.int8=true``, calibrated here on random images like the timed
ones) where torchao is; each as a speed-up over eager fp32 with its max abs prediction
difference. The same run measures the machine's limit first (src/inference/cpu_limits.py: fp32 /
bf16 ``torch.mm`` and int8 ``torch._int_mm`` throughput on the same threads, and the ISA): each
path's speed-up is printed beside its ceiling, its precision's matmul throughput over fp32's.
``--profile`` adds a torch.profiler table of the int8 path (batch 1, the ops by self time).
``--f1-checkpoint CKPT`` adds the validation F1 of each torch path, measured by the launcher's own
``mode=validate`` (default config: the synthetic recipe; ``--f1-overrides`` for others). The int8
path is calibrated on ``--f1-calibration`` (``evaluation.int8_calibration``), by default for the
synthetic recipe its test-split images: frames neither trained on nor scored, as a user's own.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from src.models.srlane import SRLane, lane_targets, load_weights

# Inference precisions: the autocast dtype (None: plain fp32).
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
# Training precisions, named as trainer.precision names them.
TRAIN_DTYPES: dict[str, torch.dtype | None] = {
    "32-true": None,
    "16-mixed": torch.float16,
    "bf16-mixed": torch.bfloat16,
}
# Ground-truth lane slots of the training targets (the synthetic dataset's max_lanes).
TRAIN_MAX_LANES = 5


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


def interleaved_medians(
    fns: dict[str, Callable[[], object]], device: torch.device, warmup: int, repeats: int
) -> dict[str, float]:
    """Median milliseconds of each function, timed one run of each per round: on a shared
    machine the load drifts, and medians taken minutes apart would compare the drift."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    rounds = [
        {name: median_ms(fn, device, 0, 1) for name, fn in fns.items()} for _ in range(repeats)
    ]
    return {name: statistics.median(r[name] for r in rounds) for name in fns}


def count_gmac(model: SRLane, img: torch.Tensor) -> float:
    """Multiply-accumulates of one eval forward, in G (FLOPs / 2, torch's flop counter)."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(img)
    return counter.get_total_flops() / 2e9


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """Autocast to ``dtype`` on ``device``'s type, or nothing for fp32."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


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
    parser.add_argument(
        "--precisions",
        nargs="+",
        choices=list(AUTOCAST_DTYPES),
        default=None,
        help="time forward and forward + decode (FPS) under each autocast precision at every "
        "batch size, with the max abs prediction difference from fp32",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time the --precisions matrix (default: fp32) through torch.compile",
    )
    parser.add_argument(
        "--compile-backend", default="inductor", help="torch.compile backend (default inductor)"
    )
    parser.add_argument(
        "--skip-latency",
        action="store_true",
        help="skip the per-batch fp32 eval/decode latencies (parameters and GMAC still print)",
    )
    parser.add_argument(
        "--train-batch-sizes",
        type=int,
        nargs="*",
        default=[],
        help="time a training step (forward + losses, backward, AdamW) at these batch sizes",
    )
    parser.add_argument("--train-precision", default="32-true", choices=list(TRAIN_DTYPES))
    parser.add_argument("--train-warmup", type=int, default=3)
    parser.add_argument("--train-repeats", type=int, default=10)
    parser.add_argument("--json", default=None, help="write every figure to this JSON file")
    parser.add_argument(
        "--onnx",
        action="store_true",
        help="also time ONNX Runtime (CPU) against torch eager fp32 (needs the extra deploy)",
    )
    parser.add_argument(
        "--paths",
        action="store_true",
        help="time every inference path (eager / frozen-compile x fp32 / bf16, ONNX Runtime) "
        "against eager fp32, interleaved in one run",
    )
    parser.add_argument(
        "--f1-checkpoint",
        default=None,
        help="a trained checkpoint: its validation F1 through every torch path (mode=validate)",
    )
    parser.add_argument(
        "--f1-calibration",
        default=None,
        help="evaluation.int8_calibration of the int8 F1 run (default: the synthetic test split's "
        "images without --f1-overrides, else the launcher's default)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="with --paths: a torch.profiler table of the int8 path at batch 1",
    )
    parser.add_argument(
        "--f1-overrides",
        nargs="*",
        default=[],
        help="config overrides for the --f1-checkpoint runs (default: the synthetic recipe)",
    )
    return parser.parse_args(argv)


class Report:
    """The figures measured so far; written to ``--json`` after every measurement."""

    def __init__(self, path: str | None, meta: dict[str, Any]) -> None:
        self.path = Path(path) if path else None
        self.meta = meta
        self.results: dict[str, float] = {}
        self.inference: list[dict[str, Any]] = []
        self.train: list[dict[str, Any]] = []
        self.onnx: list[dict[str, Any]] = []  # --onnx: ONNX Runtime vs torch eager fp32
        self.paths: list[dict[str, Any]] = []  # --paths: every inference path vs eager fp32
        self.limits: dict[str, Any] = {}  # --paths: the machine's matmul throughput and ISA
        self.f1: dict[str, float] = {}  # --f1-checkpoint: validation F1 per path
        self.errors: list[str] = []

    def write(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "meta": self.meta,
            "results": self.results,
            "inference": self.inference,
            "train": self.train,
            "onnx": self.onnx,
            "paths": self.paths,
            "limits": self.limits,
            "f1": self.f1,
            "errors": self.errors,
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.path)


def bench_precisions(
    model: SRLane, args: argparse.Namespace, device: torch.device, report: Report
) -> None:
    """Forward and forward + decode per (mode, precision, batch), and the max abs difference
    of the raw predictions from eager fp32 on the same input."""
    shape = (3, args.img_h, args.img_w)
    generator = torch.Generator().manual_seed(1)
    inputs = {b: torch.rand(b, *shape, generator=generator).to(device) for b in args.batch_sizes}
    if device.type == "cuda":
        # As the runner (fixed input size); set before the reference forward, so that eager
        # fp32 reuses its convolution algorithms and differs from it by exactly 0.
        torch.backends.cudnn.benchmark = True
        report.meta["cudnn_benchmark"] = True
    with torch.inference_mode():
        reference = {b: model(img).float() for b, img in inputs.items()}
    precisions = args.precisions or ["fp32"]
    modes = ["eager", "compile"] if args.compile else ["eager"]
    for mode in modes:
        failures = 0
        if mode == "compile":
            # Static shapes: one graph per (precision, batch), as a deployed detector runs.
            net: Callable[[torch.Tensor], torch.Tensor] = torch.compile(
                model, backend=args.compile_backend, dynamic=False
            )
        else:
            net = model
        for precision in precisions:
            dtype = AUTOCAST_DTYPES[precision]
            for batch, img in inputs.items():
                if failures >= 2:  # e.g. no compiler for torch.compile: do not retry 6 times
                    message = f"{mode} {precision} batch {batch}: skipped after 2 failures"
                    print(message)
                    report.errors.append(message)
                    report.write()
                    continue
                try:
                    row = _bench_one(model, net, img, reference[batch], dtype, args, device)
                except Exception as err:  # reported; the matrix goes on
                    failures += 1
                    message = f"{mode} {precision} batch {batch}: {type(err).__name__}: {err}"
                    print(f"FAILED {message}")
                    report.errors.append(message[:2000])
                    report.write()
                    continue
                row = {"mode": mode, "precision": precision, "batch": batch, **row}
                report.inference.append(row)
                key = f"{mode}_{precision}_b{batch}"
                report.results[f"{key}_forward_ms"] = row["forward_ms"]
                report.results[f"{key}_e2e_ms"] = row["e2e_ms"]
                report.results[f"{key}_fps"] = row["fps"]
                report.results[f"{key}_max_abs_diff"] = row["max_abs_diff_vs_fp32"]
                report.write()
                print(
                    f"{mode} {precision} batch {batch}: forward {row['forward_ms']:.2f} ms, "
                    f"forward + decode {row['e2e_ms']:.2f} ms = {row['fps']:.1f} FPS, "
                    f"max |pred - fp32| {row['max_abs_diff_vs_fp32']:.3g}, "
                    f"first call {row['first_call_s']:.1f} s"
                )


def _bench_one(
    model: SRLane,
    net: Callable[[torch.Tensor], torch.Tensor],
    img: torch.Tensor,
    reference: torch.Tensor,
    dtype: torch.dtype | None,
    args: argparse.Namespace,
    device: torch.device,
) -> dict[str, Any]:
    batch = len(img)

    def forward() -> torch.Tensor:
        with torch.inference_mode(), autocast(device, dtype):
            return net(img)

    def forward_decode() -> list:
        with torch.inference_mode():
            predictions = forward().float()
            if not args.weights:  # see main(): untrained lengths decode to no lane
                predictions[..., 3] = 0.5
            return model.decode(predictions, [0] * batch, [args.img_h] * batch)

    start = time.perf_counter()  # the first call compiles in compile mode
    predictions = forward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    first_call_s = time.perf_counter() - start
    diff = (predictions.float() - reference).abs().max().item()
    forward_ms = median_ms(forward, device, args.warmup, args.repeats)
    e2e_ms = median_ms(forward_decode, device, args.warmup, args.repeats)
    lanes = sum(len(lanes) for lanes in forward_decode())
    return {
        "forward_ms": forward_ms,
        "e2e_ms": e2e_ms,
        "fps": batch * 1000.0 / e2e_ms,
        "max_abs_diff_vs_fp32": diff,
        "first_call_s": first_call_s,
        "lanes": lanes,
    }


def bench_onnx(
    model: SRLane, args: argparse.Namespace, device: torch.device, report: Report
) -> None:
    """ONNX Runtime vs torch eager fp32 on the same inputs, at each batch size."""
    from src.inference.export import OnnxLaneModel, export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(model, Path(tmp), cut_height=0)
        session = OnnxLaneModel(tmp, threads=args.threads)
    for batch in args.batch_sizes:
        img = torch.rand(batch, 3, args.img_h, args.img_w, device=device)
        array = img.cpu().numpy()
        with torch.inference_mode():
            expected = model(img).float().cpu().numpy()
            fns = {"torch": partial(model, img), "onnx": partial(session.run, array)}
            timed = interleaved_medians(fns, device, args.warmup, args.repeats)
        torch_ms, onnx_ms = timed["torch"], timed["onnx"]
        diff = float(abs(session.run(array) - expected).max())
        row = {"batch": batch, "torch_ms": torch_ms, "onnx_ms": onnx_ms, "max_abs_diff": diff}
        report.onnx.append(row)
        report.results[f"onnx_b{batch}_ms"] = onnx_ms
        report.write()
        print(
            f"batch {batch}: onnxruntime {onnx_ms:.1f} ms vs torch eager fp32 ({device}) "
            f"{torch_ms:.1f} ms: ratio {onnx_ms / torch_ms:.2f}; max abs diff {diff:.2e}"
        )


# --paths: the inference paths of a trained model, (mode, precision); the first is the baseline.
# "frozen-compile" is evaluation.compile=true (src/inference/compiled.py); "int8" is
# evaluation.int8=true (src/inference/quantize.py: the int8 graph, then the frozen compile), where
# torchao is installed (extra deploy).
PATHS = [
    ("eager", "fp32"),
    ("eager", "bf16"),
    ("frozen-compile", "fp32"),
    ("frozen-compile", "bf16"),
    ("int8", "fp32"),
]
# --paths: images the int8 path is calibrated on for timing (random, like the timed inputs).
BENCH_CALIBRATION_IMAGES = 8


def available_paths() -> list[tuple[str, str]]:
    """PATHS less int8 where torchao is missing."""
    from src.inference.quantize import require_torchao

    try:
        require_torchao()
    except ImportError as err:
        print(f"int8 path skipped: {err}")
        return [path for path in PATHS if path[0] != "int8"]
    return PATHS


TRAINER_PRECISION = {"fp32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}


def inference_paths(
    model: SRLane, args: argparse.Namespace, device: torch.device
) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Each path as a function of the input batch; ONNX Runtime too where it is installed."""
    from src.inference.compiled import FrozenCompiledModel, inference_model

    nets = {"eager": model, "frozen-compile": FrozenCompiledModel(model)}
    chosen = available_paths()
    if ("int8", "fp32") in chosen:
        generator = torch.Generator().manual_seed(2)
        shape = (BENCH_CALIBRATION_IMAGES, 3, args.img_h, args.img_w)
        calibration = [torch.rand(shape, generator=generator).to(device)]
        nets["int8"] = inference_model(model, compile=True, int8_calibration=calibration)
    paths: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    for mode, precision in chosen:

        def run(img: torch.Tensor, net: nn.Module = nets[mode], precision: str = precision):
            with torch.inference_mode(), autocast(device, AUTOCAST_DTYPES[precision]):
                return net(img)

        paths[f"{mode} {precision}"] = run
    try:
        from src.inference.export import OnnxLaneModel, export_onnx
    except ImportError:
        return paths
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(model, Path(tmp), cut_height=0)
        session = OnnxLaneModel(tmp, threads=args.threads)
    paths["onnxruntime fp32"] = lambda img: torch.from_numpy(session.run(img.cpu().numpy()))
    return paths


def bench_paths(
    model: SRLane, args: argparse.Namespace, device: torch.device, report: Report
) -> None:
    """Latency of every inference path at each batch size (forward + decode, what a deployed
    detector runs), timed interleaved in one run, as a speed-up over eager fp32, with the max
    abs difference of the raw predictions from it."""
    paths = inference_paths(model, args, device)
    ceilings = machine_ceilings(report)

    def detect(run: Callable[[torch.Tensor], torch.Tensor], img: torch.Tensor) -> list:
        with torch.inference_mode():
            predictions = run(img).float()
            if not args.weights:  # see main(): untrained lengths decode to no lane
                predictions[..., 3] = 0.5
            return model.decode(predictions, [0] * len(img), [args.img_h] * len(img))

    baseline = "eager fp32"
    generator = torch.Generator().manual_seed(1)
    for batch in args.batch_sizes:
        img = torch.rand(batch, 3, args.img_h, args.img_w, generator=generator).to(device)
        reference = paths[baseline](img).float()
        first_call_s, diffs = {}, {}
        for name, run in paths.items():
            start = time.perf_counter()  # the first call compiles the frozen-compile paths
            diffs[name] = (run(img).float() - reference).abs().max().item()
            first_call_s[name] = time.perf_counter() - start
        fns = {name: partial(detect, run, img) for name, run in paths.items()}
        timed = interleaved_medians(fns, device, args.warmup, args.repeats)
        for name, ms in timed.items():
            speedup, ceiling = timed[baseline] / ms, ceilings[path_precision(name)]
            row = {
                "path": name,
                "batch": batch,
                "ms": ms,
                "speedup_vs_eager_fp32": speedup,
                "ceiling_vs_eager_fp32": ceiling,
                "max_abs_diff_vs_eager_fp32": diffs[name],
                "first_call_s": first_call_s[name],
            }
            report.paths.append(row)
            report.write()
            print(
                f"batch {batch} {name}: forward + decode {ms:.1f} ms, {speedup:.2f}x eager fp32 "
                f"(ceiling {ceiling:.1f}x: {100 * speedup / ceiling:.0f}%), max |pred - fp32| "
                f"{diffs[name]:.2e}, first call {first_call_s[name]:.1f} s"
            )
    report.limits["load_average_after"] = os.getloadavg()
    report.write()
    print("load average after (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    if args.profile and "int8 fp32" in paths:
        print_profile(paths["int8 fp32"], args, device)


def path_precision(name: str) -> str:
    """The matmul precision that bounds a path ("int8 fp32" -> int8, "eager bf16" -> bf16)."""
    mode, precision = name.split()
    return "int8" if mode == "int8" else precision


def machine_ceilings(report: Report) -> dict[str, float]:
    """The machine's limit on this run's threads (printed, kept in the report): each precision's
    matmul throughput over fp32's, the most a path in it can gain over eager fp32."""
    from src.inference.cpu_limits import describe_limits, machine_limits

    report.limits = {**machine_limits(), "load_average": os.getloadavg()}
    report.write()
    print(describe_limits(report.limits))
    print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    return {name: report.limits[name] / report.limits["fp32"] for name in ("fp32", "bf16", "int8")}


def print_profile(
    run: Callable[[torch.Tensor], torch.Tensor], args: argparse.Namespace, device: torch.device
) -> None:
    """The ops of ``run`` at batch 1 by self time over ``--repeats`` calls (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    img = torch.rand(1, 3, args.img_h, args.img_w, device=device)
    for _ in range(args.warmup):
        run(img)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.repeats):
            run(img)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    print(f"int8 path at batch 1, {args.repeats} calls:\n{table}")


def path_f1(args: argparse.Namespace, mode: str, precision: str) -> float:
    """The validation F1 of --f1-checkpoint through one path: the launcher's own mode=validate
    (trainer.precision, evaluation.compile) in a subprocess, plus --f1-overrides."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable,
            *("-m", "src.main", "mode=validate", f"load_from={args.f1_checkpoint}"),
            "trainer.accelerator=cpu",
            f"trainer.precision={TRAINER_PRECISION[precision]}",
            f"evaluation.compile={str(mode == 'frozen-compile').lower()}",
            f"evaluation.int8={str(mode == 'int8').lower()}",
            *("trainer.progress=false", f"hydra.run.dir={tmp}", *args.f1_overrides),
        ]
        if mode == "int8" and f1_calibration(args):
            command.append(f"evaluation.int8_calibration={f1_calibration(args)}")
        threads = {"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}
        result = subprocess.run(
            command, capture_output=True, text=True, env={**os.environ, **threads}
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
        return float(json.loads((Path(tmp) / "metrics.json").read_text())["validate"]["F1"])


def f1_calibration(args: argparse.Namespace) -> str | None:
    """--f1-calibration, or for the synthetic recipe (no --f1-overrides) its test split's images,
    frames that are neither trained on nor scored (None: the launcher's default)."""
    if args.f1_calibration or args.f1_overrides:
        return args.f1_calibration
    from src.data.config import SyntheticConfig
    from src.data.synthetic import default_synthetic_root

    return str(default_synthetic_root(SyntheticConfig()) / "clips" / "test")


def bench_f1(args: argparse.Namespace, report: Report) -> None:
    """Validation F1 of every torch path (ONNX Runtime's lanes equal eager fp32's: tests/
    test_export.py)."""
    print(f"int8 calibrated on: {f1_calibration(args) or 'the launcher default'}")
    for mode, precision in available_paths():
        f1 = path_f1(args, mode, precision)
        report.f1[f"{mode} {precision}"] = f1
        report.write()
        print(f"val F1 {mode} {precision}: {f1:.4f}")


def synthetic_lanes(img_w: int, img_h: int) -> list[list[tuple[float, float]]]:
    """Four slanted lanes across the lower 85 % of the input image, in input pixels."""
    ys = [img_h - i * img_h / 40 for i in range(35)]
    return [
        [(img_w * (0.15 + 0.23 * lane) + (lane - 1.5) * 0.4 * (img_h - y), y) for y in ys]
        for lane in range(4)
    ]


def _train_step(
    model: SRLane,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    dtype: torch.dtype | None,
    img: torch.Tensor,
    gt_lane: torch.Tensor,
    gt_angle: list[torch.Tensor],
    losses: list[torch.Tensor],
) -> None:
    """One optimizer step as Fabric runs it under the precision (loss scaling for fp16)."""
    with autocast(device, dtype):
        out = model(img, gt_lane=gt_lane, gt_angle=gt_angle)
    scaler.scale(out["loss"]).backward()
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    losses.append(out["loss"].detach())


def bench_train_steps(args: argparse.Namespace, device: torch.device, report: Report) -> None:
    """Training-step time (and CUDA peak memory) per batch size on fixed synthetic targets."""
    dtype = TRAIN_DTYPES[args.train_precision]
    if device.type != "cuda" and args.train_precision == "16-mixed":
        raise SystemExit("--train-precision 16-mixed needs CUDA (fp16 training is CUDA only)")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as training does (fixed input size)
    torch.manual_seed(0)
    # The training switches of the synthetic recipe (conf/experiment/synthetic_cpu.yaml).
    model = SRLane(
        backbone=args.backbone,
        img_w=args.img_w,
        img_h=args.img_h,
        assign_on_priors=True,
        iou_loss_target_width=True,
    )
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    scaler = torch.amp.GradScaler(device.type, enabled=args.train_precision == "16-mixed")
    gt_lane, gt_angle = lane_targets(
        synthetic_lanes(args.img_w, args.img_h), args.img_w, args.img_h, 72, TRAIN_MAX_LANES
    )
    for batch in args.train_batch_sizes:
        img = torch.rand(batch, 3, args.img_h, args.img_w, device=device)
        lane = torch.from_numpy(gt_lane).to(device).expand(batch, -1, -1).contiguous()
        angle = [
            torch.from_numpy(a).to(device).expand(batch, -1, -1).contiguous() for a in gt_angle
        ]
        losses: list[torch.Tensor] = []
        step = partial(
            _train_step, model, optimizer, scaler, device, dtype, img, lane, angle, losses
        )
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        step_ms = median_ms(step, device, args.train_warmup, args.train_repeats)
        loss = float(losses[-1])
        row: dict[str, Any] = {
            "precision": args.train_precision,
            "batch": batch,
            "step_ms": step_ms,
            "samples_per_s": batch * 1000.0 / step_ms,
            "last_loss": loss,
            "finite_loss": all(math.isfinite(float(v)) for v in losses),
            "peak_mem_gib": None,
            "peak_reserved_gib": None,
        }
        if device.type == "cuda":
            row["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
            row["peak_reserved_gib"] = torch.cuda.max_memory_reserved(device) / 2**30
        del img, lane, angle
        report.train.append(row)
        report.results[f"train_b{batch}_step_ms"] = step_ms
        if row["peak_mem_gib"] is not None:
            report.results[f"train_b{batch}_peak_mem_gib"] = row["peak_mem_gib"]
        report.write()
        memory = f", peak memory {row['peak_mem_gib']:.2f} GiB" if row["peak_mem_gib"] else ""
        print(
            f"train step {args.train_precision} batch {batch}: {step_ms:.1f} ms "
            f"({row['samples_per_s']:.1f} samples/s), loss {loss:.4f}{memory}"
        )


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
    report = Report(
        args.json,
        {
            "device": where,
            "torch": torch.__version__,
            "backbone": args.backbone,
            "img_w": args.img_w,
            "img_h": args.img_h,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        },
    )

    results = report.results
    results["params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
    results["gmac"] = count_gmac(model, torch.rand(1, *shape, device=device))
    report.write()
    print(f"model: SRLane {args.backbone}, input {args.img_w}x{args.img_h}")
    print(f"parameters: {results['params_m']:.3f} M")
    print(f"GMAC (batch 1): {results['gmac']:.3f} ({2 * results['gmac']:.2f} GFLOP)")

    for batch in [] if args.skip_latency else args.batch_sizes:
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
        report.write()
        print(
            f"batch {batch}: eval forward {forward:.1f} ms ({forward / batch:.1f} ms/image); "
            f"decode {decode:.2f} ms ({lanes} lanes)"
        )

    if args.precisions or args.compile:
        bench_precisions(model, args, device, report)
    elif device.type == "cuda" and not args.skip_latency:
        img = torch.rand(1, *shape, device=device)
        for name, dtype in AUTOCAST_DTYPES.items():

            def run(dtype: torch.dtype | None = dtype) -> torch.Tensor:
                with autocast(device, dtype):
                    return model(img)

            with torch.inference_mode():
                ms = median_ms(run, device, args.warmup, args.repeats)
            results[f"forward_b1_{name}_ms"] = ms
            report.write()
            print(f"batch 1 {name}: eval forward {ms:.2f} ms")

    if args.onnx:
        bench_onnx(model, args, device, report)
    if args.paths:
        bench_paths(model, args, device, report)
    if args.f1_checkpoint:
        bench_f1(args, report)

    if args.train_batch_sizes:
        del model
        bench_train_steps(args, device, report)
    return results


if __name__ == "__main__":
    main()
