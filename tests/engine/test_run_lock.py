"""One run per run dir: a second run is refused with the holder's pid and host; the lock goes
with its process, kill -9 included."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from src.config import ConfigError
from src.engine.run_lock import LOCK_FILE, RunDirLock
from tests.launcher_helpers import ROOT, run_main, tiny_run

HOLDER = """
import sys, time
from pathlib import Path
from src.engine.run_lock import RunDirLock
with RunDirLock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


def hold_in_another_process(run_dir: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_is_refused_with_the_holders_pid_and_host(tmp_path: Path) -> None:
    holder = hold_in_another_process(tmp_path)
    try:
        with pytest.raises(ConfigError, match=f"pid {holder.pid} on host {socket.gethostname()}"):
            with RunDirLock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_goes_with_a_killed_holder(tmp_path: Path) -> None:
    holder = hold_in_another_process(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / LOCK_FILE).exists()  # the file stays; the OS lock does not
    with RunDirLock(tmp_path):
        pass
    with RunDirLock(tmp_path):  # released at the end of the block
        pass


@pytest.mark.slow
def test_two_launches_in_one_run_dir(tiny_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [*tiny_run(tiny_root, total_iter=200), f"hydra.run.dir={run}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(
        [sys.executable, "-m", "src.main", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        lock = run / LOCK_FILE
        while str(first.pid) not in (lock.read_text() if lock.exists() else ""):
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.2)
        second = run_main(args, check=False)
        assert second.returncode != 0
        assert f"is in use by another run (pid {first.pid}" in second.stdout + second.stderr
        assert first.poll() is None  # the first run goes on
    finally:
        first.kill()
        first.wait()


FORKING_HOLDER = """
import os, sys, time
from pathlib import Path
from src.engine.run_lock import RunDirLock
with RunDirLock(Path(sys.argv[1])):
    if os.fork() == 0:  # like a DataLoader worker: outlives a killed parent for a while
        time.sleep(60)
        os._exit(0)
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_forked_worker_does_not_keep_the_lock_of_a_killed_run(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", FORKING_HOLDER, str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        with RunDirLock(tmp_path):  # the worker still runs; the lock is free
            pass
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
