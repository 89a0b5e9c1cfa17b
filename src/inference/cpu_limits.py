"""What this CPU can compute at most, to read an inference speed-up against: the instruction
sets that set the ceiling (AMX, AVX512-VNNI, AVX512-BF16) and the measured matrix-multiply
throughput in fp32 and bf16 (``torch.mm``) and int8 (``torch._int_mm``) on the threads in use.

A path cannot beat eager fp32 by more than its precision's matmul throughput over fp32's: that
ratio is the path's ceiling (``scripts/bench_model.py --paths`` prints each path's speed-up
beside it). The int8 path is src/quantize.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

# /proc/cpuinfo flag -> the name printed; the ones that decide bf16 and int8 throughput.
ISA_FLAGS = {
    "amx_int8": "AMX-INT8",
    "amx_bf16": "AMX-BF16",
    "avx512_vnni": "AVX512-VNNI",
    "avx512_bf16": "AVX512-BF16",
    "avx_vnni": "AVX-VNNI",
    "avx512f": "AVX512F",
    "avx2": "AVX2",
}
# Square matrices: large enough that the kernels run at their peak, small enough for seconds.
MATMUL_SIZE = 2048
MATMUL_DESCRIPTION = f"torch.mm {MATMUL_SIZE}x{MATMUL_SIZE} fp32 / bf16, torch._int_mm int8"


def cpu_name_and_isa(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, list[str]]:
    """The CPU's model name and which of ``ISA_FLAGS`` it has (Linux; ("unknown", []) else)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return "unknown", []
    name, flags = "unknown", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and name == "unknown":
            name = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return name, [label for flag, label in ISA_FLAGS.items() if flag in flags]


def matmul_throughput(size: int = MATMUL_SIZE, rounds: int = 10) -> dict[str, float]:
    """G(FL)OP/s of a ``size`` x ``size`` matrix product on the CPU with torch's current thread
    count: "fp32" and "bf16" (torch.mm, bf16 in and out) and "int8" (torch._int_mm, int8 in,
    int32 out). Timed one product of each per round (the load of a shared machine drifts), and
    the fastest round of each taken: a limit is what the machine gives at best, and on a loaded
    machine the median of the int8 products (whose AMX state a context switch saves and
    restores) fell to half of the best while fp32's lost a third."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    a16, b16 = a.bfloat16(), b.bfloat16()
    a8 = torch.randint(-128, 128, (size, size), dtype=torch.int8, generator=generator)
    b8 = torch.randint(-128, 128, (size, size), dtype=torch.int8, generator=generator)
    products: dict[str, Callable[[], object]] = {
        "fp32": lambda: torch.mm(a, b),
        "bf16": lambda: torch.mm(a16, b16),
        "int8": lambda: torch._int_mm(a8, b8),
    }
    times: dict[str, list[float]] = {name: [] for name in products}
    with torch.inference_mode():
        for fn in products.values():  # first call: oneDNN / MKL pick and prepare their kernels
            fn()
        for _ in range(rounds):
            for name, fn in products.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    operations = 2.0 * size**3
    return {name: operations / min(t) / 1e9 for name, t in times.items()}


def machine_limits() -> dict[str, object]:
    """The CPU's name, its ISA (``cpu_name_and_isa``), torch's thread count and the matmul
    throughput of each precision (``matmul_throughput``) on those threads."""
    name, isa = cpu_name_and_isa()
    return {"cpu": name, "isa": isa, "threads": torch.get_num_threads(), **matmul_throughput()}


def describe_limits(limits: dict[str, object]) -> str:
    """Two lines: the CPU and threads, then each precision's throughput, its ratio to fp32 (the
    ceiling of a path in that precision over fp32) and the ISA."""
    fp32 = float(limits["fp32"])  # type: ignore[arg-type]
    parts = []
    for name in ("fp32", "bf16", "int8"):
        value = float(limits[name])  # type: ignore[arg-type]
        unit = "GOP/s" if name == "int8" else "GFLOP/s"
        parts.append(f"{name} {value:,.0f} {unit} ({value / fp32:.1f}x fp32)")
    isa = ", ".join(limits["isa"]) or "unknown"  # type: ignore[arg-type]
    return (
        f"machine limit: {limits['cpu']}, {limits['threads']} threads ({MATMUL_DESCRIPTION}):\n"
        f"  {', '.join(parts)}; ISA: {isa}"
    )
