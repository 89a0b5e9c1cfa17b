"""src/distributed.py: how a failed job ends its process inside a SLURM step of several ranks
(the end-to-end case, srun ending the other rank, is tests/cluster/test_launchers.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.launcher_helpers import ROOT

# What Hydra does with a job's exception: it becomes the job's result, and the process (submitit's
# task) ends normally.
JOB = """
from src.distributed import failure_ends_slurm_step
try:
    with failure_ends_slurm_step():
        raise RuntimeError("rank failed")
except RuntimeError:
    print("result saved", flush=True)
"""


@pytest.mark.parametrize(
    ("executor", "tasks", "code"),
    [("slurm", "2", 1), ("slurm", "1", 0), ("local", "2", 0)],
)
def test_a_failed_job_exits_1_only_in_a_slurm_step_of_several_ranks(
    executor: str, tasks: str, code: int
) -> None:
    env = {**os.environ, "SUBMITIT_EXECUTOR": executor, "SLURM_NTASKS": tasks}
    env["SLURM_KILL_BAD_EXIT"] = "1"
    proc = subprocess.run(
        [sys.executable, "-c", JOB], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == "result saved\n"  # the exit comes after what the job wrote
