"""The sweep report (src/sweeps/report.py, src/sweeps/html.py, scripts/sweep_report.py):
job status, seed groups and the Optuna part on job dirs written here; then real sweeps (a
3 seeds x 2 learning rates grid, a sweep ended by a failed job) and the page in headless
Chromium."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from src.run_dir import JOB_ERROR
from src.sweeps.callback import SweepReportCallback
from src.sweeps.collect import collect
from src.sweeps.records import RESULTS_BY_SEED_CSV, RESULTS_CSV, NotASweepDir
from src.sweeps.report import write_report
from tests.launcher_helpers import ROOT, run_main, tiny_run

SCREENSHOT = Path("/tmp/sweep_report_screenshot.png")


# --------------------------------------------------------------------------- fabricated jobs
def make_job(
    sweep: Path,
    num: int,
    overrides: list[str],
    *,
    best: float | None = None,
    log: str = "",
    val: Sequence[tuple[int, float]] = (),
    old: bool = False,
) -> Path:
    """A job dir as a run leaves it: .hydra files, main.log, metrics.csv (4 training rows and
    the validations ``val``), metrics.json when ``best`` is given (training finished)."""
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": num}}}))
    (job / "main.log").write_text(log)
    rows = [f"{s},{10.0 - s},," for s in range(1, 5)] + [f"{s},,{f1},{s}" for s, f1 in val]
    (job / "metrics.csv").write_text("step,train/loss,val/F1,val_step\n" + "\n".join(rows) + "\n")
    if best is not None:
        summary = {
            "best_metric": best,
            "best_step": 4,
            "final_step": 4,
            "final_validation": {"step": 4.0, "val/F1": best, "val_step": 4.0},
        }
        (job / "metrics.json").write_text(json.dumps(summary))
        (job / "checkpoints").mkdir()
        (job / "checkpoints" / "best.ckpt").write_bytes(b"x")
        (job / "checkpoints" / "last.ckpt").write_bytes(b"x")
    if old:  # written long ago: no longer "recent"
        for path in [job, *job.rglob("*")]:
            os.utime(path, (time.time() - 3600, time.time() - 3600))
    return job


def record(message: str, level: str = "INFO") -> str:
    return f"[2026-11-26 10:00:00,000][src.engine.runner][{level}] - {message}\n"


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def statuses(sweep: Path, ended: bool = False) -> dict[str, tuple[str, str]]:
    return {j.job: (j.status, j.detail) for j in collect(sweep, sweep_ended=ended).jobs}


def test_status_of_finished_failed_and_pruned_jobs(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, ["seed=0"], best=0.5, val=[(4, 0.5)], old=True)
    stopped = record("training stopped at iteration 4: early stopping: val F1 did not improve")
    make_job(sweep, 1, ["seed=1"], best=0.4, log=stopped, old=True)
    trace = (
        record("this trial failed; reporting -1.0 to the sweeper", "ERROR")
        + 'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
        + "src.config.ConfigError: invalid config:\n  - model.backbone='resnet101' is bad\n"
    )
    make_job(sweep, 2, ["seed=2"], log=trace, old=True)
    pruned = record("training stopped at iteration 2: pruned by Optuna at iteration 2")
    make_job(sweep, 3, ["seed=3"], best=0.1, log=pruned, old=True)
    make_job(sweep, 4, ["seed=4"], val=[(2, 0.3)], old=True)  # no result, nothing logged
    found = statuses(sweep)
    assert found["0"] == ("completed", "")
    assert found["1"] == ("completed", "early stopping: val F1 did not improve")
    assert found["2"][0] == "failed"
    assert found["2"][1] == (
        "this trial failed; reporting -1.0 to the sweeper: src.config.ConfigError: invalid "
        "config: - model.backbone='resnet101' is bad"
    )
    assert found["3"] == ("pruned", "pruned by Optuna at iteration 2")
    assert found["4"][0] == "failed" and "no result" in found["4"][1]
    job4 = next(j for j in collect(sweep).jobs if j.job == "4")
    assert job4.metrics["best_F1"] == 0.3 and job4.metrics["final_step"] == 4  # from the csv


def test_a_live_run_lock_is_running_and_a_killed_one_failed(tmp_path: Path) -> None:
    """The run lock of src/engine/run_lock.py held by another process; then that process killed."""
    sweep = tmp_path / "sweep"
    job = make_job(sweep, 0, ["seed=0"], val=[(2, 0.3)], old=True)
    hold = (
        "import sys, time\nfrom pathlib import Path\nfrom src.engine.run_lock import RunDirLock\n"
        "with RunDirLock(Path(sys.argv[1])):\n    print('locked', flush=True)\n    time.sleep(60)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(job)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        status, detail = statuses(sweep, ended=True)["0"]
        assert status == "running" and f"pid {holder.pid}" in detail
    finally:
        holder.kill()
        holder.wait()
    status, detail = statuses(sweep)["0"]
    assert status == "failed" and "without releasing the run lock" in detail


def test_a_starting_job_is_running_until_the_sweep_ends(tmp_path: Path) -> None:
    """No lock taken yet, log just written: running while the sweep runs, failed after."""
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, ["seed=0"], log=record("model: src.models.srlane.SRLane (resnet18)"))
    assert statuses(sweep)["0"] == ("running", "starting (no run lock yet)")
    status, detail = statuses(sweep, ended=True)["0"]
    assert status == "failed" and "the sweep has ended" in detail


def test_jobs_a_basic_sweep_has_not_started(tmp_path: Path) -> None:
    """multirun.yaml lists the grid; jobs without a dir are rows too."""
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, ["seed=0", "optimizer.lr=0.001"], best=0.5, old=True)
    hydra_node = {
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"},
        "overrides": {"task": ["seed=0,1", "optimizer.lr=1e-3"]},
    }
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": hydra_node}))
    jobs = collect(sweep).jobs
    assert [(j.job, j.status) for j in jobs] == [("0", "completed"), ("1", "not started")]
    assert jobs[1].overrides == ["seed=1", "optimizer.lr=0.001"]  # as Hydra writes them


def test_seed_groups_mean_sample_std_and_n(tmp_path: Path) -> None:
    """Groups by the overrides minus seed; only completed jobs count; std blank for n=1."""
    sweep = tmp_path / "sweep"
    values = [0.5, 0.6, 0.8]
    for seed, value in enumerate(values):
        make_job(sweep, seed, [f"seed={seed}", "optimizer.lr=0.001"], best=value, old=True)
    make_job(sweep, 3, ["seed=0", "optimizer.lr=0.0005"], best=0.25, old=True)
    make_job(sweep, 4, ["seed=1", "optimizer.lr=0.0005"], val=[(2, 0.9)], old=True)  # failed
    write_report(sweep, sweep_ended=True)
    groups = read_csv(sweep / RESULTS_BY_SEED_CSV)
    assert [g["optimizer.lr"] for g in groups] == ["0.001", "0.0005"]
    first, second = groups
    assert first["jobs"] == "0 1 2" and first["seeds"] == "0 1 2"
    assert float(first["best_F1_mean"]) == pytest.approx(statistics.fmean(values))
    assert float(first["best_F1_std"]) == pytest.approx(statistics.stdev(values))  # ddof=1
    assert first["best_F1_n"] == "3" and first["statuses"] == "3 completed"
    assert second["best_F1_mean"] == "0.25" and second["best_F1_std"] == ""
    assert second["best_F1_n"] == "1" and second["statuses"] == "1 completed, 1 failed"
    rows = read_csv(sweep / RESULTS_CSV)
    assert [r["status"] for r in rows] == ["completed"] * 4 + ["failed"]
    assert rows[0]["best_ckpt"] == "0/checkpoints/best.ckpt"
    assert rows[0]["seed"] == "0" and rows[0]["optimizer.lr"] == "0.001"


def test_cli_refuses_a_dir_that_is_not_a_sweep(tmp_path: Path) -> None:
    for target in (tmp_path, tmp_path / "missing"):
        result = subprocess.run(
            [sys.executable, "scripts/sweep_report.py", str(target)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2
        assert "is not a" in result.stderr and str(target) in result.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_the_dir_above_sweeps_is_not_a_sweep(tmp_path: Path) -> None:
    """multirun/ holds sweeps: refused (naming them), not merged into one report."""
    make_job(tmp_path / "sweep_a", 0, ["seed=0"], best=0.5)
    (tmp_path / "sweep_a" / "multirun.yaml").write_text("hydra: {}\n")
    with pytest.raises(NotASweepDir, match="sweep dirs below it: .*sweep_a"):
        write_report(tmp_path)
    assert not (tmp_path / RESULTS_CSV).exists()


def test_callback_never_fails_the_sweep(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "nothing")}}})
    with caplog.at_level(logging.WARNING, logger="src.sweeps.callback"):
        SweepReportCallback().on_multirun_end(config)
    assert "sweep report not written" in caplog.text


def test_a_failed_job_records_its_exception_and_the_report(tmp_path: Path) -> None:
    """Hydra's basic sweeper ends at a failed job without on_multirun_end: on_job_end writes
    job_error.txt and the report."""
    sweep = tmp_path / "sweep"
    job = make_job(sweep, 0, ["seed=0"])
    try:
        raise ValueError("bad value\nsecond line")
    except ValueError as err:
        error = err
    config = OmegaConf.create(
        {
            "hydra": {
                "mode": "MULTIRUN",
                "sweep": {"dir": "unused", "subdir": "0"},
                "runtime": {"output_dir": str(job)},
            }
        }
    )
    SweepReportCallback().on_job_end(
        config, JobReturn(status=JobStatus.FAILED, _return_value=error)
    )
    assert (job / JOB_ERROR).read_text().startswith("ValueError: bad value second line\n")
    assert "Traceback" in (job / JOB_ERROR).read_text()
    (row,) = read_csv(sweep / RESULTS_CSV)
    assert (row["status"], row["detail"]) == ("failed", "ValueError: bad value second line")


def test_each_finished_job_refreshes_the_report_single_runs_none(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    job = make_job(sweep, 0, ["seed=0"], best=0.5, old=True)
    done = JobReturn(status=JobStatus.COMPLETED, _return_value=0.5)
    hydra_node = {"sweep": {"dir": "unused", "subdir": "0"}, "runtime": {"output_dir": str(job)}}
    single = OmegaConf.create({"hydra": {**hydra_node, "mode": "RUN"}})
    SweepReportCallback().on_job_end(single, done)
    assert not (sweep / RESULTS_CSV).exists()
    multirun = OmegaConf.create({"hydra": {**hydra_node, "mode": "MULTIRUN"}})
    SweepReportCallback().on_job_end(multirun, done)
    (row,) = read_csv(sweep / RESULTS_CSV)
    assert row["status"] == "completed" and not (job / JOB_ERROR).exists()


# ------------------------------------------------------------------------------------ optuna
def optuna_sweep(tmp_path: Path, storage_kind: str, n_complete: int) -> Path:
    """A sweep dir with an Optuna study (journal file or sqlite URL) of ``n_complete`` completed
    trials, one pruned and one failed, each with its job dir."""
    optuna = pytest.importorskip("optuna", minversion="4")
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    if storage_kind == "journal":
        storage: Any = JournalStorage(JournalFileBackend(str(sweep / "optuna.journal")))
        named = str(sweep / "optuna.journal")
    else:
        storage = named = f"sqlite:///{sweep / 'optuna.db'}"
    study = optuna.create_study(study_name="srlane", storage=storage, direction="maximize")
    states = ["COMPLETE"] * n_complete + ["PRUNED", "FAIL"]
    for num, state in enumerate(states):
        trial = study.ask()
        lr = trial.suggest_float("optimizer.lr", 1e-4, 3e-3, log=True)
        warmup = trial.suggest_categorical("scheduler.warmup_iters", [25, 50, 100])
        overrides = [f"optimizer.lr={lr!r}", f"scheduler.warmup_iters={warmup}"]
        value = 0.5 + 100 * lr
        if state == "COMPLETE":
            make_job(sweep, num, overrides, best=value, old=True)
            study.tell(trial, value)
        elif state == "PRUNED":
            trial.report(0.2, step=2)
            make_job(sweep, num, overrides, val=[(2, 0.2)], old=True)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            make_job(sweep, num, overrides, log=record("boom", "ERROR"), old=True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    spec = {"storage": named, "study_name": "srlane", "direction": "maximize"}
    (sweep / "optuna_study.json").write_text(json.dumps(spec))
    return sweep


@pytest.mark.parametrize("storage_kind", ["journal", "sqlite"])
def test_optuna_history_and_importances(tmp_path: Path, storage_kind: str) -> None:
    sweep = optuna_sweep(tmp_path, storage_kind, n_complete=4)
    write_report(sweep, sweep_ended=True)
    rows = read_csv(sweep / RESULTS_CSV)
    assert [r["status"] for r in rows] == ["completed"] * 4 + ["pruned", "failed"]
    assert [r["optuna_trial"] for r in rows] == ["0", "1", "2", "3", "4", "5"]
    assert [r["optuna_state"] for r in rows][-2:] == ["PRUNED", "FAIL"]
    tables = parse_tables((sweep / "report.html").read_text())
    importances = {row[0] for _, row in tables["importances-table"]}
    assert importances == {"optimizer.lr", "scheduler.warmup_iters"}
    trials = [(row[0], row[1], row[3]) for _, row in tables["trials"]]
    assert trials[-2:] == [("4", "PRUNED", "4"), ("5", "FAIL", "5")]
    html = (sweep / "report.html").read_text()
    assert "<h2>Optuna study</h2>" in html and "6 trials: 4 COMPLETE, 1 PRUNED, 1 FAIL" in html
    assert html.count("data:image/png;base64,") == 3  # curves, history, importances


def test_optuna_importances_need_two_completed_trials(tmp_path: Path) -> None:
    sweep = optuna_sweep(tmp_path, "journal", n_complete=1)
    write_report(sweep)
    html = (sweep / "report.html").read_text()
    assert "need at least 2 completed trials; this study has 1" in html
    assert html.count("data:image/png;base64,") == 2  # curves, history


def test_trials_of_the_project_sweeper_match_by_number(tmp_path: Path) -> None:
    """Jobs carry ``sweep.trial=N`` (hydra_plugins/srlane_optuna_sweeper); n_trials counts the
    study's finished trials, so 5 with 2 finished and 1 running leaves 2 not started."""
    optuna = pytest.importorskip("optuna", minversion="4")
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    journal = sweep / "optuna.journal"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    trials = [study.ask({"optimizer.lr": optuna.distributions.FloatDistribution(0, 1)})]
    trials += [study.ask({"optimizer.lr": optuna.distributions.FloatDistribution(0, 1)})]
    trials += [study.ask({"optimizer.lr": optuna.distributions.FloatDistribution(0, 1)})]
    study.tell(trials[0], 0.4)
    study.tell(trials[1], 0.6)
    for num, trial in zip((1, 0, 2), trials, strict=True):  # job dirs in another order
        lr = trial.params["optimizer.lr"]
        overrides = [f"optimizer.lr={lr!r}", f"sweep.trial={trial.number}"]
        done = trial.number < 2
        make_job(sweep, num, overrides, best=0.4 + 0.2 * trial.number if done else None)
    sweeper = {"_target_": "hydra_plugins.srlane_optuna_sweeper.X.SRLaneOptunaSweeper"}
    node = {"hydra": {"job": {"num": 0}, "sweeper": {**sweeper, "n_trials": 5}}}
    (sweep / "0" / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(node))
    spec = {"storage": str(journal), "study_name": "s", "direction": "maximize"}
    (sweep / "optuna_study.json").write_text(json.dumps(spec))
    rows = {r["job"]: r for r in read_csv(write_report(sweep)[0])}
    assert {j: (r["optuna_trial"], r["status"]) for j, r in rows.items()} == {
        "0": ("1", "completed"),
        "1": ("0", "completed"),
        "2": ("2", "running"),  # no lock yet, log just written
        "3": ("", "not started"),
        "4": ("", "not started"),
    }


def test_an_unreadable_study_is_reported_not_raised(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, ["seed=0"], best=0.5, old=True)
    spec = {"storage": str(sweep / "gone.journal"), "study_name": "s", "direction": "maximize"}
    (sweep / "optuna_study.json").write_text(json.dumps(spec))
    write_report(sweep)
    assert "The study could not be loaded: FileNotFoundError" in (sweep / "report.html").read_text()
    assert not (sweep / "gone.journal").exists()  # not created by opening it


# ------------------------------------------------------------------------------- html tables
class TableParser(HTMLParser):
    """Rows of every <table id=...>: (the <tr> attributes, the cell texts)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[tuple[dict[str, str], list[str]]]] = {}
        self.attrs: dict[str, dict[str, str]] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "table":
            self._table = values.get("id", "")
            self.tables[self._table] = []
            self.attrs[self._table] = values
        elif tag == "tr" and self._table is not None:
            self._row = []
            self.tables[self._table].append((values, self._row))
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse_tables(html: str) -> dict[str, list[tuple[dict[str, str], list[str]]]]:
    parser = TableParser()
    parser.feed(html)
    return {k: [(a, cells) for a, cells in rows if cells] for k, rows in parser.tables.items()}


def table_attrs(html: str) -> dict[str, dict[str, str]]:
    parser = TableParser()
    parser.feed(html)
    return parser.attrs


# --------------------------------------------------------------------------------- real runs
@pytest.fixture(scope="module")
def grid_sweep(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``--multirun seed=0,1,2 optimizer.lr=1e-3,5e-4``: 6 jobs of 4 iterations (about 25 s on
    2 cores); the report is written by the callback in conf/config.yaml."""
    sweep = tmp_path_factory.mktemp("grid") / "sweep"
    run_main(
        [
            "--multirun",
            "seed=0,1,2",
            "optimizer.lr=1e-3,5e-4",
            *tiny_run(tiny_root, total_iter=4),
            f"hydra.sweep.dir={sweep}",
        ]
    )
    return sweep


@pytest.mark.slow
def test_a_grid_sweep_writes_the_report(grid_sweep: Path) -> None:
    rows = read_csv(grid_sweep / RESULTS_CSV)
    assert len(rows) == 6
    assert [(r["seed"], r["optimizer.lr"]) for r in rows] == [
        (s, lr) for s in "012" for lr in ("0.001", "0.0005")
    ]
    for row in rows:
        assert row["status"] == "completed", row
        assert row["best_step"] == row["final_step"] == "4"
        assert 0.0 <= float(row["best_F1"]) <= 1.0
        assert (grid_sweep / row["best_ckpt"]).is_file()
        assert (grid_sweep / row["last_ckpt"]).is_file()
        assert float(row["wall_time_s"]) > 0
    groups = read_csv(grid_sweep / RESULTS_BY_SEED_CSV)
    assert [(g["optimizer.lr"], g["best_F1_n"], g["seeds"]) for g in groups] == [
        ("0.001", "3", "0 1 2"),
        ("0.0005", "3", "0 1 2"),
    ]
    for group in groups:
        members = [float(r["best_F1"]) for r in rows if r["optimizer.lr"] == group["optimizer.lr"]]
        assert float(group["best_F1_mean"]) == pytest.approx(statistics.fmean(members))
        assert float(group["best_F1_std"]) == pytest.approx(statistics.stdev(members))
    tables = parse_tables((grid_sweep / "report.html").read_text())
    assert len(tables["jobs"]) == 6
    assert len(tables["groups"]) == 2
    for _, cells in tables["groups"]:
        assert cells[5] == "3"  # the n column: completed jobs aggregated
        assert cells[6].endswith("n=3")  # best F1: mean ± std n=3


@pytest.mark.slow
def test_a_sweep_ended_by_a_failed_job_is_reported(tiny_root: Path, tmp_path: Path) -> None:
    """Batches of one job: the first job's config is refused, Hydra's basic sweeper raises it
    after that batch (exit 1) and never calls on_multirun_end; the report written after the
    job shows job 0 failed and job 1 not started."""
    sweep = tmp_path / "sweep"
    result = run_main(
        [
            "--multirun",
            "hydra.sweeper.max_batch_size=1",
            "model.backbone=resnet101,resnet18",
            *tiny_run(tiny_root, total_iter=2),
            f"hydra.sweep.dir={sweep}",
        ],
        check=False,
    )
    assert result.returncode != 0
    rows = read_csv(sweep / RESULTS_CSV)
    assert [(r["job"], r["status"], r["model.backbone"]) for r in rows] == [
        ("0", "failed", "resnet101"),
        ("1", "not started", "resnet18"),
    ]
    assert rows[0]["detail"].startswith("src.config.ConfigError: invalid config:")
    assert "resnet101" in rows[0]["detail"]


# ----------------------------------------------------------------------------------- browser
@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt when missing (as root); else the test skips."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip("chromium is missing and installing it (apt-get) needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["apt-get", *args], env=env, capture_output=True, text=True, timeout=900
        )

    install = ("install", "-y", "--no-install-recommends", "chromium")
    try:
        result = apt(*install)
        if result.returncode != 0:  # a stale package list: update it once
            apt("update")
            result = apt(*install)
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"chromium is missing and apt-get could not run: {err}")
    found = shutil.which("chromium")
    if not found:
        pytest.skip(f"chromium could not be installed with apt-get: {result.stderr[-500:]}")
    return found


def headless(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}"]
        + list(args),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", header[16:24])


@pytest.mark.slow
def test_the_page_in_headless_chromium(grid_sweep: Path, chromium: str, tmp_path: Path) -> None:
    """Screenshot of the page from disk, and the DOM after its JS ran: the job table sorted by
    the #sort=-best_F1 of the URL, one row per job."""
    page = (grid_sweep / "report.html").resolve().as_uri()
    shot = tmp_path / "report.png"
    headless(
        chromium, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1400,2000", page
    )
    assert png_size(shot) == (1400, 2000) and shot.stat().st_size > 50_000
    shutil.copyfile(shot, SCREENSHOT)

    dom = headless(chromium, tmp_path / "profile", "--dump-dom", f"{page}#sort=-best_F1").stdout
    assert 'data-sortable-ready="2"' in dom  # the script ran over both tables
    assert table_attrs(dom)["jobs"].get("data-sorted-by") == "best_F1"
    assert table_attrs(dom)["jobs"].get("data-sort-dir") == "desc"
    shown = [attrs["data-job"] for attrs, _ in parse_tables(dom)["jobs"]]
    rows = read_csv(grid_sweep / RESULTS_CSV)
    expected = [r["job"] for r in sorted(rows, key=lambda r: -float(r["best_F1"]))]  # stable
    assert shown == expected and len(shown) == 6
