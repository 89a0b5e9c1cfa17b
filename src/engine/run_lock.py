"""One run per run directory: an OS file lock held for the run's lifetime.

Two processes in one run dir (the same run_name) would mix their checkpoints, config.yaml and
logs. The first process of a run (global rank 0) takes an exclusive POSIX lock (``lockf``) on
``<run dir>/.lock`` and writes its pid, host and start time into it; the other ranks of the same
run do not lock. A second run is refused with the holder's pid and host. The OS releases the lock
when the holder exits or is killed (kill -9 included), so a stale lock never blocks a resume.
``lockf`` rather than ``flock``: a flock is shared with forked children, and DataLoader workers
outlive a killed main process by seconds, which would refuse an immediate resume.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from src.config import ConfigError
from src.run_dir import LOCK_FILE


class RunDirLock:
    """``with RunDirLock(run_dir):`` the run's lifetime."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> RunDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EAGAIN):
                os.close(fd)
                raise
            holder = _read_holder(fd)
            os.close(fd)
            raise ConfigError(
                f"{self.path.parent} is in use by another run (pid {holder.get('pid', '?')} on "
                f"host {holder.get('host', '?')}, since {holder.get('since', '?')}): two runs in "
                "one run dir would mix their checkpoints and logs. Wait for it, stop it, or use "
                "another run_name (evaluate its checkpoints from another run dir with load_from=)"
            ) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> dict[str, object]:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
