"""src/launch/processes.py: how a failed job ends its process inside a submitit SLURM job (the
end-to-end cases, srun ending the other rank and sacct saying FAILED, are in tests/cluster)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import nullcontext

import pytest

from src.launch import processes as distributed
from src.launch.processes import failure_ends_slurm_step
from tests.launcher_helpers import ROOT

SLURM_STEP_OF_TWO = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_NTASKS": "2", "SLURM_KILL_BAD_EXIT": "1"}

# What Hydra does with a job's exception: it becomes the job's result, and the process (submitit's
# task) ends normally.
JOB = """
from src.launch.processes import failure_ends_slurm_step
try:
    with failure_ends_slurm_step():
        raise RuntimeError("rank failed")
except RuntimeError:
    print("result saved", flush=True)
"""


def test_a_failed_rank_of_a_slurm_step_exits_1_after_its_output() -> None:
    env = {**os.environ, **SLURM_STEP_OF_TWO}
    proc = subprocess.run(
        [sys.executable, "-c", JOB], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == "result saved\n"


@pytest.mark.parametrize(
    ("changed", "failing", "exits"),
    [
        ({}, True, True),
        ({"SLURM_NTASKS": "1"}, True, True),  # one rank: sacct must still say FAILED
        ({"SUBMITIT_EXECUTOR": "local"}, True, False),  # no srun
        ({}, False, False),
    ],
)
def test_the_exit_handler_is_set_only_for_a_failed_slurm_job(
    monkeypatch: pytest.MonkeyPatch, changed: dict[str, str], failing: bool, exits: bool
) -> None:
    for name, value in {**SLURM_STEP_OF_TWO, **changed}.items():
        monkeypatch.setenv(name, value)
    registered: list[Callable[[], None]] = []
    monkeypatch.setattr(distributed.atexit, "register", registered.append)
    with pytest.raises(RuntimeError) if failing else nullcontext():
        with failure_ends_slurm_step():
            if failing:
                raise RuntimeError("rank failed")
    assert registered == ([distributed._exit_failed] if exits else [])
