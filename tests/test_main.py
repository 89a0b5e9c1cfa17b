"""The launcher end to end (`python -m src.main`), on a tiny synthetic dataset on the CPU: outputs,
modes, exact resume after SIGKILL, --multirun, 2-process DDP, and the errors raised before any
work is done."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from src.config import ConfigError
from src.data import DatasetError
from src.models.srlane import CheckpointMismatchError
from src.sweeps.records import RESULTS_CSV
from tests.launcher_helpers import ROOT, compose_cfg, run_main, tiny_run


def model_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]


@pytest.mark.slow
def test_train_then_validate_test_and_predict(tiny_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_main([*tiny_run(tiny_root, total_iter=4), f"hydra.run.dir={run_dir}"])
    for name in ("config.yaml", "main.log", "metrics.csv", "metrics.json", "curves.png"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert list((run_dir / "val_images" / "step_000004").glob("*.jpg"))
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["final_step"] == 4 and summary["best_step"] == 4
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and len(rows) == 1 + 4 + 1  # 4 train rows, 1 validation
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["train_state"]["step"] == 4
    assert {"model", "optimizer", "scheduler", "precision", "rng", "config"} <= set(saved)
    assert saved["config"]["trainer"]["total_iter"] == 4

    # validate: this run's best checkpoint on the val split gives the logged best metric.
    run_main([*tiny_run(tiny_root), "mode=validate", f"hydra.run.dir={run_dir}"])
    validated = json.loads((run_dir / "metrics.json").read_text())["validate"]
    assert validated["F1"] == pytest.approx(summary["best_metric"])

    # test: official prediction file, and scoring it with the CLI gives the in-loop numbers.
    run_main([*tiny_run(tiny_root), "mode=test", f"hydra.run.dir={run_dir}"])
    tested = json.loads((run_dir / "metrics.json").read_text())["test"]
    prediction = run_dir / "predictions" / "tusimple_predictions.json"
    assert len(prediction.read_text().splitlines()) == 4
    scored = subprocess.run(
        [
            sys.executable,
            "scripts/evaluate.py",
            "tusimple",
            "--pred",
            str(prediction),
            "--gt",
            str(tiny_root / "test_label.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    for key, value in json.loads(scored.stdout).items():
        assert tested[key] == pytest.approx(value), key

    # predict: a folder of images -> JSON Lines with lanes in original pixels + drawings.
    images = tiny_root / "clips" / "0531"
    run_main(
        [
            *tiny_run(tiny_root),
            "mode=predict",
            f"predict.input={images}",
            f"hydra.run.dir={run_dir}",
        ]
    )
    lines = (run_dir / "predictions" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 6
    record = json.loads(lines[0])
    assert Path(record["image"]).is_file() and len(record["lanes"]) == len(record["scores"])
    assert len(list((run_dir / "predictions").glob("*.jpg"))) == 6


@pytest.mark.slow
def test_sigkill_after_checkpoint_then_same_command_ends_with_same_weights(
    tiny_root: Path, tmp_path: Path
) -> None:
    args = [*tiny_run(tiny_root, total_iter=8), "trainer.eval_every_iters=4"]
    run_main([*args, f"hydra.run.dir={tmp_path / 'straight'}"])

    interrupted = tmp_path / "interrupted"
    command = [sys.executable, "-m", "src.main", *args, f"hydra.run.dir={interrupted}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # kill right after the checkpoint of iteration 6 is written
        if "saved" in line and "last.ckpt at iteration 6" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert (
        torch.load(interrupted / "checkpoints" / "last.ckpt", weights_only=True)["train_state"][
            "step"
        ]
        == 6
    )

    result = run_main([*args, f"hydra.run.dir={interrupted}"])  # the same command again
    assert "resumed from" in result.stdout + result.stderr
    straight = model_state(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    resumed = model_state(interrupted / "checkpoints" / "last.ckpt")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)

    # The metrics log of the resumed run is the uninterrupted run's, row for row.
    def rows(run: Path) -> list[str]:
        lines = (run / "metrics.csv").read_text().splitlines()
        columns = lines[0].split(",")
        keep = [i for i, c in enumerate(columns) if not c.startswith("time/")]
        return [",".join(line.split(",")[i] for i in keep) for line in lines]

    assert rows(tmp_path / "straight") == rows(interrupted)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["srlane", "clrnet"])
def test_multirun_runs_isolated_jobs(tiny_root: Path, tmp_path: Path, model: str) -> None:
    sweep = tmp_path / "multirun"
    run_main(
        [
            "--multirun",
            "optimizer.lr=1e-3,5e-4",
            *tiny_run(tiny_root, total_iter=2),
            f"model={model}",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in jobs] == ["0", "1"]
    lrs = []
    for job in jobs:
        saved = torch.load(job / "checkpoints" / "last.ckpt", weights_only=True)
        assert saved["train_state"]["step"] == 2
        lrs.append(saved["config"]["optimizer"]["lr"])
        assert (job / "metrics.json").is_file()
    assert lrs == [1e-3, 5e-4]
    # The sweep report (the callback in conf/config.yaml) reads either model's runs alike.
    with (sweep / RESULTS_CSV).open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["optimizer.lr"], r["status"]) for r in rows] == [
        ("0.001", "completed"),
        ("0.0005", "completed"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["srlane", "clrnet"])
def test_two_process_ddp_ranks_agree(tiny_root: Path, tmp_path: Path, model: str) -> None:
    run_dir = tmp_path / "ddp"
    args = [
        *tiny_run(tiny_root, total_iter=4),
        f"model={model}",
        "trainer.strategy=ddp",
        "trainer.devices=2",
        f"hydra.run.dir={run_dir}",
    ]
    run_main(args)
    logs = {"rank 0": run_dir / "main.log", "rank 1": run_dir / "train_ddp_process_1.log"}
    reports = {}
    for rank, path in logs.items():
        text = path.read_text().splitlines()
        # the result line (a barely trained model may add a warning about its result)
        lines = [line for line in text if "INFO] - validation at iteration 4:" in line]
        assert len(lines) == 1, rank
        reports[rank] = lines[0].split("validation at iteration 4:")[1]
    assert reports["rank 0"] == reports["rank 1"]
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["config"]["trainer"]["devices"] == 2


@pytest.mark.slow
def test_two_process_ddp_with_device_augmentation_validates_like_one_process(
    tiny_root: Path, tmp_path: Path
) -> None:
    """dataset.augment_on=device (and the decoded cache) under 2-process gloo DDP: both ranks
    augment on their device and report the same validation, which one process scoring the
    saved weights reproduces."""
    run_dir = tmp_path / "ddp_device"
    common = [
        *tiny_run(tiny_root, total_iter=2),
        "dataset.augment_on=device",
        "dataset.decoded_cache=true",
        f"dataset.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={run_dir}",
    ]
    run_main([*common, "trainer.strategy=ddp", "trainer.devices=2"])
    logs = {"rank 0": run_dir / "main.log", "rank 1": run_dir / "train_ddp_process_1.log"}
    reports = {}
    for rank, path in logs.items():
        text = path.read_text()
        assert "dataset.augment_on=device: image augmentation on the device (cpu)" in text, rank
        # The INFO line with the metric (a no-lane result adds a WARNING line with a note).
        lines = [line for line in text.splitlines() if "[INFO] - validation at iteration 2" in line]
        assert len(lines) == 1, rank
        reports[rank] = lines[0].split("validation at iteration 2:")[1]
    assert reports["rank 0"] == reports["rank 1"]
    in_loop = json.loads((run_dir / "metrics.json").read_text())["best_metric"]
    run_main([*common, "mode=validate"])
    assert json.loads((run_dir / "metrics.json").read_text())["validate"]["F1"] == in_loop


# ---------------------------------------------------------------- errors before any work


@pytest.fixture()
def no_model_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the launcher gets as far as building the model."""
    import src.engine.build

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was built before the error")

    monkeypatch.setattr(src.engine.build, "build_model", refuse)


def launch(cfg, run_dir: Path) -> None:
    from src.main import run_job

    run_job(cfg, run_dir)


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (["trainer.accelerator=cpu", "trainer.devices=64"], ConfigError, "64 CPU processes"),
        (
            ["trainer.accelerator=cpu", "trainer.precision=16-mixed"],
            ConfigError,
            "16-mixed needs a CUDA GPU",
        ),
        (["trainer.accelerator=gpu"], ConfigError, "no CUDA GPU is visible"),
        (["load_from=/nonexistent/model.pth"], ConfigError, "load_from=/nonexistent/model.pth"),
        (
            ["trainer.accelerator=cpu", "dataset.batch_size=3", "trainer.devices=2"],
            ConfigError,
            "must be divisible by devices x num_nodes x accumulate_grad_batches = 2",
        ),
        (["mode=test"], ConfigError, "mode=test needs weights"),
        (
            ["trainer.devices=2", "trainer.strategy=ddp", "trainer.sync_batchnorm=true"],
            ConfigError,
            "sync_batchnorm=true needs CUDA GPUs",
        ),
    ],
)
def test_environment_errors_come_before_any_work(
    no_model_built: None, tmp_path: Path, overrides: list[str], error: type, message: str
) -> None:
    if "trainer.accelerator=gpu" in overrides and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(error, match=message):
        launch(compose_cfg("trainer.accelerator=cpu", *overrides), tmp_path)


@pytest.mark.parametrize("dataset", ["tusimple", "culane"])
def test_missing_dataset_root_says_what_to_download(
    no_model_built: None, tmp_path: Path, dataset: str
) -> None:
    cfg = compose_cfg(
        f"dataset={dataset}",
        f"dataset.root={tmp_path / 'absent'}",
        "trainer.accelerator=cpu",
        "dataset.batch_size=8",
    )
    with pytest.raises(DatasetError, match="absent") as info:
        launch(cfg, tmp_path / "run")
    assert "dataset.root" in str(info.value)


def test_load_from_that_does_not_fit_fails_loudly(tiny_root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "other.pth"
    torch.save({"net": {"module.backbone.model.conv1.weight": torch.zeros(3, 3)}}, bad)
    cfg = compose_cfg(*tiny_run(tiny_root), f"load_from={bad}")
    with pytest.raises(CheckpointMismatchError, match="other.pth") as info:
        launch(cfg, tmp_path / "run")
    assert "missing" in str(info.value) and "mis-shaped" in str(info.value)


def test_resume_never_refuses_a_run_with_checkpoints(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    cfg = compose_cfg("trainer.accelerator=cpu", "resume=never")
    with pytest.raises(FileExistsError, match="resume=never"):
        launch(cfg, tmp_path)


def test_run_name_picks_the_run_dir() -> None:
    """The same run_name gives the same run dir, which is what resume=auto continues."""
    cfg = compose_cfg("run_name=r18_a", hydra_config=True)
    assert cfg.hydra.run.dir == "outputs/r18_a"
    assert cfg.hydra.sweep.dir.startswith("multirun/")


def test_runs_started_in_the_same_second_get_their_own_run_dirs() -> None:
    """The default run_name is the start time plus a tag drawn once per process: two processes
    that compose it in the same second get two run dirs."""
    script = (
        "from tests.launcher_helpers import compose_cfg\n"
        "print(compose_cfg(hydra_config=True).hydra.run.dir)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "SLURM_JOB_ID"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    dirs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(d.startswith("outputs/20") for d in dirs), dirs
    tags = [d.rsplit("_", 1)[1] for d in dirs]
    assert tags[0] != tags[1] and dirs[0] != dirs[1]


@pytest.mark.slow
def test_predict_names_or_skips_an_unreadable_image(tiny_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_main([*tiny_run(tiny_root, total_iter=2), f"hydra.run.dir={run_dir}"])
    images = tmp_path / "images"
    images.mkdir()
    for i, source in enumerate(sorted((tiny_root / "clips" / "0531").rglob("*.jpg"))[:2]):
        (images / f"{i}.jpg").write_bytes(source.read_bytes())
    (images / "2.jpg").write_bytes(b"")  # zero bytes
    args = [*tiny_run(tiny_root), "mode=predict", f"predict.input={images}"]
    failed = run_main([*args, f"hydra.run.dir={run_dir}"], check=False)
    assert failed.returncode != 0 and "2.jpg" in failed.stdout + failed.stderr
    run_main([*args, "dataset.skip_unreadable_images=true", f"hydra.run.dir={run_dir}"])
    lines = (run_dir / "predictions" / "predictions.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 3 and "lanes" in records[0] and "lanes" in records[1]
    assert records[2]["image"].endswith("2.jpg") and "empty" in records[2]["skipped"]


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_precision_is_bf16_only_where_the_cpu_computes_it(
    monkeypatch: pytest.MonkeyPatch, native: bool, expected: str
) -> None:
    import src.engine.preflight

    monkeypatch.setattr(src.engine.preflight, "native_bf16", lambda accelerator: native)
    cfg = compose_cfg("trainer.accelerator=cpu")
    assert cfg.trainer.precision == "auto"  # the default recipe's
    src.engine.preflight.resolve_precision(cfg)
    assert cfg.trainer.precision == expected
    cfg = compose_cfg("trainer.accelerator=cpu", "trainer.precision=32-true")
    src.engine.preflight.resolve_precision(cfg)
    assert cfg.trainer.precision == "32-true"  # an explicit value stays
    # int8 runs its fp32 layers without autocast (bf16 around int8 is slower)
    cfg = compose_cfg("trainer.accelerator=cpu", "mode=validate", "evaluation.int8=true")
    src.engine.preflight.resolve_precision(cfg)
    assert cfg.trainer.precision == "32-true"
