"""End-to-end checks of the local SLURM cluster: accounting states, requeue, time-limit signals,
submitit round trips and loopback-only daemons. Needs root; see conftest.py."""

from __future__ import annotations

import ipaddress
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import submitit
from submitit.core.utils import UncompletedJobError

from tests.cluster.conftest import PORT_BASE, run_slurm_local

if TYPE_CHECKING:
    from conftest import SlurmCluster

pytestmark = pytest.mark.slow


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def line_count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_batch_job_completes_in_accounting(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    job = slurm_cluster.sbatch(
        'echo "ran on $(hostname) as job $SLURM_JOB_ID" > out.txt', workdir=tmp_path
    )
    assert slurm_cluster.wait_state(job, ["COMPLETED"]) == "COMPLETED"
    assert slurm_cluster.sacct(job) == ("COMPLETED", "0:0")
    assert (tmp_path / "out.txt").read_text().strip().endswith(f"as job {job}")


def test_failing_job_is_failed(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    job = slurm_cluster.sbatch("exit 1", workdir=tmp_path)
    assert slurm_cluster.wait_state(job, ["FAILED"]) == "FAILED"
    assert slurm_cluster.sacct(job) == ("FAILED", "1:0")


def test_scancel_shows_cancelled(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    job = slurm_cluster.sbatch("touch started; sleep 300", workdir=tmp_path)
    try:
        wait_for((tmp_path / "started").exists, 30, f"job {job} to start")
        slurm_cluster.run("scancel", job)
        assert slurm_cluster.wait_state(job, ["CANCELLED"]) == "CANCELLED"
    finally:
        slurm_cluster.cancel(job)


def test_requeue_runs_the_batch_job_again(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    starts = tmp_path / "starts.txt"
    script = 'echo "start ${SLURM_RESTART_COUNT:-0}" >> starts.txt; sleep 300'
    job = slurm_cluster.sbatch(script, "--requeue", workdir=tmp_path)
    try:
        wait_for(lambda: line_count(starts) == 1, 30, f"job {job} to start")
        slurm_cluster.run("scontrol", "requeue", job)
        # A requeued job becomes eligible after AuthInfo cred_expire (10 s in slurm_local.sh).
        wait_for(lambda: line_count(starts) >= 2, 45, f"job {job} to start again")
        assert starts.read_text().splitlines() == ["start 0", "start 1"]
        assert "Restarts=1" in slurm_cluster.run("scontrol", "show", "job", job)
    finally:
        slurm_cluster.cancel(job)


def test_signal_before_time_limit_is_delivered(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    # submitit asks for --signal=USR2@<delay> to checkpoint before the time limit. Time limits
    # are checked every 30 s by slurmctld, so the signal comes within ~30 s of being due.
    script = (
        "trap 'echo USR2 >> signals.txt; exit 0' USR2\n"
        "touch started\n"
        "for i in $(seq 300); do sleep 0.2; done"
    )
    job = slurm_cluster.sbatch(script, "--time=1", "--signal=B:USR2@57", workdir=tmp_path)
    try:
        wait_for((tmp_path / "started").exists, 30, f"job {job} to start")
        wait_for((tmp_path / "signals.txt").exists, 45, f"USR2 before job {job}'s time limit")
        assert slurm_cluster.wait_state(job, ["COMPLETED"]) == "COMPLETED"
    finally:
        slurm_cluster.cancel(job)


def test_submitit_returns_the_result(slurm_env: SlurmCluster, tmp_path: Path) -> None:
    def where_am_i(x: int) -> tuple[int, str, str]:
        import os

        return x * 2, os.environ["SLURM_JOB_ID"], os.environ["SLURM_JOB_PARTITION"]

    executor = submitit.AutoExecutor(folder=tmp_path / "submitit")
    assert executor.cluster == "slurm"
    executor.update_parameters(slurm_partition=slurm_env.partition, timeout_min=5)
    job = executor.submit(where_am_i, 21)
    assert job.result() == (42, job.job_id, slurm_env.partition)
    assert slurm_env.wait_state(job.job_id, ["COMPLETED"]) == "COMPLETED"


def test_submitit_job_cancelled_from_outside_raises(
    slurm_env: SlurmCluster, tmp_path: Path
) -> None:
    def sleep_long() -> str:
        import time

        time.sleep(300)
        return "finished"

    executor = submitit.AutoExecutor(folder=tmp_path / "submitit")
    executor.update_parameters(slurm_partition=slurm_env.partition, timeout_min=10)
    job = executor.submit(sleep_long)
    try:
        slurm_env.wait_state(job.job_id, ["RUNNING"])
        slurm_env.run("scancel", job.job_id)

        # job.result() polls sacct; it must notice the cancelled job and raise, not hang.
        outcome: list[BaseException | object] = []
        waiter = threading.Thread(target=lambda: outcome.append(_result_or_error(job)), daemon=True)
        start = time.monotonic()
        waiter.start()
        waiter.join(timeout=90)
        assert not waiter.is_alive(), "job.result() still waiting 90 s after scancel"
        assert isinstance(outcome[0], UncompletedJobError), outcome[0]
        assert "CANCELLED" in str(outcome[0])
        print(f"job.result() raised {time.monotonic() - start:.1f} s after scancel")
    finally:
        slurm_env.cancel(job.job_id)


def _result_or_error(job: submitit.Job) -> BaseException | object:
    try:
        return job.result()
    except Exception as error:  # the test inspects it
        return error


def _listening_sockets(pid: int) -> list[tuple[str, str, int]]:
    """(protocol, address, port) of the listening TCP / bound UDP sockets held by pid."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        for row in Path(f"/proc/net/{proto}").read_text().splitlines()[1:]:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if inode not in inodes or (proto.startswith("tcp") and state != "0A"):  # 0A: LISTEN
                continue
            addr_hex, port_hex = local.split(":")
            raw = bytes.fromhex(addr_hex)
            # /proc/net stores addresses as 32-bit words in host (little-endian) byte order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.append((proto, str(ipaddress.ip_address(raw)), int(port_hex, 16)))
    return found


def test_daemons_listen_on_loopback_only(slurm_cluster: SlurmCluster) -> None:
    pids = slurm_cluster.daemon_pids()
    assert set(pids) == {"munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd"}
    sockets = {name: _listening_sockets(pid) for name, pid in pids.items()}
    # munged talks over its unix socket only; the others each listen on one TCP port.
    assert sockets["munged"] == []
    for name in ("mariadbd", "slurmdbd", "slurmctld", "slurmd"):
        assert sockets[name], f"{name} has no listening socket"
    for name, entries in sockets.items():
        for proto, address, port in entries:
            assert address == "127.0.0.1", f"{name} listens on {address}:{port} ({proto})"
    ports = sorted(port for entries in sockets.values() for _, _, port in entries)
    assert len(ports) == len(set(ports)) == 4
    assert not {6817, 6818, 6819, 3306} & set(ports), "default SLURM/MySQL ports in use"


def _job_processes(job_id: str, names: set[str]) -> list[int]:
    """Pids of processes called one of `names` whose environment has SLURM_JOB_ID=job_id."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() not in names:
                continue
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue  # exited meanwhile
        if f"SLURM_JOB_ID={job_id}".encode() in environ:
            pids.append(int(proc.name))
    return pids


def test_job_steps_listen_on_loopback_only(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    # srun opens listening sockets for the step's I/O; NoInAddrAny keeps them on loopback too.
    job = slurm_cluster.sbatch("srun bash -c 'touch step_started; sleep 300'", workdir=tmp_path)
    try:
        wait_for((tmp_path / "step_started").exists, 30, f"job {job}'s srun step to start")
        sockets = [s for pid in _job_processes(job, {"srun"}) for s in _listening_sockets(pid)]
        assert sockets, "no listening socket found for srun"
        assert {address for _, address, _ in sockets} == {"127.0.0.1"}, sockets
    finally:
        slurm_cluster.cancel(job)


def test_a_cluster_not_stopped_cleanly_starts_again_empty_and_usable(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """Daemons ended without `slurm_local.sh stop` (a killed CI run, a full disk) leave the
    controller's saved state: here a held job and a drained node. Seen: a node drained by a full
    spool dir kept the next start waiting for it until it failed. The next start cancels the job
    and resumes the node. Runs last in this file: it restarts the session's cluster."""
    node = slurm_cluster.run("sinfo", "-h", "-N", "-o", "%N").split()[0]
    held = slurm_cluster.sbatch("true", "--hold", workdir=tmp_path)
    slurm_cluster.run("scontrol", "update", f"NodeName={node}", "State=DRAIN", "Reason=leftover")
    pids = slurm_cluster.daemon_pids()
    for pid in pids.values():
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids.values()), 60, "exit")

    proc = run_slurm_local("start", 300, slurm_cluster.state_dir, PORT_BASE, nodes=1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cancelled = next(ln for ln in proc.stderr.splitlines() if "cancelling jobs:" in ln).split()
    assert held in cancelled, proc.stderr  # with any job the previous test was still ending
    assert f"resuming nodes an earlier run left drained: {node} (leftover)" in proc.stderr
    assert slurm_cluster.wait_state(held, ["CANCELLED"]) == "CANCELLED"
    job = slurm_cluster.sbatch("true", workdir=tmp_path)
    assert int(job) > int(held)  # job ids go on: no submitit folder is handed an old result
    assert slurm_cluster.wait_state(job, ["COMPLETED"]) == "COMPLETED"
