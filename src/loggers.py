"""Metric loggers for Fabric: CSV (default), TensorBoard, wandb (offline unless it can go online).

All write under the run directory. The CSV logger is this project's own: Lightning's CSVLogger
deletes earlier rows when a run resumes, while this one keeps them (dropping only rows past the
resumed step, which the resumed run logs again), so a resumed run's metrics.csv equals an
uninterrupted run's.
"""

from __future__ import annotations

import csv
import logging
import os
import socket
import threading
from argparse import Namespace
from pathlib import Path
from typing import Any

from lightning.fabric.loggers import Logger, TensorBoardLogger
from lightning.fabric.utilities.rank_zero import rank_zero_only

from src.config import LoggerConfig

log = logging.getLogger(__name__)

METRICS_CSV = "metrics.csv"


class CSVMetricsLogger(Logger):
    """One row per logged step in ``<run_dir>/metrics.csv``. Rows are appended; the file is
    rewritten (atomically) only when a new column appears or a resumed run drops the rows past
    its checkpoint."""

    def __init__(self, run_dir: str | Path, resume_step: int | None = None) -> None:
        super().__init__()
        self.path = Path(run_dir) / METRICS_CSV
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = []
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="") as f:
                # A row cut short by a crash mid-append has missing (None) fields: dropped.
                kept = [
                    r
                    for r in csv.DictReader(f)
                    if None not in r.values() and int(r["step"]) <= resume_step
                ]
            self.rows = [{k: v for k, v in r.items() if v != ""} for r in kept]
            self._rewrite()

    @property
    def name(self) -> str:
        return "csv"

    @property
    def version(self) -> str:
        return ""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
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

    def _rewrite(self) -> None:
        self.columns = ["step"] + sorted({k for row in self.rows for k in row} - {"step"})
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.path)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        pass  # every row is on disk as soon as it is logged


def _wandb_reachable(timeout_s: float = 3.0) -> bool:
    """True when api.wandb.ai answers on 443 within the timeout (DNS included)."""
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection(("api.wandb.ai", 443), timeout=timeout_s).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s + 0.5)  # getaddrinfo has no timeout of its own
    return bool(result and result[0])


def _wandb_has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def wandb_mode(requested: str) -> str:
    """online / offline; ``auto`` goes online only with an API key and a reachable service."""
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_MODE") in ("offline", "disabled", "dryrun"):
        return "offline"
    if _wandb_has_api_key() and _wandb_reachable():
        return "online"
    return "offline"


def build_logger(
    cfg: LoggerConfig, run_dir: Path, run_name: str, resume_step: int | None
) -> Logger:
    if cfg.name == "csv":
        return CSVMetricsLogger(run_dir, resume_step=resume_step)
    if cfg.name == "tensorboard":
        return TensorBoardLogger(root_dir=run_dir, name="tensorboard", version="")
    if cfg.name == "wandb":
        from wandb.integration.lightning.fabric import WandbLogger

        mode = wandb_mode(cfg.wandb_mode)
        if mode == "offline":
            log.info("wandb: offline run under %s/wandb (sync later with `wandb sync`)", run_dir)
        os.environ.setdefault("WANDB_CACHE_DIR", str(run_dir / "wandb" / "cache"))
        # The id is the run name, so a resumed run continues the same wandb run.
        return WandbLogger(
            project=cfg.project,
            entity=cfg.entity,
            name=run_name,
            id=run_name.replace("/", "-"),
            save_dir=str(run_dir),
            offline=mode == "offline",
            resume="allow",
        )
    raise ValueError(f"unknown logger {cfg.name!r}")
