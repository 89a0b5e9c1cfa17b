"""Metric loggers: the CSV log keeps earlier rows on resume, TensorBoard writes events, and wandb
runs offline (never blocking) without an API key."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
from lightning.fabric.loggers import Logger
from lightning.fabric.utilities.rank_zero import rank_zero_only

from src.engine.build import instantiate
from src.engine.loggers import (
    CSVMetricsLogger,
    WandbLoginError,
    close_loggers,
    resolve_wandb_mode,
)
from tests.launcher_helpers import compose_cfg


def make_logger(name: str, run_dir: Path, *overrides: str) -> Logger:
    """The logger ``logger=<name>`` builds for a run in ``run_dir`` (src/engine/build.py)."""
    cfg = compose_cfg(f"logger={name}", *overrides)
    return instantiate(cfg.logger, run_dir=run_dir, resume_step=None)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_rows_and_growing_columns(tmp_path: Path) -> None:
    logger = CSVMetricsLogger(tmp_path)
    logger.log_metrics({"train/loss": 2.0}, step=1)
    logger.log_metrics({"train/loss": 1.0, "val/F1": 0.5}, step=2)
    rows = read_rows(tmp_path / "metrics.csv")
    assert [r["step"] for r in rows] == ["1", "2"]
    assert rows[0]["val/F1"] == "" and rows[1]["val/F1"] == "0.5"


def test_csv_resume_keeps_rows_up_to_the_checkpoint(tmp_path: Path) -> None:
    first = CSVMetricsLogger(tmp_path)
    for step in range(1, 7):
        first.log_metrics({"train/loss": float(step)}, step=step)
    # The run resumes from a checkpoint of step 4: rows 5 and 6 are logged again.
    resumed = CSVMetricsLogger(tmp_path, resume_step=4)
    resumed.log_metrics({"train/loss": 50.0}, step=5)
    rows = read_rows(tmp_path / "metrics.csv")
    assert [(r["step"], r["train/loss"]) for r in rows] == [
        ("1", "1.0"),
        ("2", "2.0"),
        ("3", "3.0"),
        ("4", "4.0"),
        ("5", "50.0"),
    ]


def test_csv_resume_leaves_the_file_to_rank_zero_after_the_ranks_met(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every rank builds the logger of a resumed run before the ranks meet: building it must
    not write (two ranks rewriting metrics.csv at once raced), and rank 1 never writes."""
    first = CSVMetricsLogger(tmp_path)
    for step in range(1, 7):
        first.log_metrics({"train/loss": float(step)}, step=step)
    before = (tmp_path / "metrics.csv").read_bytes()
    resumed = [CSVMetricsLogger(tmp_path, resume_step=4) for _rank in (0, 1)]
    assert (tmp_path / "metrics.csv").read_bytes() == before
    assert not (tmp_path / "metrics.csv.tmp").exists()
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    resumed[1].log_metrics({"train/loss": 50.0}, step=5)
    assert (tmp_path / "metrics.csv").read_bytes() == before
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    resumed[0].log_metrics({"train/loss": 50.0}, step=5)
    assert [r["step"] for r in read_rows(tmp_path / "metrics.csv")] == ["1", "2", "3", "4", "5"]


def test_tensorboard_writes_events(tmp_path: Path) -> None:
    logger = make_logger("tensorboard", tmp_path)
    logger.log_metrics({"train/loss": 1.0}, step=1)
    logger.finalize("success")
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_wandb_without_api_key_goes_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert resolve_wandb_mode("auto") == "offline"
    assert resolve_wandb_mode("online") == "online"
    logger = make_logger("wandb", tmp_path)
    logger.log_metrics({"train/loss": 1.0}, step=1)
    close_loggers([logger], "success")
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


def test_csv_appends_rows_and_rewrites_only_for_new_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = CSVMetricsLogger(tmp_path)
    rewrites = []
    rewrite = logger._rewrite
    monkeypatch.setattr(logger, "_rewrite", lambda: (rewrites.append(1), rewrite()))
    for step in range(1, 101):
        logger.log_metrics({"train/loss": float(step)}, step=step)
    logger.log_metrics({"val/F1": 0.5}, step=100)
    logger.log_metrics({"train/loss": 0.5}, step=101)
    assert len(rewrites) == 2  # the first row and the first validation row
    rows = read_rows(tmp_path / "metrics.csv")
    assert len(rows) == 102 and rows[100]["val/F1"] == "0.5" and rows[101]["train/loss"] == "0.5"


def test_csv_resume_drops_a_row_cut_short_by_a_crash(tmp_path: Path) -> None:
    first = CSVMetricsLogger(tmp_path)
    for step in range(1, 4):
        first.log_metrics({"train/loss": float(step), "train/lr": 0.1}, step=step)
    with open(tmp_path / "metrics.csv", "a") as f:
        f.write("1")  # killed in the middle of appending a row of step 1x
    resumed = CSVMetricsLogger(tmp_path, resume_step=3)
    resumed.log_metrics({"train/loss": 4.0, "train/lr": 0.1}, step=4)
    assert [r["step"] for r in read_rows(tmp_path / "metrics.csv")] == ["1", "2", "3", "4"]


@pytest.fixture()
def refusing_wandb_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A wandb server on 127.0.0.1 that refuses every API key (HTTP 401)."""
    import http.server
    import threading

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = b'{"errors": [{"message": "unauthorized"}]}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    yield
    server.shutdown()


def test_wandb_online_with_bad_credentials_fails_before_training(
    tmp_path: Path, refusing_wandb_server: None
) -> None:
    start = time.monotonic()
    with pytest.raises(WandbLoginError, match="wandb_mode=online but the wandb login failed"):
        make_logger("wandb", tmp_path, "logger.wandb_mode=online")
    assert time.monotonic() - start < 30


def test_wandb_auto_with_bad_credentials_logs_offline(
    tmp_path: Path, refusing_wandb_server: None
) -> None:
    logger = make_logger("wandb", tmp_path, "logger.wandb_mode=auto")
    logger.log_metrics({"train/loss": 1.0}, step=1)
    close_loggers([logger], "success")
    assert list((tmp_path / "wandb").glob("offline-run-*"))
