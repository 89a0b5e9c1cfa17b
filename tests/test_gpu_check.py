"""scripts/gpu_check.sh --cpu: every step of the GPU acceptance run, tiny on the CPU, ends in one
table whose rows are all there, with finite numbers (CI proves the script before its GPU run)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"

# Rows that must be measured in CPU mode (status ok, finite value).
MEASURED = [
    "a.gmac",
    *(f"a.{m}.{p}.b{b}" for m in ("eager", "compile") for p in ("fp32", "bf16") for b in (1, 2)),
    "a.diff.fp32",
    "a.diff.bf16",
    "b.bf16-mixed.f1",
    "b.bf16-mixed.loss",
    "b.bf16-mixed.it_ms",
    "b.bf16-mixed.exit_s",
    "c.kill",
    "c.resume",
    "d.loader.nw0",
    "d.loader.nw1",
    "d.loader.nw2",
    "d.loader.cache.nw0",
    "d.loader.cache.nw1",
    "d.loader.cache.nw2",
    "d.step.b2",
    "d.step.b4",
    "wall.total",
]
# What cannot run on the CPU is listed, as SKIP.
SKIPPED = ["a.fp16", "b.16-mixed", "e.peak_mem"]


@pytest.mark.slow
def test_gpu_check_cpu_mode_prints_one_table_of_finite_numbers(tmp_path: Path) -> None:
    out_dir, returned = tmp_path / "check", tmp_path / "returned"
    env = {**os.environ, "OUT": str(returned), "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        ["bash", str(SCRIPT), "--cpu", "--out-dir", str(out_dir), "--budget-s", "700"],
        cwd=tmp_path,  # the script finds the repository itself
        env=env,
        capture_output=True,
        text=True,
        timeout=850,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]

    table = (out_dir / "gpu_check.md").read_text()
    assert table.strip() in result.stdout  # printed at the end, once
    assert result.stdout.count("| id | check | value |") == 1
    rows = {row["id"]: row for row in json.loads((out_dir / "gpu_check.json").read_text())["rows"]}
    for row_id in MEASURED:
        row = rows.get(row_id)
        assert row is not None, f"row {row_id} missing:\n{table}"
        assert row["status"] == "ok", f"{row_id}: {row}"
        assert isinstance(row["value"], float | int) and math.isfinite(row["value"]), row
        assert f"| {row_id} |" in table
    for row_id in SKIPPED:
        assert rows[row_id]["status"] == "SKIP" and rows[row_id]["detail"], rows[row_id]
    for batch in (2, 4):  # the CPU step is far slower than the loader: fed from num_workers 0
        assert rows[f"d.starved.b{batch}"]["status"] in ("ok", "WARN")
        assert rows[f"d.starved.cache.b{batch}"]["status"] in ("ok", "WARN")
    # The loader rows measure the launcher's input path (auto: the worker mode on the CPU).
    assert "dataset.augment_on=worker" in rows["d.loader.nw1"]["detail"]
    assert not [row for row in rows.values() if row["status"] == "FAIL"], table
    # The uninterrupted and the killed-and-resumed CPU runs end with the same weights.
    assert rows["c.kill"]["value"] == 2 and rows["c.resume"]["value"] == 0.0
    # The killed run's DataLoader worker outlives it; the rerun waits until it is gone.
    assert "1 worker process(es) of it gone" in rows["c.kill"]["detail"]
    assert 0.0 <= rows["b.bf16-mixed.f1"]["value"] <= 1.0
    # Every step wrote its status; none was cut by the time budget.
    for step in ("d_step", "d_loader", "b_bf16-mixed", "c_straight", "c_killed", "c_rerun"):
        assert rows[f"wall.{step}"]["status"] == "ok", rows[f"wall.{step}"]
    assert rows["wall.a_bench"]["status"] == "ok"

    # $OUT receives at most 8 files: the table, its rows, the logs, a tarball of run files.
    files = sorted(p.name for p in returned.iterdir())
    assert files == [
        "gpu_check.json",
        "gpu_check.md",
        "gpu_check_files.tar.gz",
        "gpu_check_logs.txt",
    ]
    assert (returned / "gpu_check.md").read_text() == table
    with tarfile.open(returned / "gpu_check_files.tar.gz") as tar:
        names = tar.getnames()
    assert "runs/c_resumed/metrics.json" in names
    assert not [n for n in names if n.endswith(".ckpt")]
    assert "===== c_killed.log" in (returned / "gpu_check_logs.txt").read_text()
