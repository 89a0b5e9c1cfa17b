"""scripts/bench_clrnet.py runs and reports what it promises (tiny settings)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.mark.slow  # ~10 s: two models built, counted, timed and trained a step
def test_bench_compares_clrnet_with_srlane(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.syspath_prepend(str(SCRIPTS))  # as when the script runs: its folder first
    spec = importlib.util.spec_from_file_location("bench_clrnet", SCRIPTS / "bench_clrnet.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.main(
        [*("--img-h", "64", "--img-w", "160", "--repeats", "1", "--warmup", "0")]
        + ["--train-batch-sizes", "2"]
    )
    assert results["CLRNet_params_m"] == pytest.approx(11.774387)
    assert results["SRLane_params_m"] == pytest.approx(11.594576)
    assert results["CLRNet_gmac"] > results["SRLane_gmac"] > 0
    ratio = results["CLRNet_forward_b1_ms"] / results["SRLane_forward_b1_ms"]
    assert results["forward_b1_ratio"] == pytest.approx(ratio)
    assert results["CLRNet_train_b2_ms"] > 0 and results["SRLane_train_b2_ms"] > 0
    printed = capsys.readouterr().out
    for text in ("CLRNet: 11.774 M parameters", "batch 1 SRLane: eval forward", "train step"):
        assert text in printed
