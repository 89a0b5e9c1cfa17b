"""scripts/bench_model.py runs and reports what it promises (tiny settings)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_model.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_model", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_bench_script_reports_params_macs_and_latencies(capsys: pytest.CaptureFixture) -> None:
    bench = load_bench()
    results = bench.main(
        ["--img-h", "64", "--img-w", "160", "--repeats", "1", "--warmup", "0", "--device", "cpu"]
    )
    assert results["params_m"] == pytest.approx(11.594576)
    assert 0.3 < results["gmac"] < 0.5  # 9.32 * (64 * 160) / (320 * 800) plus the heads
    for key in ("forward_b1_ms", "forward_b8_ms", "decode_b1_ms", "decode_b8_ms"):
        assert results[key] > 0
    printed = capsys.readouterr().out
    for text in ("parameters: 11.595 M", "GMAC", "batch 1: eval forward", "batch 8:", "decode"):
        assert text in printed


def test_bench_script_precision_matrix_train_step_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bench = load_bench()
    out = tmp_path / "bench.json"
    results = bench.main(
        [
            *("--img-h", "64", "--img-w", "160", "--batch-sizes", "1", "2", "--device", "cpu"),
            *("--repeats", "1", "--warmup", "0", "--skip-latency"),
            *("--precisions", "fp32", "bf16", "--train-batch-sizes", "2"),
            *("--train-warmup", "0", "--train-repeats", "1", "--json", str(out)),
        ]
    )
    saved = json.loads(out.read_text())
    assert saved["results"] == results
    assert "forward_b1_ms" not in results  # --skip-latency
    rows = {(r["mode"], r["precision"], r["batch"]): r for r in saved["inference"]}
    assert set(rows) == {("eager", p, b) for p in ("fp32", "bf16") for b in (1, 2)}
    for (_, precision, _), row in rows.items():
        assert row["fps"] == pytest.approx(row["batch"] * 1000.0 / row["e2e_ms"])
        assert row["lanes"] > 0
        if precision == "fp32":
            assert row["max_abs_diff_vs_fp32"] == 0.0  # the same eager forward
        else:
            assert 0.0 < row["max_abs_diff_vs_fp32"] < 0.05
    (train,) = saved["train"]
    assert train["batch"] == 2 and train["precision"] == "32-true" and train["finite_loss"]
    assert train["step_ms"] > 0 and train["peak_mem_gib"] is None  # no CUDA
    printed = capsys.readouterr().out
    assert "eager bf16 batch 2: forward" in printed and "train step 32-true batch 2" in printed


@pytest.mark.slow
def test_bench_script_onnx_runtime_against_torch(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("onnxruntime", reason="the optional extra 'deploy' is not installed")
    bench = load_bench()
    out = tmp_path / "bench.json"
    bench.main(
        [
            *("--img-h", "64", "--img-w", "160", "--batch-sizes", "1", "2", "--device", "cpu"),
            *("--repeats", "1", "--warmup", "0", "--skip-latency", "--onnx", "--json", str(out)),
        ]
    )
    rows = json.loads(out.read_text())["onnx"]
    assert [row["batch"] for row in rows] == [1, 2]
    for row in rows:
        assert row["onnx_ms"] > 0 and row["torch_ms"] > 0
        assert row["max_abs_diff"] <= 1e-4
    assert "onnxruntime" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_script_times_every_inference_path_against_eager_fp32(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bench = load_bench()
    out = tmp_path / "bench.json"
    bench.main(
        [
            *("--img-h", "64", "--img-w", "160", "--batch-sizes", "1", "--device", "cpu"),
            *("--repeats", "2", "--warmup", "0", "--skip-latency", "--paths", "--json", str(out)),
        ]
    )
    rows = {row["path"]: row for row in json.loads(out.read_text())["paths"]}
    torch_paths = {f"{mode} {precision}" for mode, precision in bench.PATHS}
    assert torch_paths <= set(rows) <= torch_paths | {"onnxruntime fp32"}
    assert rows["eager fp32"]["speedup_vs_eager_fp32"] == 1.0
    assert rows["eager fp32"]["max_abs_diff_vs_eager_fp32"] == 0.0
    assert rows["frozen-compile fp32"]["max_abs_diff_vs_eager_fp32"] <= 1e-4
    for name in ("eager bf16", "frozen-compile bf16"):
        assert 0.0 < rows[name]["max_abs_diff_vs_eager_fp32"] < 0.05
    assert all(row["ms"] > 0 for row in rows.values())
    # The machine's limit, measured in the same run: each path's ceiling is its precision's
    # matmul throughput over fp32's.
    limits = json.loads(out.read_text())["limits"]
    assert limits["threads"] == torch.get_num_threads() and limits["cpu"]
    assert all(limits[name] > 0 for name in ("fp32", "bf16", "int8"))
    assert rows["eager fp32"]["ceiling_vs_eager_fp32"] == 1.0
    assert rows["int8 fp32"]["ceiling_vs_eager_fp32"] == limits["int8"] / limits["fp32"]
    assert rows["eager bf16"]["ceiling_vs_eager_fp32"] == limits["bf16"] / limits["fp32"]
    printed = capsys.readouterr().out
    assert "batch 1 frozen-compile bf16:" in printed
    assert "machine limit:" in printed and "x fp32)" in printed and "(ceiling " in printed


def test_cpu_limits_name_the_isa_from_cpuinfo(tmp_path: Path) -> None:
    from src.inference.cpu_limits import cpu_name_and_isa, describe_limits

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu avx2 avx512f avx512_vnni "
        "amx_int8 amx_bf16 amx_tile\n\nprocessor\t: 1\nmodel name\t: Some Xeon\n"
    )
    name, isa = cpu_name_and_isa(cpuinfo)
    assert name == "Some Xeon"
    assert isa == ["AMX-INT8", "AMX-BF16", "AVX512-VNNI", "AVX512F", "AVX2"]
    assert cpu_name_and_isa(tmp_path / "missing") == ("unknown", [])
    limits = {"cpu": name, "isa": isa, "threads": 2, "fp32": 300.0, "bf16": 2100.0, "int8": 2400.0}
    text = describe_limits(limits)
    assert "Some Xeon, 2 threads" in text and "int8 2,400 GOP/s (8.0x fp32)" in text
    assert "bf16 2,100 GFLOP/s (7.0x fp32)" in text and "ISA: AMX-INT8, AMX-BF16" in text
