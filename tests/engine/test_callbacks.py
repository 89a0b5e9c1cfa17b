"""Callbacks: the hook points in order (a recording callback), early stopping (and a resumed run
that had stopped does not train on), keeping the last N periodic checkpoints."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from src.engine.callbacks import EarlyStopping, KeepLastCheckpoints
from tests.launcher_helpers import run_main, tiny_run

RECORD_ENV = "SRLANE_TEST_RECORD"


class Recorder:
    """Writes one line per hook call (hook, step, what it got) to $SRLANE_TEST_RECORD."""

    def _write(self, hook: str, runner: object, detail: str = "") -> None:
        with open(os.environ[RECORD_ENV], "a") as f:
            f.write(f"{hook} {runner.state.step} {detail}".rstrip() + "\n")

    def on_train_start(self, runner: object) -> None:
        self._write("train_start", runner)

    def on_optimizer_step(self, runner: object) -> None:
        self._write("optimizer_step", runner)

    def on_validation_end(self, runner: object, metrics: dict) -> None:
        self._write("validation_end", runner, f"F1={'F1' in metrics}")

    def on_checkpoint_saved(self, runner: object, path: Path) -> None:
        self._write("checkpoint_saved", runner, Path(path).name)

    def on_train_end(self, runner: object) -> None:
        self._write("train_end", runner)


@pytest.mark.slow
def test_a_recording_callback_sees_every_hook_in_order(tiny_root: Path, tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    run_dir = tmp_path / "run"
    args = [
        *tiny_run(tiny_root, total_iter=4),
        "trainer.eval_every_iters=2",
        "+callbacks.recorder._target_=tests.engine.test_callbacks.Recorder",
        f"hydra.run.dir={run_dir}",
    ]
    run_main(args, env={RECORD_ENV: str(record)})
    assert record.read_text().splitlines() == [
        "train_start 0",
        "optimizer_step 1",
        "optimizer_step 2",
        "checkpoint_saved 2 best.ckpt",  # the first validation is the best so far
        "validation_end 2 F1=True",
        "checkpoint_saved 2 last.ckpt",  # written after the validation of the same step
        "optimizer_step 3",
        "optimizer_step 4",
        *(["checkpoint_saved 4 best.ckpt"] if _best_step(run_dir) == 4 else []),
        "validation_end 4 F1=True",
        "checkpoint_saved 4 last.ckpt",  # the final checkpoint: not written twice
        "train_end 4",
    ]


def _best_step(run_dir: Path) -> int:
    return json.loads((run_dir / "metrics.json").read_text())["best_step"]


@pytest.mark.slow
def test_early_stopping_stops_and_a_resumed_run_does_not_train_on(
    tiny_root: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    args = [
        *tiny_run(tiny_root, total_iter=20),
        "trainer.eval_every_iters=2",
        "trainer.checkpoint_every_iters=4",
        "callbacks=early_stopping",
        # Only an improvement of more than 1.0 F1 counts: every validation after the first
        # is a bad one, so patience=2 stops at the third validation (iteration 6).
        "callbacks.early_stopping.patience=2",
        "callbacks.early_stopping.min_delta=1.0",
        f"hydra.run.dir={run_dir}",
    ]
    result = run_main(args)
    assert "training stopped at iteration 6: early stopping" in result.stderr + result.stdout
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["final_step"] == 6
    last = run_dir / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    assert saved["train_state"]["step"] == 6 and saved["train_state"]["stop_reason"]
    before = saved["model"]

    again = run_main(args)  # the same command: resumes, and does not train on
    assert "not training on: early stopping" in again.stderr + again.stdout
    after = torch.load(last, weights_only=True)
    assert after["train_state"]["step"] == 6
    assert all(torch.equal(before[k], after["model"][k]) for k in before)


def test_early_stopping_counts_validations_without_improvement() -> None:
    stops: list[str] = []
    runner = SimpleNamespace(request_stop=stops.append)
    callback = EarlyStopping(monitor="F1", patience=2, min_delta=0.01)
    for value in (0.5, 0.6, 0.605, 0.62, 0.62, 0.615):
        callback.on_validation_end(runner, {"F1": value})
    # 0.605 and 0.62 (second) do not beat the best by more than 0.01: the counter is reset by
    # 0.62 (first), so only the last two validations count and patience 2 is reached there.
    assert len(stops) == 1 and "did not improve on 0.6200" in stops[0]
    restored = EarlyStopping(patience=2)
    restored.load_state_dict(callback.state_dict())
    assert restored.best == 0.62 and restored.bad_validations == 2
    with pytest.raises(KeyError, match="monitor='mAP'"):
        EarlyStopping(monitor="mAP").on_validation_end(runner, {"F1": 0.5})


def fake_runner(step: int) -> SimpleNamespace:
    return SimpleNamespace(
        state=SimpleNamespace(step=step), fabric=SimpleNamespace(is_global_zero=True)
    )


def save_last(directory: Path, step: int, callback: KeepLastCheckpoints) -> None:
    """What the runner does: write last.ckpt atomically, then tell the callbacks."""
    tmp = directory / "last.ckpt.tmp"
    tmp.write_bytes(f"weights of step {step}".encode())
    os.replace(tmp, directory / "last.ckpt")
    callback.on_checkpoint_saved(fake_runner(step), directory / "last.ckpt")


def test_keep_last_n_periodic_checkpoints(tmp_path: Path) -> None:
    (tmp_path / "best.ckpt").write_bytes(b"best")
    callback = KeepLastCheckpoints(keep=3)
    for step in range(2, 14, 2):
        save_last(tmp_path, step, callback)
    callback.on_checkpoint_saved(fake_runner(14), tmp_path / "best.ckpt")  # not periodic
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "best.ckpt",
        "iter_000008.ckpt",
        "iter_000010.ckpt",
        "iter_000012.ckpt",
        "last.ckpt",
    ]
    assert (tmp_path / "iter_000008.ckpt").read_bytes() == b"weights of step 8"
    assert (tmp_path / "best.ckpt").read_bytes() == b"best"


def test_keep_last_n_loses_nothing_when_deleting_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    callback = KeepLastCheckpoints(keep=2)
    for step in (1, 2):
        save_last(tmp_path, step, callback)
    real_unlink = Path.unlink

    def crash(self: Path, missing_ok: bool = False) -> None:
        if self.suffix == ".ckpt" and self.name.startswith("iter_"):  # an old checkpoint
            raise OSError("killed while deleting")
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", crash)
    with pytest.raises(OSError, match="killed while deleting"):
        save_last(tmp_path, 3, callback)
    # The new checkpoint is complete and every older one is still there.
    assert sorted(p.name for p in tmp_path.glob("iter_*")) == [
        "iter_000001.ckpt",
        "iter_000002.ckpt",
        "iter_000003.ckpt",
    ]
    assert (tmp_path / "iter_000003.ckpt").read_bytes() == b"weights of step 3"
    monkeypatch.setattr(Path, "unlink", real_unlink)
    save_last(tmp_path, 4, callback)  # the next save removes what is over the limit
    assert sorted(p.name for p in tmp_path.glob("iter_*")) == [
        "iter_000003.ckpt",
        "iter_000004.ckpt",
    ]
