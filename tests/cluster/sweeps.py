"""Helpers for tests that run a sweep on the test cluster (hydra/launcher=slurm): start it, wait
for a line in a job's log, wait for the sweep to end, read a job's id and weights.

A sweep that does not end in time fails its test with what the cluster was doing: the sweep's
output, the tail of every log in the sweep dir, the queue, and the Python stacks of the sweep's
processes (py-spy, from the extra ``test``). A hang in CI is then read from CI's output instead of
being reproduced."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from tests.cluster.conftest import SlurmCluster
from tests.launcher_helpers import ROOT


def slurm_args(cluster: SlurmCluster, sweep: Path, cpus: int = 1) -> list[str]:
    return [
        "--multirun",
        "hydra/launcher=slurm",
        f"hydra.launcher.partition={cluster.partition}",
        f"hydra.launcher.cpus_per_task={cpus}",
        "hydra.launcher.mem_gb=3",
        "hydra.launcher.timeout_min=15",
        f"hydra.sweep.dir={sweep}",
    ]


def start_sweep(cluster: SlurmCluster, args: list[str], log: Path) -> subprocess.Popen:
    env = {**cluster.env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "src.main", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_sweep(
    proc: subprocess.Popen, cluster: SlurmCluster, sweep: Path, log: Path, timeout: float
) -> int:
    """The sweep's exit code. Past ``timeout`` s: the test fails with ``hang_report``, and the
    sweep process and its jobs are stopped (later tests get an idle cluster)."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        report = hang_report(cluster, sweep, log)
        proc.kill()
        proc.wait()
        cluster.cancel(*_job_ids(sweep))
        raise AssertionError(f"the sweep did not end within {timeout} s\n{report}") from None


def hang_report(cluster: SlurmCluster, sweep: Path, log: Path, tail: int = 2000) -> str:
    """What a stuck sweep was doing: the queue, its logs' tails, its processes' stacks."""
    parts = [_command(cluster, "squeue", "-o", "%i %T %r %N")]
    logs = sorted(p for p in sweep.rglob("*") if p.suffix in (".log", ".out", ".err"))
    for path in [log, *(p for p in logs if "wandb" not in p.parts)]:
        if path.is_file():
            parts.append(
                f"--- {path} (last {tail} chars)\n{path.read_text(errors='replace')[-tail:]}"
            )
    parts.append(_stacks(sweep))
    return "\n".join(parts)


def _command(cluster: SlurmCluster, *args: str) -> str:
    try:
        return f"--- {' '.join(args)}\n{cluster.run(*args)}"
    except (RuntimeError, subprocess.TimeoutExpired) as err:
        return f"--- {' '.join(args)} failed: {err}"


def _stacks(sweep: Path) -> str:
    """py-spy dumps of the sweep's processes: the sweep itself (hydra.sweep.dir=<sweep>) and its
    jobs' ranks (submitit's ``_submit <sweep>/.submitit/...``), all on this machine (the test
    cluster's nodes are this machine)."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        return "--- no py-spy on PATH: no stacks (pip install -e '.[test]')"
    pids = subprocess.run(
        ["pgrep", "-f", str(sweep)], capture_output=True, text=True
    ).stdout.split()
    parts = []
    for pid in pids:
        if not _program(pid).startswith("python"):  # srun, the batch script's shell
            continue
        dump = subprocess.run(
            [py_spy, "dump", "--pid", pid], capture_output=True, text=True, timeout=60
        )
        parts.append(f"--- py-spy dump --pid {pid}\n{dump.stdout}{dump.stderr}")
    return "\n".join(parts) or f"--- no process of {sweep} left"


def _program(pid: str) -> str:
    """The file name of the program a process runs ("" when it ended meanwhile)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode().split("/")[-1]
    except OSError:
        return ""


def _job_ids(sweep: Path) -> list[str]:
    """The sweep's SLURM jobs, from submitit's folders (<job id> or <array id>_<task>): a job
    stuck before its ranks met has not written its config.yaml yet."""
    folder = sweep / ".submitit"
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def wait_for_line(
    path: Path, text: str, timeout: float, sweep: subprocess.Popen | None = None
) -> None:
    """Poll ``path`` until it holds ``text``; fail at ``timeout``, or at once when the
    ``sweep`` process has ended (a sweep refused at composition writes no log at all)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and text in path.read_text(errors="ignore"):
            return
        if sweep is not None and sweep.poll() is not None:
            raise AssertionError(f"the sweep ended (exit {sweep.returncode}) before {text!r}")
        time.sleep(0.2)
    raise AssertionError(f"{text!r} did not appear in {path} within {timeout} s")


def job_id(run: Path) -> str:
    """The SLURM job id of a sweep job: its run_name (SLURM_JOB_ID), in the saved config."""
    return str(OmegaConf.load(run / "config.yaml").run_name)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["model"]
