"""The run dir contract: the name of every file a run writes, and the one way files are written.

A run dir is ``outputs/<run_name>/`` (or ``<sweep dir>/<job>/``). Writers: the entry
(src/main.py: config.yaml), the loggers (metrics.csv), checkpoints (checkpoints/*.ckpt), the run
lock (.lock), evaluation (metrics.json, predictions/), export (export/). Readers: resume
(src/engine/checkpoint.py) and the sweep report (src/sweeps/). Both sides import the names from
here, so that a renamed file cannot leave one side behind.

Every file is written through ``write_atomic``: to a temporary file next to its target (never in
$TMPDIR, so a small /tmp cannot fail a write, and the rename stays on one file system), then
renamed over it. A reader never sees half a file, a crash leaves the previous version, and a failed
write removes its partial file instead of leaving it to fill the disk.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

CONFIG_YAML = "config.yaml"
MAIN_LOG = "main.log"
METRICS_CSV = "metrics.csv"
METRICS_JSON = "metrics.json"
LOCK_FILE = ".lock"
CHECKPOINT_DIR = "checkpoints"
LAST_CKPT = "last.ckpt"
BEST_CKPT = "best.ckpt"
CURVES_PNG = "curves.png"
VAL_IMAGES_DIR = "val_images"
PREDICTIONS_DIR = "predictions"
EXPORT_DIR = "export"
# The exception of a failed sweep job (src/sweeps/callback.py writes it, the report reads it).
JOB_ERROR = "job_error.txt"


def rank_log(rank: int) -> str:
    """The log file of DDP rank ``rank`` > 0 (rank 0 logs to main.log)."""
    return f"train_ddp_process_{rank}.log"


def checkpoint_path(run_dir: str | Path, name: str) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / name


def write_atomic(
    path: str | Path,
    content: str | bytes | Callable[[IO[Any]], None],
    fsync: bool = False,
) -> Path:
    """Write ``content`` (text, bytes, or a function that writes into the open binary file) to
    ``path`` atomically. ``fsync``: the data and the rename reach the disk before returning (for
    files a crash must not lose, e.g. checkpoints). The temporary name is unique per call (host,
    pid, random), so two processes writing the same file never share one; what a killed writer
    of this host left is removed here."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_writers_temps(path)
    tmp = path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    try:
        with open(tmp, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a partial file would keep the disk full
        raise
    if fsync:
        _fsync_dir(path.parent)
    return path


_HOST = socket.gethostname().replace(".", "_")


def _remove_dead_writers_temps(path: Path) -> None:
    """Temporary files of ``path`` whose writer, a process of this host, is gone (killed while
    writing): they would hold the disk space of a whole checkpoint forever."""
    prefix = f".{path.name}.{_HOST}."
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = tmp.name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_metrics_json(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / METRICS_JSON
    return json.loads(path.read_text()) if path.is_file() else {}


def update_metrics_json(run_dir: str | Path, entries: dict[str, Any]) -> Path:
    """Merge ``entries`` into the run's metrics.json (the training summary and the validate /
    test results live side by side)."""
    current = read_metrics_json(run_dir)
    current.update(entries)
    return write_atomic(Path(run_dir) / METRICS_JSON, json.dumps(current, indent=2) + "\n")


# Files that every rank writes a part of (predictions of its shard): each rank writes its rows
# with their dataset index, rank 0 merges them in dataset order after a barrier.
def _part_path(directory: Path, name: str, rank: int) -> Path:
    return directory / f".{name}.rank{rank}"


def write_rank_part(directory: Path, name: str, rank: int, rows: Iterable[tuple[int, str]]) -> None:
    """This rank's lines of the file ``name``, each with its dataset index, for merging."""
    text = "".join(f"{index}\t{line}\n" for index, line in rows)
    write_atomic(_part_path(directory, name, rank), text)


def merge_rank_parts(directory: Path, name: str) -> list[str]:
    """Rank 0, after a barrier: every rank's lines of ``name`` in dataset order (the parts are
    removed)."""
    rows = []
    for part in sorted(directory.glob(f".{name}.rank*")):
        for row in part.read_text().splitlines():
            index, line = row.split("\t", 1)
            rows.append((int(index), line))
        part.unlink()
    return [line for _, line in sorted(rows, key=lambda r: r[0])]
