"""Real SLURM clusters (scripts/slurm_local.sh) for the tests in this folder.

The session fixture `slurm_cluster` starts a single-node cluster unless it already runs, and
stops it at the end of the session only if it started it; `slurm_two_nodes` does the same for a
two-node cluster (tests/cluster/test_multinode.py), a second instance beside the first with its
own state dir and ports (the single-node tests check exactly one node; each starts in seconds).
They skip only where a cluster cannot be had: not root, or the packages are missing and apt
cannot fetch them. SLURM_LOCAL_DIR / SLURM_LOCAL_PORT_BASE move the single-node cluster (default
/tmp/srlane-slurm, 16817); SLURM_LOCAL_2NODE_DIR / SLURM_LOCAL_2NODE_PORT_BASE the two-node one
(default: that dir + "-2node", that port + 3000).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "slurm_local.sh"
STATE_DIR = Path(os.environ.get("SLURM_LOCAL_DIR", "/tmp/srlane-slurm"))
PORT_BASE = int(os.environ.get("SLURM_LOCAL_PORT_BASE", "16817"))
TWO_NODE_DIR = Path(os.environ.get("SLURM_LOCAL_2NODE_DIR", f"{STATE_DIR}-2node"))
TWO_NODE_PORT_BASE = int(os.environ.get("SLURM_LOCAL_2NODE_PORT_BASE", str(PORT_BASE + 3000)))
PARTITION = "local"
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")
# Exit code of slurm_local.sh when packages are missing and apt cannot fetch them.
EXIT_NO_PACKAGES = 4
FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")


@dataclass(frozen=True)
class SlurmCluster:
    """Handle on the running cluster: its environment and a few client helpers."""

    state_dir: Path
    env: dict[str, str]  # os.environ plus SLURM_CONF
    partition: str = PARTITION

    def run(self, *args: str, timeout: float = 30) -> str:
        """Runs a SLURM client command against this cluster; returns stdout, raises on error."""
        proc = subprocess.run(
            list(args), env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc.stdout

    def sbatch(self, script: str, *options: str, workdir: Path) -> str:
        """Submits a bash batch script and returns the job id."""
        path = workdir / f"job{time.monotonic_ns()}.sh"
        path.write_text("#!/bin/bash\nset -eu\n" + script + "\n")
        out = self.run(
            "sbatch",
            "--parsable",
            f"--partition={self.partition}",
            f"--chdir={workdir}",
            f"--output={workdir}/slurm-%j.out",
            *options,
            str(path),
        )
        return out.strip().split(";")[0]

    def sacct(self, job_id: str) -> tuple[str, str] | None:
        """(State, ExitCode) of the job allocation as accounting records it, or None if absent."""
        out = self.run("sacct", "-j", job_id, "-X", "-n", "-P", "-o", "State,ExitCode")
        lines = [line for line in out.splitlines() if line.strip()]
        if not lines:
            return None
        state, exit_code = lines[-1].split("|")
        return state.split()[0], exit_code  # "CANCELLED by 0" -> "CANCELLED"

    def wait_state(self, job_id: str, states: Iterable[str], timeout: float = 30) -> str:
        """Polls sacct (it lags the controller by 1-2 s) until the job is in one of `states`."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            record = self.sacct(job_id)
            seen = record[0] if record else None
            if seen in wanted:
                return seen
            if seen in FINAL_STATES:
                break  # final and not the one wanted: no point waiting
            time.sleep(0.2)
        raise AssertionError(f"job {job_id}: state {seen}, expected one of {sorted(wanted)}")

    def wait_final(self, job_ids: Iterable[str], timeout: float = 60) -> dict[str, str]:
        """Polls sacct until every job's allocation is in a final state (accounting lags: a job
        whose results are on disk can still show RUNNING); returns {raw job id: state}.
        JobIDRaw: submitit submits array jobs, whose JobID reads <array id>_<task>."""
        wanted = list(job_ids)
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while True:
            out = self.run(
                "sacct", "-j", ",".join(wanted), "-X", "-n", "-P", "-o", "JobIDRaw,State"
            )
            states = {}
            for line in out.splitlines():
                if "|" in line:
                    raw, state = line.split("|", 1)
                    states[raw.strip()] = state.split()[0] if state.strip() else ""
            if all(states.get(job) in FINAL_STATES for job in wanted):
                return {job: states[job] for job in wanted}
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"jobs {wanted} not all in a final state after {timeout} s: {states}"
                )
            time.sleep(0.5)

    def poll_sacct(
        self, args: Iterable[str], until: Callable[[str], bool], timeout: float = 60
    ) -> str:
        """``sacct <args>`` again until its output satisfies ``until`` (accounting lags the
        controller: a job whose results are on disk can still show RUNNING), for at most
        ``timeout`` s; returns the last output either way."""
        deadline = time.monotonic() + timeout
        out = self.run("sacct", *args)
        while not until(out) and time.monotonic() < deadline:
            time.sleep(0.5)
            out = self.run("sacct", *args)
        return out

    def cancel(self, *job_ids: str) -> None:
        if job_ids:
            subprocess.run(["scancel", *job_ids], env=self.env, capture_output=True, timeout=30)

    def daemon_pids(self) -> dict[str, int]:
        """Pids of the daemons slurm_local.sh started, from its pid files."""
        pids = {}
        for name in DAEMONS:
            pid_file = self.state_dir / "run" / f"{name}.pid"
            if pid_file.exists():
                pids[name] = int(pid_file.read_text().strip())
        return pids


def run_slurm_local(
    command: str, timeout: float, state_dir: Path, port_base: int, nodes: int
) -> subprocess.CompletedProcess[str]:
    """slurm_local.sh COMMAND for the cluster in ``state_dir`` (whatever this shell exports)."""
    env = {
        **os.environ,
        "SLURM_LOCAL_DIR": str(state_dir),
        "SLURM_LOCAL_PORT_BASE": str(port_base),
        "SLURM_LOCAL_NODES": str(nodes),
    }
    return subprocess.run(
        [str(SCRIPT), command], capture_output=True, text=True, timeout=timeout, env=env
    )


def _cluster(state_dir: Path, port_base: int, nodes: int) -> Iterator[SlurmCluster]:
    """The body of a session fixture: the cluster in ``state_dir`` (started unless running,
    stopped at the end if started here)."""
    if os.geteuid() != 0:
        pytest.skip("SLURM cluster tests need root (slurm_local.sh runs slurmd/slurmctld as root)")
    started = False
    if run_slurm_local("status", 30, state_dir, port_base, nodes).returncode != 0:
        # First start may apt-get install the packages (apt lock wait up to 600 s).
        proc = run_slurm_local("start", 900, state_dir, port_base, nodes)
        output = proc.stdout + proc.stderr
        if proc.returncode == EXIT_NO_PACKAGES:
            pytest.skip(f"SLURM packages missing and apt cannot fetch them:\n{output}")
        if proc.returncode != 0:
            pytest.fail(f"slurm_local.sh start failed ({proc.returncode}):\n{output}")
        started = True
    env = dict(os.environ)
    env["SLURM_CONF"] = str(state_dir / "slurm.conf")
    try:
        yield SlurmCluster(state_dir=state_dir, env=env)
    finally:
        if started:
            proc = run_slurm_local("stop", 120, state_dir, port_base, nodes)
            assert proc.returncode == 0, f"slurm_local.sh stop failed:\n{proc.stderr}"


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    yield from _cluster(STATE_DIR, PORT_BASE, nodes=1)


@pytest.fixture(scope="session")
def slurm_two_nodes() -> Iterator[SlurmCluster]:
    """Nodes srlane-node1 and srlane-node2 (two slurmd), partition `local` holding both."""
    yield from _cluster(TWO_NODE_DIR, TWO_NODE_PORT_BASE, nodes=2)


@pytest.fixture
def slurm_env(slurm_cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> SlurmCluster:
    """The cluster, with SLURM_CONF exported in this process (submitit calls sbatch/sacct)."""
    monkeypatch.setenv("SLURM_CONF", slurm_cluster.env["SLURM_CONF"])
    return slurm_cluster
