"""Metric loggers for Fabric: CSV (default), TensorBoard, wandb (offline unless it can go online).

All write under the run directory. The CSV logger is this project's own: Lightning's CSVLogger
deletes earlier rows when a run resumes, while this one keeps them (dropping only rows past the
resumed step, which the resumed run logs again), so a resumed run's metrics.csv equals an
uninterrupted run's.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import socket
import threading
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lightning.fabric.loggers import Logger, TensorBoardLogger
from lightning.fabric.utilities.rank_zero import rank_zero_only

from src.run_dir import METRICS_CSV, write_atomic

log = logging.getLogger(__name__)


class CSVMetricsLogger(Logger):
    """One row per logged step in ``<run_dir>/metrics.csv``. Rows are appended; the file is
    rewritten (atomically) only when a new column appears or a resumed run drops the rows past
    its checkpoint.

    Every rank builds this logger, before the ranks have met; only global rank 0 writes, and it
    is known only once Fabric has set up the ranks. So a resumed run drops the rows past its
    checkpoint at its first log, not here: two ranks rewriting the file at once raced (one's
    rename found the other's temporary file gone), and the rank that failed left the other
    waiting for it at the rendezvous."""

    def __init__(self, run_dir: str | Path, resume_step: int | None = None) -> None:
        super().__init__()
        self.path = Path(run_dir) / METRICS_CSV
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = []
        self._resume_step = resume_step  # rows past it are dropped at the first log

    @property
    def name(self) -> str:
        return "csv"

    @property
    def version(self) -> str:
        return ""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self._resume_step is not None:
            self._keep_rows_until(self._resume_step)
            self._resume_step = None
        row = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        self.rows.append(row)
        if not self.columns or not row.keys() <= set(self.columns):
            self._rewrite()
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns).writerow(row)

    @rank_zero_only
    def log_hyperparams(
        self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any
    ) -> None:
        pass  # the resolved config is saved as config.yaml in the run directory

    def _keep_rows_until(self, step: int) -> None:
        """The rows of the run being resumed, up to its checkpoint's step, as the whole file."""
        if not self.path.is_file():
            return
        with open(self.path, newline="") as f:
            # A row cut short by a crash mid-append has missing (None) fields: dropped.
            kept = [
                r for r in csv.DictReader(f) if None not in r.values() and int(r["step"]) <= step
            ]
        self.rows = [{k: v for k, v in r.items() if v != ""} for r in kept]
        self._rewrite()

    def _rewrite(self) -> None:
        self.columns = ["step"] + sorted({k for row in self.rows for k in row} - {"step"})
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=self.columns)
        writer.writeheader()
        writer.writerows(self.rows)
        write_atomic(self.path, text.getvalue())

    @rank_zero_only
    def finalize(self, status: str) -> None:
        pass  # every row is on disk as soon as it is logged


WANDB_LOGIN_TIMEOUT_S = 30.0


class WandbLoginError(RuntimeError):
    """logger.wandb_mode=online, and the wandb server refused or did not answer the login."""


def _wandb_host() -> str:
    return os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")


def _bounded(fn: Callable[[], Any], timeout_s: float) -> tuple[bool, Any]:
    """(finished, result or exception) of ``fn`` run in a daemon thread for at most
    ``timeout_s`` (name lookups and some clients have no timeout of their own)."""
    result: list[Any] = []

    def call() -> None:
        try:
            result.append(fn())
        except Exception as err:
            result.append(err)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return (bool(result), result[0] if result else None)


def _wandb_reachable(timeout_s: float = 3.0) -> bool:
    """True when the wandb server answers (a TCP connection) within the timeout."""
    url = urlsplit(_wandb_host())
    port = url.port or (443 if url.scheme == "https" else 80)
    finished, result = _bounded(
        lambda: socket.create_connection((url.hostname, port), timeout=timeout_s).close(),
        timeout_s + 0.5,
    )
    return finished and not isinstance(result, Exception)


def _check_wandb_login(requested: str) -> str:
    """Verify the API key with the server before any training (bounded): "online" when it is
    accepted; else "offline" for auto, and an error for an explicit online."""
    import wandb

    finished, result = _bounded(
        lambda: wandb.login(host=_wandb_host(), verify=True, prompt=False), WANDB_LOGIN_TIMEOUT_S
    )
    if finished and not isinstance(result, Exception) and result:
        return "online"
    reason = (
        f"no answer from {_wandb_host()} in {WANDB_LOGIN_TIMEOUT_S:.0f} s"
        if not finished
        else f"{type(result).__name__}: {result}"
        if isinstance(result, Exception)
        else "no API key"
    )
    if requested == "online":
        raise WandbLoginError(
            f"logger.wandb_mode=online but the wandb login failed ({reason}); checked before "
            "training. Fix the API key (WANDB_API_KEY or `wandb login`), or use "
            "logger.wandb_mode=offline (upload later with `wandb sync`)"
        )
    log.warning("wandb login failed (%s): logging offline", reason)
    return "offline"


def _wandb_has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def resolve_wandb_mode(requested: str) -> str:
    """online / offline; ``auto`` goes online only with an API key and a reachable service."""
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_MODE") in ("offline", "disabled", "dryrun"):
        return "offline"
    if _wandb_has_api_key() and _wandb_reachable():
        return "online"
    return "offline"


def tensorboard_logger(run_dir: Path, resume_step: int | None = None) -> Logger:
    """logger=tensorboard: event files under <run dir>/tensorboard."""
    return TensorBoardLogger(root_dir=run_dir, name="tensorboard", version="")


def wandb_logger(
    run_dir: Path,
    resume_step: int | None = None,
    project: str = "srlane",
    entity: str | None = None,
    wandb_mode: str = "auto",
) -> Logger:
    """logger=wandb: online when it can be (``wandb_mode``), else offline files under
    <run dir>/wandb; the wandb run's id is the run dir's name, so a resumed run continues it."""
    from wandb.integration.lightning.fabric import WandbLogger

    mode = resolve_wandb_mode(wandb_mode)
    if mode == "online":
        mode = _check_wandb_login(wandb_mode)
    if mode == "offline":
        log.info("wandb: offline run under %s/wandb (sync later with `wandb sync`)", run_dir)
    os.environ.setdefault("WANDB_CACHE_DIR", str(Path(run_dir) / "wandb" / "cache"))
    name = Path(run_dir).name
    return WandbLogger(
        project=project,
        entity=entity,
        name=name,
        id=name.replace("/", "-"),
        save_dir=str(run_dir),
        offline=mode == "offline",
        resume="allow" if mode == "online" else None,
        # Explicit: after a login attempt wandb's settings no longer follow WANDB_MODE.
        mode=mode,
    )


def close_loggers(loggers: list[Logger], status: str) -> None:
    """End every logger's run. wandb's Fabric logger does not finish its run in ``finalize``:
    without ``finish`` the next job of a multirun would log into this job's wandb run."""
    for logger in loggers:
        logger.finalize(status)
        experiment = getattr(logger, "_experiment", None)  # only when wandb.init has run
        if experiment is not None and hasattr(experiment, "finish"):
            experiment.finish(exit_code=0 if status == "success" else 1)
