"""scripts/bench_model.py runs and reports what it promises (tiny settings)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_model.py"


def test_bench_script_reports_params_macs_and_latencies(capsys: pytest.CaptureFixture) -> None:
    spec = importlib.util.spec_from_file_location("bench_model", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
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
