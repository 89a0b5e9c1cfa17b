"""How a finished run ends: the process exits soon after its last result is written, and a
TuSimple result of a model that predicts no lane (F1 0.667) is marked in metrics.json and in
the sweep report.

The exit: a GPU run took 60-95 s to exit after writing its results. torch before 2.13 joins
every live persistent DataLoader worker at interpreter exit for up to 5 s (handlers registered
when pin_memory is on, i.e. on a GPU; src/data/loader_workers.py), and the launcher's loaders
were still alive then. torch 2.13 on this CPU has no such wait, so the run here goes through a
wrapper that registers the same kind of handler for every persistent worker: a run that leaves
its workers to the interpreter's exit then takes 5 s per worker to exit (4 workers here: 24 s
measured before the fix, under load), one that stops them takes as long as a run without
workers (1-4 s here on the shared 2-core machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from src.sweeps.jobs import read_job, result_notes
from tests.launcher_helpers import ROOT, tiny_run

# Exit seconds allowed after metrics.json's final write: 4 live workers would take >= 20 s.
EXIT_BOUND_S = 12.0
WORKERS = 2  # per loader: training and validation

# torch < 2.13's exit handling of persistent workers under pin_memory, for every persistent
# worker: join it for up to 5 s (it is not told to stop), then terminate it.
OLD_TORCH_EXIT = textwrap.dedent(
    """
    import atexit, runpy, sys
    from torch.utils.data import dataloader

    start_iterator = dataloader._MultiProcessingDataLoaderIter.__init__

    def join_at_exit(worker):
        worker.join(timeout=5)
        if worker.is_alive():
            worker.terminate()

    def started(self, loader):
        start_iterator(self, loader)
        if self._persistent_workers:
            for worker in self._workers:
                atexit.register(join_at_exit, worker)

    dataloader._MultiProcessingDataLoaderIter.__init__ = started
    sys.argv = ["src.main", *sys.argv[1:]]
    runpy.run_module("src.main", run_name="__main__")
    """
)


@pytest.fixture(scope="module")
def finished_run(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 4-iteration training with DataLoader workers and a score threshold no lane reaches
    (so it predicts none), in job dir 0 of a sweep dir; polled for metrics.json's final write
    and for the process's exit."""
    sweep = tmp_path_factory.mktemp("sweep")
    run_dir = sweep / "0"
    args = [
        *tiny_run(tiny_root, total_iter=4),
        "trainer.eval_every_iters=2",  # two validations: the loaders outlive the run (measured)
        f"dataset.num_workers={WORKERS}",
        "model.conf_threshold=1.0",
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", OLD_TORCH_EXIT, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics_json = run_dir / "metrics.json"
    written = None
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        if written is None and metrics_json.is_file() and "final_step" in metrics_json.read_text():
            written = time.time()
        time.sleep(0.05)
    exited = time.time()
    if proc.poll() is None:
        proc.kill()
    stderr = proc.communicate()[1]
    assert proc.returncode == 0, stderr[-3000:]
    return {"sweep": sweep, "run_dir": run_dir, "exit_s": exited - (written or exited)}


@pytest.mark.slow
def test_the_process_exits_soon_after_its_last_result(finished_run: dict) -> None:
    # 25-30 s on the shared 2-core CPU (the run); measured exits after the fix: 1-5 s
    assert finished_run["exit_s"] < EXIT_BOUND_S, (
        f"the run exited {finished_run['exit_s']:.1f} s after writing metrics.json: DataLoader "
        "workers (or something else) still alive at interpreter exit?"
    )


@pytest.mark.slow
def test_a_model_predicting_no_lane_is_marked(finished_run: dict) -> None:
    summary = json.loads((finished_run["run_dir"] / "metrics.json").read_text())
    final = summary["final_validation"]
    assert final["val/F1"] == pytest.approx(2 / 3) and final["val/Accuracy"] == 0.0
    assert final["val/FP"] == 0.0 and final["val/FN"] == 1.0  # the official values, kept
    assert "no predicted lane scored" in final["note"] and "not a lane detector" in final["note"]
    assert summary["best_note"] == final["note"]
    job = read_job(finished_run["sweep"], finished_run["run_dir"], True, time.time())
    assert job.status == "completed" and job.metrics["best_F1"] == pytest.approx(2 / 3)
    assert job.detail.startswith("best (iteration 2): no predicted lane scored")
    assert "; final validation: no predicted lane scored" in job.detail  # iteration 4


def _val_row(step: int, accuracy: float, fp: float, fn: float, f1: float) -> dict[str, float]:
    return {
        "step": float(step),
        "val/Accuracy": accuracy,
        "val/FP": fp,
        "val/FN": fn,
        "val/F1": f1,
        "val_step": float(step),
    }


def test_report_notes_name_which_result_predicts_no_lane() -> None:
    empty, working = _val_row(2, 0.0, 0.0, 1.0, 2 / 3), _val_row(4, 0.9, 0.05, 0.1, 0.92)
    # a run that collapsed after its best validation: only the final one is marked
    notes = result_notes({}, [working, empty], {"best_step": 4.0})
    assert len(notes) == 1 and notes[0].startswith("final validation: no predicted lane")
    # and one whose best is the empty model's 0.667
    notes = result_notes({}, [empty, _val_row(4, 0.3, 0.4, 0.5, 0.55)], {"best_step": 2.0})
    assert len(notes) == 1 and notes[0].startswith("best (iteration 2): no predicted lane")
    test = {"Accuracy": 0.0, "FP": 0.0, "FN": 1.0, "F1": 2 / 3}
    assert result_notes({"test": test}, [], {})[0].startswith("mode=test: no predicted lane")
    assert result_notes({"test": {"F1": 0.7, "Precision": 0.8}}, [], {}) == []  # CULane
    missed = {"Accuracy": 0.2, "FP": 0.5, "FN": 1.0, "F1": 0.4}  # lanes, but never a GT one
    assert "no GT lane found" in result_notes({"validate": missed}, [], {})[0]
