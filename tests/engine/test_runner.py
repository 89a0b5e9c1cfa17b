"""The training loop's guarantees under failure: a checkpoint describes everything that happened
at its step, non-finite weights are never saved or validated, a run killed at any moment and
rerun ends with the uninterrupted run's weights and metric log, Ctrl-C / SIGTERM stop cleanly."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from src.engine.checkpoint import read_checkpoint
from tests.launcher_helpers import ROOT, run_main, tiny_run


def start_main(args: list[str], prelude: str = "") -> subprocess.Popen[str]:
    """``python -m src.main <args>`` (after ``prelude`` code), output merged on a pipe."""
    code = (
        f"import sys\n{prelude}\nfrom src.main import main\n"
        "sys.argv = ['src.main', *sys.argv[1:]]\nmain()\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: SIGKILL takes its workers too
    )


def send(proc: subprocess.Popen[str], sig: int) -> None:
    """SIGKILL: the run and its DataLoader workers, as a node failure would (a worker would keep
    the output pipe open); other signals: the main process, as Ctrl-C or a scheduler would."""
    if sig == signal.SIGKILL:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)


def run_until(
    args: list[str], marker: str, sig: int = signal.SIGKILL, prelude: str = ""
) -> tuple[int, str]:
    """Start a run, send ``sig`` when a line contains ``marker``; (exit code, whole output)."""
    proc = start_main(args, prelude)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if marker in line:
            send(proc, sig)
            break
    rest, _ = proc.communicate(timeout=300)
    return proc.returncode, "".join(lines) + rest


def metric_rows(run: Path) -> list[str]:
    """metrics.csv without the timing columns (they differ between runs)."""
    lines = (run / "metrics.csv").read_text().splitlines()
    keep = [i for i, c in enumerate(lines[0].split(",")) if not c.startswith("time/")]
    return [",".join(line.split(",")[i] for i in keep) for line in lines]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_resume_keeps_the_best_of_a_step_that_both_validates_and_checkpoints(
    tmp_path: Path,
) -> None:
    # The default synthetic set: at iteration 6 the model predicts nothing (TuSimple F1 0.667),
    # at 12 it predicts badly (about 0.1), so the best is at 6, the step whose checkpoint and
    # validation coincide.
    args = [
        "trainer.accelerator=cpu",
        "trainer.precision=32-true",
        "trainer.total_iter=12",
        "trainer.checkpoint_every_iters=6",
        "trainer.eval_every_iters=6",
        "trainer.log_every_iters=6",
        "trainer.limit_val_batches=4",
        "trainer.num_val_images=1",
        "trainer.progress=false",
    ]
    run_main([*args, f"hydra.run.dir={tmp_path / 'straight'}"])
    assert json.loads((tmp_path / "straight" / "metrics.json").read_text())["best_step"] == 6
    killed = tmp_path / "killed"
    run_until([*args, f"hydra.run.dir={killed}"], "best.ckpt at iteration 6")
    run_main([*args, f"hydra.run.dir={killed}"])  # the same command again

    def summary(run: Path) -> tuple[float, int]:
        saved = json.loads((run / "metrics.json").read_text())
        return saved["best_metric"], saved["best_step"]

    assert summary(killed) == summary(tmp_path / "straight")
    best = Path("checkpoints") / "best.ckpt"
    assert same_weights(killed / best, tmp_path / "straight" / best)
    assert metric_rows(killed) == metric_rows(tmp_path / "straight")


@pytest.mark.slow
def test_non_finite_weights_are_never_saved_or_validated(tiny_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [
        *tiny_run(tiny_root, total_iter=12),
        "optimizer.lr=1e6",
        "scheduler.warmup_iters=0",
        "trainer.log_every_iters=5",
        "trainer.eval_every_iters=2",
        "trainer.checkpoint_every_iters=2",
        f"hydra.run.dir={run}",
    ]
    result = run_main(args, check=False)
    for checkpoint in (run / "checkpoints").glob("*.ckpt"):
        model = read_checkpoint(checkpoint)["model"]
        assert all(torch.isfinite(t).all() for t in model.values()), checkpoint
    if (run / "metrics.csv").is_file():
        assert "nan" not in (run / "metrics.csv").read_text().lower()
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "became non-finite" in output and "nothing after it was logged" in output


@pytest.mark.slow
def test_killed_between_the_final_validation_and_its_checkpoint_logs_it_once(
    tiny_root: Path, tmp_path: Path
) -> None:
    args = [*tiny_run(tiny_root, total_iter=8), "trainer.checkpoint_every_iters=4"]
    run_main([*args, f"hydra.run.dir={tmp_path / 'straight'}"])
    killed = tmp_path / "killed"
    run_until([*args, f"hydra.run.dir={killed}"], "validation at iteration 8")
    run_main([*args, f"hydra.run.dir={killed}"])
    rows = metric_rows(killed)
    assert sum(1 for row in rows[1:] if row.split(",")[0] == "8" and row.endswith(",8.0")) == 1
    assert rows == metric_rows(tmp_path / "straight")


@pytest.mark.slow
def test_kill_at_random_moments_then_rerun_gives_the_uninterrupted_run(
    tiny_root: Path, tmp_path: Path
) -> None:
    args = [*tiny_run(tiny_root, total_iter=10), "trainer.eval_every_iters=4"]
    straight = tmp_path / "straight"
    start = time.monotonic()
    run_main([*args, f"hydra.run.dir={straight}"])
    duration = time.monotonic() - start
    for seed in range(3):
        run = tmp_path / f"killed{seed}"
        delay = random.Random(seed).uniform(0.3, 0.9) * duration
        proc = start_main([*args, f"hydra.run.dir={run}"])
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            send(proc, signal.SIGKILL)
            proc.communicate()
        run_main([*args, f"hydra.run.dir={run}"])
        last = Path("checkpoints") / "last.ckpt"
        assert same_weights(run / last, straight / last), seed
        assert metric_rows(run) == metric_rows(straight), seed


SLOW_DISK = """
import time, torch
_save = torch.save
def slow_save(obj, f):
    print("writing a checkpoint", flush=True)
    time.sleep(1.0)
    _save(obj, f)
torch.save = slow_save
"""


@pytest.mark.slow
def test_sigint_during_a_checkpoint_write_finishes_it_then_stops(
    tiny_root: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = [*tiny_run(tiny_root, total_iter=8), f"hydra.run.dir={run}"]
    code, text = run_until(args, "writing a checkpoint", signal.SIGINT, SLOW_DISK)
    assert code == 128 + signal.SIGINT, text[-2000:]
    assert "interrupted (SIGINT) at iteration 2; last checkpoint: iteration 2; rerun" in text
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["train_state"]["step"] == 2
    result = run_main(args)
    assert "resumed from" in result.stdout + result.stderr


@pytest.mark.slow
def test_sigterm_stops_at_the_next_iteration_with_a_message(
    tiny_root: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = [
        *tiny_run(tiny_root, total_iter=40),
        "trainer.checkpoint_every_iters=4",
        f"hydra.run.dir={run}",
    ]
    code, text = run_until(args, "iteration 5/40", signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, text[-2000:]
    assert "interrupted (SIGTERM) at iteration" in text and "last checkpoint: iteration 4" in text
    assert "Traceback" not in text


@pytest.mark.slow
def test_the_same_command_after_a_finished_run_trains_nothing(
    tiny_root: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = [*tiny_run(tiny_root, total_iter=4), f"hydra.run.dir={run}"]
    run_main(args)
    before = read_checkpoint(run / "checkpoints" / "last.ckpt")
    rows = metric_rows(run)
    again = run_main(args)
    assert "resumed from" in again.stdout + again.stderr
    after = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert after["train_state"]["step"] == 4
    assert all(torch.equal(before["model"][k], after["model"][k]) for k in before["model"])
    assert metric_rows(run) == rows
