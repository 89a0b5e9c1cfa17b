"""The project's Optuna sweeper (hydra_plugins/srlane_optuna_sweeper) and the job's side of it
(src/launch/optuna_trial.py).

Fast tests: the search space from the override grammar, storage strings, pruner specs, the
pruning callback, and how each way a job can end reaches the study (a fake launcher runs the
"jobs" in this process). Slow tests: real searches on the tiny synthetic set with Hydra's basic
launcher, submitit local (two trials at a time, then continued) and a SQLite storage.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hydra_plugins.srlane_optuna_sweeper import study as shared
from hydra_plugins.srlane_optuna_sweeper._search import OptunaSearch, SweepFailedError
from hydra_plugins.srlane_optuna_sweeper._search_space import build_search_space
from src.launch.optuna_trial import OptunaPruning, run_trial
from tests.launcher_helpers import run_main, tiny_run

optuna.logging.set_verbosity(optuna.logging.WARNING)


# ------------------------------------------------------------------------- search space
def test_search_space_from_config_and_command_line() -> None:
    space = build_search_space(
        {
            "optimizer.lr": "tag(log, interval(1e-4, 3e-3))",
            "optimizer.weight_decay": "interval(0.0, 0.05)",
            "scheduler.warmup_iters": "choice(25, 50, 100)",
            "model.num_groups": "range(2, 9, 2)",
        },
        ["scheduler.warmup_iters=2", "model.hidden_dim=tag(int, interval(32, 64))", "seed=0,1"],
    )
    assert space.distributions == {
        "optimizer.lr": FloatDistribution(1e-4, 3e-3, log=True),
        "optimizer.weight_decay": FloatDistribution(0.0, 0.05),
        "model.num_groups": IntDistribution(2, 8, step=2),
        "model.hidden_dim": IntDistribution(32, 64),
        "seed": CategoricalDistribution([0, 1]),
    }
    # A plain value on the command line fixes a searched key.
    assert space.fixed == ["scheduler.warmup_iters=2"]
    params = {"optimizer.lr": 1e-3, "seed": 1, "model.num_groups": 4}
    assert space.searched(params) == ["optimizer.lr=0.001", "seed=1", "model.num_groups=4"]


def test_choices_that_optuna_cannot_store_travel_as_override_strings() -> None:
    space = build_search_space(
        {"model.angle_map_size": "choice([4,10],[8,20])", "model.backbone": "choice(a b, c)"}, []
    )
    assert space.distributions["model.angle_map_size"] == CategoricalDistribution(
        ["[4,10]", "[8,20]"]
    )
    overrides = space.searched({"model.angle_map_size": "[8,20]", "model.backbone": "a b"})
    assert overrides == ["model.angle_map_size=[8,20]", "model.backbone=a\\ b"]


def test_glob_sweeps_are_refused_with_a_hint() -> None:
    with pytest.raises(ValueError, match="choice"):
        build_search_space({}, ["model=glob(*)"])


def test_storage_strings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    sweep = Path("multirun/x")
    assert shared.resolve_storage(None, sweep) == str(tmp_path / "multirun/x/optuna.journal")
    assert shared.resolve_storage("sqlite:///s.db", sweep) == f"sqlite:///{tmp_path}/s.db"
    assert shared.resolve_storage("sqlite:////abs/s.db", sweep) == "sqlite:////abs/s.db"
    assert shared.resolve_storage("j.log", sweep) == str(tmp_path / "j.log")
    assert shared.resolve_storage("postgresql://u@h/db", sweep) == "postgresql://u@h/db"


def test_pruner_specs() -> None:
    assert shared.pruner_spec(None) == {"_target_": "optuna.pruners.NopPruner"}
    assert shared.pruner_spec("median") == {"_target_": "optuna.pruners.MedianPruner"}
    spec = {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 2}
    assert isinstance(shared.make_pruner(spec), optuna.pruners.MedianPruner)
    with pytest.raises(ValueError, match="short pruner name"):
        shared.pruner_spec("medain")


# ------------------------------------------------------------------- the job's side
def journal_study(tmp_path: Path, pruner: dict[str, Any] | None = None) -> tuple[str, Any]:
    storage = str(tmp_path / "optuna.journal")
    study = optuna.create_study(
        study_name="s", storage=shared.open_storage(storage), direction="maximize"
    )
    study.set_user_attr(shared.PRUNER, shared.pruner_spec(pruner))
    return storage, study


class FakeRunner:
    """What OptunaPruning uses of the runner, on one rank of a job."""

    def __init__(self, step: int, rank0: bool = True, broadcast: Any = None) -> None:
        self.state = SimpleNamespace(step=step)
        self.stops: list[str] = []
        self.fabric = SimpleNamespace(
            is_global_zero=rank0,
            # rank 0 sends its own decision; another rank receives rank 0's
            broadcast=lambda obj, src=0: obj if rank0 else broadcast,
        )

    def request_stop(self, reason: str) -> None:
        self.stops.append(reason)


def test_pruning_callback_reports_and_stops_when_pruned(tmp_path: Path) -> None:
    storage, study = journal_study(
        tmp_path, {"_target_": "optuna.pruners.ThresholdPruner", "lower": 0.5}
    )
    trial = study.ask()
    callback = OptunaPruning(OmegaConf.create({"storage": storage, "study_name": "s", "trial": 0}))
    runner = FakeRunner(step=2)
    callback.on_validation_end(runner, {"F1": 0.8})
    assert runner.stops == []
    runner.state.step = 4
    callback.on_validation_end(runner, {"F1": 0.2})
    assert runner.stops and "pruned" in runner.stops[0]
    frozen = study.trials[trial.number]
    assert frozen.intermediate_values == {2: 0.8, 4: 0.2}
    assert frozen.user_attrs[shared.PRUNED_AT] == 4


def test_other_ranks_follow_rank_0_without_the_storage(tmp_path: Path) -> None:
    missing = tmp_path / "never" / "opened.journal"
    callback = OptunaPruning(
        OmegaConf.create({"storage": str(missing), "study_name": "s", "trial": 0})
    )
    runner = FakeRunner(step=4, rank0=False, broadcast=True)
    callback.on_validation_end(runner, {"F1": 0.2})
    assert runner.stops  # stops with rank 0, at the same step
    assert not missing.parent.exists()


def test_a_storage_error_never_fails_the_training(tmp_path: Path) -> None:
    callback = OptunaPruning(
        OmegaConf.create({"storage": str(tmp_path / "j"), "study_name": "none", "trial": 0})
    )
    runner = FakeRunner(step=2)
    callback.on_validation_end(runner, {"F1": 0.2})  # the study does not exist: logged
    assert runner.stops == []


# ------------------------------------------------------ outcomes through a fake launcher
def job_return(status: JobStatus, value: Any) -> JobReturn:
    ret = JobReturn(overrides=[], status=status)
    ret.return_value = value
    return ret


class FakeLauncher:
    """Runs each trial's "job" in the calling thread: ``behave(x, sweep cfg, trial number)``
    records on the trial as the real job does and returns a JobReturn, or raises as submitit
    does for a job killed on the cluster."""

    def __init__(self, behave: Any) -> None:
        self.behave = behave

    def launch(self, job_overrides: list[list[str]], initial_job_idx: int) -> list[JobReturn]:
        (overrides,) = job_overrides
        values = dict(o.split("=", 1) for o in overrides)
        sweep = OmegaConf.create(
            {
                "storage": values["sweep.storage"].strip("'"),
                "study_name": values["sweep.study_name"].strip("'"),
                "trial": int(values["sweep.trial"]),
            }
        )
        assert sweep.trial == initial_job_idx  # job dirs are numbered by trial
        return [self.behave(values.get("x"), sweep)]


def job(x: str, sweep: Any) -> JobReturn:
    """One way for a job to end per value of x."""
    if x == "killed":
        raise RuntimeError("submitit: job 12 has state CANCELLED")

    def train() -> float:
        if x == "raise":
            raise ValueError("boom")
        if x == "prune":
            OptunaPruning(sweep).on_validation_end(FakeRunner(step=2), {"F1": 0.1})
        return {"ok": 0.5, "notfinite": math.nan, "prune": 0.1, "killed_after_result": 0.7}[x]

    try:
        value = run_trial(sweep, Path("/runs") / str(sweep.trial), train)
    except ValueError as err:
        return job_return(JobStatus.FAILED, err)
    if x == "killed_after_result":
        raise RuntimeError("submitit: job 13 has state CANCELLED")
    return job_return(JobStatus.COMPLETED, value)


def search(tmp_path: Path, launcher: Any, **settings: Any) -> OptunaSearch:
    defaults = {
        "direction": "maximize",
        "study_name": "s",
        "storage": None,
        "n_trials": 6,
        "n_jobs": 2,
        "max_failure_rate": 1.0,
        "sampler": {"_target_": "optuna.samplers.GridSampler", "seed": 0},
        "pruner": {"_target_": "optuna.pruners.ThresholdPruner", "lower": 0.5},
        "params": {"x": "choice(ok, notfinite, raise, killed, killed_after_result, prune)"},
    }
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}})
    return OptunaSearch({**defaults, **settings}, config, launcher, lambda overrides: None)


def trials_by_x(sweep_dir: Path) -> dict[str, Any]:
    return {t.params["x"]: t for t in shared.load_sweep_study(sweep_dir).trials}


def test_each_way_a_job_ends_reaches_the_study(tmp_path: Path) -> None:
    search(tmp_path, FakeLauncher(job)).run([])
    trials = trials_by_x(tmp_path / "sweep")
    states = {x: t.state for x, t in trials.items()}
    assert states == {
        "ok": TrialState.COMPLETE,
        "notfinite": TrialState.FAIL,
        "raise": TrialState.FAIL,
        "killed": TrialState.FAIL,
        "killed_after_result": TrialState.COMPLETE,  # read from the trial: the return was lost
        "prune": TrialState.PRUNED,
    }
    assert trials["ok"].value == 0.5 and trials["killed_after_result"].value == 0.7
    assert trials["prune"].value == 0.1  # its last reported value
    reasons = {x: t.user_attrs.get(shared.FAIL_REASON, "") for x, t in trials.items()}
    assert "not a finite number" in reasons["notfinite"]
    assert reasons["raise"] == "ValueError: boom"
    assert "without a result" in reasons["killed"] and "CANCELLED" in reasons["killed"]
    assert trials["ok"].user_attrs[shared.RUN_DIR] == f"/runs/{trials['ok'].number}"
    results = OmegaConf.load(tmp_path / "sweep" / shared.RESULTS_FILE)
    assert results.best_params == {"x": "killed_after_result"}


def test_too_many_failures_stop_the_sweep(tmp_path: Path) -> None:
    fails = search(
        tmp_path,
        FakeLauncher(job),
        n_trials=4,
        n_jobs=1,
        max_failure_rate=0.25,  # 1 of 4 may fail
        sampler={"_target_": "optuna.samplers.RandomSampler", "seed": 0},
        params={"x": "choice(raise)"},
    )
    with pytest.raises(SweepFailedError, match="max_failure_rate=0.25") as error:
        fails.run([])
    assert "ValueError: boom" in str(error.value)
    study = shared.load_sweep_study(tmp_path / "sweep")
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]


def test_a_rerun_continues_the_study_and_gives_interrupted_slots_back(tmp_path: Path) -> None:
    ok = {"sampler": {"_target_": "optuna.samplers.RandomSampler"}, "params": {"x": "ok,prune"}}
    search(tmp_path, FakeLauncher(job), n_trials=2, **ok).run([])
    study = shared.load_sweep_study(tmp_path / "sweep")
    study.ask()  # a trial whose sweep was killed: RUNNING forever
    search(tmp_path, FakeLauncher(job), n_trials=3, **ok).run([])
    trials = shared.load_sweep_study(tmp_path / "sweep").trials
    assert len(trials) == 4  # 2 + the interrupted one + 1 more for n_trials=3
    assert trials[2].state == TrialState.FAIL and trials[2].user_attrs[shared.INTERRUPTED]
    assert "interrupted" in trials[2].user_attrs[shared.FAIL_REASON]
    assert trials[3].state != TrialState.FAIL
    search(tmp_path, FakeLauncher(job), n_trials=3, **ok).run([])  # done: runs nothing
    assert len(shared.load_sweep_study(tmp_path / "sweep").trials) == 4


def test_one_sweep_dir_holds_one_study(tmp_path: Path) -> None:
    ok = {"n_trials": 1, "params": {"x": "ok,prune"}}
    search(tmp_path, FakeLauncher(job), **ok).run([])
    with pytest.raises(ValueError, match="already holds study 's'"):
        search(tmp_path, FakeLauncher(job), study_name="other", **ok).run([])


# ------------------------------------------------------------------------- real searches
# GRID: TuSimple's F1 of a model that predicts no lane is 0.667 (FP 0, FN 1), and the tiny runs'
# first predictions score far lower (0.19-0.22). So on 6-iteration runs a confidence threshold
# of 0.99 (no lane ever passes it) keeps 0.667 at every validation, while the default 0.4 drops
# under 0.5 at iteration 2 (lr 3e-3) or 4 (lr 1e-3); lr 1e30 makes the loss non-finite at
# iteration 3. A ThresholdPruner(lower=0.5) then prunes the same trials whatever their order,
# and GridSampler runs each of the 6 combinations once.
GRID = {"model.conf_threshold": "choice(0.99, 0.4)", "optimizer.lr": "choice(1e-3, 3e-3, 1e30)"}
TOTAL_ITER = 6


def search_args(
    tmp_path: Path,
    tiny_root: Path,
    params: dict[str, str],
    n_trials: int,
    total_iter: int = TOTAL_ITER,
    lower: float = 0.5,
) -> list[str]:
    """A GridSampler search over ``params`` with ThresholdPruner(lower), validating every 2
    iterations of tiny runs: its YAML in a config dir of its own, and the command line."""
    search_dir = tmp_path / "conf" / "hparams_search"
    search_dir.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"      {key}: {value}\n" for key, value in params.items())
    (search_dir / "grid_prune.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n  - override /hydra/sweeper: srlane_optuna\n"
        "hydra:\n  sweeper:\n"
        f"    n_trials: {n_trials}\n"
        "    sampler: {_target_: optuna.samplers.GridSampler, seed: 0}\n"
        f"    pruner: {{_target_: optuna.pruners.ThresholdPruner, lower: {lower}}}\n"
        f"    params:\n{lines}"
    )
    tiny = [a for a in tiny_run(tiny_root, total_iter) if a.split("=")[0] not in params]
    return [
        "--multirun",
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        "hparams_search=grid_prune",
        *tiny,
        "trainer.eval_every_iters=2",
    ]


def iterations_run(job_dir: Path) -> int:
    """The last training iteration the job logged (metrics.csv; a non-finite one is not)."""
    with open(job_dir / "metrics.csv") as f:
        return max(int(row["step"]) for row in csv.DictReader(f) if row.get("train/loss"))


EXPECTED = {
    (0.99, 1e-3): TrialState.COMPLETE,
    (0.99, 3e-3): TrialState.COMPLETE,
    (0.4, 1e-3): TrialState.PRUNED,
    (0.4, 3e-3): TrialState.PRUNED,
    (0.99, 1e30): TrialState.FAIL,
    (0.4, 1e30): TrialState.FAIL,
}


def check_grid_study(sweep: Path, total_iter: int, lrs: tuple[float, ...]) -> dict[str, int]:
    """The states of a grid search over the thresholds and ``lrs``, read back from its
    storage; iterations per state."""
    spec = shared.read_study_file(sweep)
    assert spec is not None and spec["direction"] == "maximize"
    # What a report tool does with optuna_study.json: a journal file path -> JournalStorage.
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(spec["storage"])
    )
    study = optuna.load_study(study_name=spec["study_name"], storage=storage)
    by_params = {
        (t.params["model.conf_threshold"], t.params["optimizer.lr"]): t for t in study.trials
    }
    expected = {key: state for key, state in EXPECTED.items() if key[1] in lrs}
    assert len(study.trials) == len(expected)  # each point of the grid once
    assert {k: t.state for k, t in by_params.items()} == expected
    iterations: dict[str, int] = {}
    for trial in by_params.values():
        job_dir = sweep / str(trial.number)  # job dirs are numbered by trial
        assert trial.user_attrs[shared.RUN_DIR] == str(job_dir)
        ran = iterations_run(job_dir)
        iterations[trial.state.name] = iterations.get(trial.state.name, 0) + ran
        if trial.state == TrialState.FAIL:
            assert "FloatingPointError" in trial.user_attrs[shared.FAIL_REASON]
            assert "non-finite" in trial.user_attrs[shared.FAIL_REASON]
        elif trial.state == TrialState.PRUNED:
            assert ran == trial.user_attrs[shared.PRUNED_AT] <= total_iter
            assert "pruned by the Optuna study" in (job_dir / "main.log").read_text()
            assert (job_dir / "checkpoints" / "last.ckpt").is_file()
        else:
            assert ran == total_iter and trial.value == pytest.approx(2 / 3)
            assert sorted(trial.intermediate_values) == list(range(2, total_iter + 1, 2))
    return iterations


@pytest.mark.slow
def test_pruning_search_with_a_failing_trial(tiny_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    start = time.monotonic()
    run_main([*search_args(tmp_path, tiny_root, GRID, 6), f"hydra.sweep.dir={sweep}"])
    iterations = check_grid_study(sweep, TOTAL_ITER, (1e-3, 3e-3, 1e30))
    # Pruning cut the two pruned trials short: without it they would have run all iterations.
    assert iterations["PRUNED"] < 2 * TOTAL_ITER
    print(f"iterations per state {iterations} in {time.monotonic() - start:.0f} s")


@pytest.mark.slow
def test_two_trials_at_a_time_on_submitit_local_then_continued(
    tiny_root: Path, tmp_path: Path
) -> None:
    """The grid without lr 1e-3 (4 points, each a process of its own), 2 trials, then the same
    command with n_trials=4 continues the study."""
    sweep = tmp_path / "sweep"
    grid = {**GRID, "optimizer.lr": "choice(3e-3, 1e30)"}
    args = [
        *search_args(tmp_path, tiny_root, grid, 2, total_iter=4),
        "hydra/launcher=local",
        "hydra.sweeper.n_jobs=2",
        f"hydra.sweep.dir={sweep}",
    ]
    run_main(args)
    first = shared.load_sweep_study(sweep).trials
    assert len(first) == 2
    # Two in flight: the second trial started before the first one ended.
    assert first[1].datetime_start < first[0].datetime_complete
    run_main([*args, "hydra.sweeper.n_trials=4"])  # the same command, more trials: continues
    check_grid_study(sweep, 4, (3e-3, 1e30))


@pytest.mark.slow
def test_ddp_ranks_stop_together_when_pruned(tiny_root: Path, tmp_path: Path) -> None:
    """A 2-process trial (gloo) under a pruner that prunes at the first validation (F1 is at most
    0.667 < 0.7): rank 0 alone asks the study, both ranks stop at iteration 2. The project's
    search with everything but the pruner fixed on the command line: rank 1 is started from the
    job's task overrides alone (src/launch/processes.py), which a hydra.searchpath would not
    reach."""
    sweep = tmp_path / "sweep"
    run_main(
        [
            "--multirun",
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=1",
            "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:0.7}",
            "optimizer.lr=choice(3e-3)",
            "optimizer.weight_decay=0.01",
            *tiny_run(tiny_root, total_iter=4),
            "trainer.eval_every_iters=2",
            "trainer.strategy=ddp",
            "trainer.devices=2",
            f"hydra.sweep.dir={sweep}",
        ],
        timeout=300,
    )
    (trial,) = shared.load_sweep_study(sweep).trials
    assert trial.state == TrialState.PRUNED and trial.user_attrs[shared.PRUNED_AT] == 2
    for log in ("main.log", "train_ddp_process_1.log"):
        text = (sweep / "0" / log).read_text()
        assert "training stopped at iteration 2: pruned by the Optuna study" in text, log
        assert "iteration 3/4" not in text, log


@pytest.mark.slow
def test_the_project_search_on_a_sqlite_storage(tiny_root: Path, tmp_path: Path) -> None:
    """conf/hparams_search/optuna.yaml as it is (TPE over lr, weight decay, warm-up)."""
    sweep = tmp_path / "sweep"
    db = tmp_path / "studies.db"
    run_main(
        [
            "--multirun",
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=2",
            f"hydra.sweeper.storage=sqlite:///{db}",
            "hydra.sweeper.pruner=median",
            *tiny_run(tiny_root, total_iter=2),
            f"hydra.sweep.dir={sweep}",
        ]
    )
    assert shared.read_study_file(sweep)["storage"] == f"sqlite:///{db}"
    study = optuna.load_study(study_name="srlane", storage=f"sqlite:///{db}")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    # scheduler.warmup_iters, also searched, is fixed by the tiny schedule's override
    assert set(study.best_params) == {"optimizer.lr", "optimizer.weight_decay"}
    result = OmegaConf.load(sweep / shared.RESULTS_FILE)
    assert 0.0 <= result.best_value <= 1.0 and result.states == {"COMPLETE": 2}
    lrs = {OmegaConf.load(sweep / str(t.number) / "config.yaml").optimizer.lr for t in study.trials}
    assert lrs == {t.params["optimizer.lr"] for t in study.trials}
