"""scripts/bench_data.py runs end to end at tiny settings and prints what it promises: the stage
table, every mode's worker and main-process CPU, the loader rates and the closing ratio line."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.launcher_helpers import ROOT

MODES = ("today (float32)", "worker", "device", "cache + worker", "cache + device")


@pytest.mark.slow
def test_bench_data_prints_every_mode_and_the_ratio_line() -> None:
    command = [sys.executable, "scripts/bench_data.py", "--samples", "4", "--rounds", "2"]
    command += ["--images", "2", "--repeat", "8", "--workers", "1", "--batch", "2"]
    command += ["--batches", "2"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "JPEG read + decode" in out and "lanes + targets" in out
    worker = {}
    for mode in MODES:
        row = re.search(rf"^   {re.escape(mode)} +worker +([\d.]+) \(max +([\d.]+)\)", out, re.M)
        assert row, f"no section-2 row for {mode}"
        worker[mode] = float(row.group(1))
        assert 0 < worker[mode] <= float(row.group(2))
        assert re.search(rf"^   {re.escape(mode)} +1 +[\d.]+ +[\d.]+", out, re.M), mode
    last = out.strip().splitlines()[-1]
    ratios = re.fullmatch(
        r"worker CPU per sample vs worker mode: device ([\d.]+)x, cache ([\d.]+)x", last
    )
    assert ratios, last
    # The printed ratios are this run's section-2 figures (rounded to 2 decimals).
    assert float(ratios.group(1)) == pytest.approx(worker["device"] / worker["worker"], abs=0.006)
    assert float(ratios.group(2)) == pytest.approx(
        worker["cache + device"] / worker["worker"], abs=0.006
    )
