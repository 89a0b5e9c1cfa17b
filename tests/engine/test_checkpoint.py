"""Checkpoint files: atomic replacement (a crash mid-write keeps the previous checkpoint), RNG
state round trip, what resume=auto/never/<path> pick, and the config check before resuming."""

from __future__ import annotations

import errno
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from lightning.fabric import Fabric
from omegaconf import OmegaConf

from src.engine.checkpoint import (
    CheckpointError,
    capture_rng_state,
    config_differences,
    read_checkpoint,
    restore_objects,
    restore_rng_state,
    resume_path,
    save_checkpoint,
)
from tests.launcher_helpers import compose_cfg

ROOT = Path(__file__).resolve().parents[1]


def test_save_and_load_restore_objects(tmp_path: Path) -> None:
    fabric = Fabric(accelerator="cpu", devices=1)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    path = tmp_path / "checkpoints" / "last.ckpt"
    save_checkpoint(fabric, path, {"model": model, "optimizer": optimizer, "step": 7})
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]

    other = torch.nn.Linear(3, 2)
    other_optimizer = torch.optim.AdamW(other.parameters(), lr=0.1)
    state = {"model": other, "optimizer": other_optimizer, "step": 0}
    restore_objects(read_checkpoint(path), state)
    assert state["step"] == 7
    assert torch.equal(other.weight, model.weight)
    assert torch.equal(
        other_optimizer.state_dict()["state"][0]["exp_avg"],
        optimizer.state_dict()["state"][0]["exp_avg"],
    )


CRASHING_WRITER = textwrap.dedent(
    """
    import sys, time, torch
    from pathlib import Path
    from lightning.fabric import Fabric
    import src.engine.checkpoint
    from src.engine.checkpoint import save_checkpoint

    fabric = Fabric(accelerator="cpu", devices=1)
    path = Path(sys.argv[1])
    save_checkpoint(fabric, path, {"step": 1, "weights": torch.zeros(1000)})

    def slow_write(checkpoint, f):  # the second save stalls half way through its file
        f.write(b"PK" + b"\\0" * 4096)
        f.flush()
        print("half written", flush=True)
        time.sleep(600)

    src.engine.checkpoint.torch.save = slow_write
    save_checkpoint(fabric, path, {"step": 2, "weights": torch.ones(1000)})
    """
)


def test_a_crash_during_a_checkpoint_write_keeps_the_previous_one(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WRITER, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "half written"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    saved = torch.load(path, weights_only=True)  # the previous checkpoint, intact
    assert saved["step"] == 1 and torch.equal(saved["weights"], torch.zeros(1000))
    (partial,) = path.parent.glob(".last.ckpt.*.tmp")  # the killed writer's, beside the target
    with pytest.raises(Exception):  # noqa: B017 - any error: the partial file is garbage
        torch.load(partial, weights_only=True)

    # The next save replaces the checkpoint and removes the dead writer's partial file.
    save_checkpoint(Fabric(accelerator="cpu", devices=1), path, {"step": 3})
    assert torch.load(path, weights_only=True)["step"] == 3
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_rng_state_round_trip() -> None:
    state = capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.random(), np.random.rand(), torch.rand(3)  # move on
    restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_rng_state_survives_a_weights_only_load(tmp_path: Path) -> None:
    np.random.rand(5)  # a non-default position and a cached gaussian
    np.random.randn()
    state = capture_rng_state()
    torch.save({"rng": state}, tmp_path / "rng.pt")
    loaded = torch.load(tmp_path / "rng.pt", weights_only=True)["rng"]
    expected = np.random.randn(3)
    restore_rng_state(loaded)
    assert np.array_equal(np.random.randn(3), expected)


def test_resume_path(tmp_path: Path) -> None:
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert resume_path(tmp_path, "auto") is None
    assert resume_path(tmp_path, "never") is None
    last.parent.mkdir()
    last.write_bytes(b"x")
    assert resume_path(tmp_path, "auto") == last
    with pytest.raises(FileExistsError, match="resume=never"):
        resume_path(tmp_path, "never")
    assert resume_path(tmp_path, str(last)) == last
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        resume_path(tmp_path, str(tmp_path / "other.ckpt"))


def test_config_differences_cover_what_defines_training() -> None:
    saved = OmegaConf.to_container(compose_cfg("dataset.root=/a"), resolve=True)
    same_training = compose_cfg(
        "dataset.root=/b", "dataset.num_workers=4", "trainer.progress=false"
    )
    assert config_differences(saved, same_training) == []
    # A checkpoint from before the input-pipeline switches resumes with any of their values.
    newer = compose_cfg(
        "dataset.root=/a", "dataset.augment_on=device", "dataset.decoded_cache=true"
    )
    assert config_differences(saved, newer) == []
    changed = compose_cfg("dataset.root=/a", "optimizer.lr=5e-4", "seed=1")
    assert config_differences(saved, changed) == ["optimizer.lr: 0.001 -> 0.0005", "seed: 0 -> 1"]


def test_a_config_of_an_older_version_compares_by_moved_targets_and_defaults() -> None:
    """Written before src/optim.py moved to src/engine/ and before a key existed: the same
    training, so resumable; a new key set to another value than its default is a difference."""
    cfg = compose_cfg("dataset.root=/a")
    saved = OmegaConf.to_container(cfg, resolve=True)
    saved["scheduler"]["_target_"] = "src.optim.warmup_cosine"
    del saved["dataset"]["augment"]["shear_x"]
    del saved["model"]["z_mean"]
    assert config_differences(saved, cfg) == []
    changed = compose_cfg("dataset.root=/a", "dataset.augment.shear_x=5")
    assert config_differences(saved, changed) == ["dataset.augment.shear_x: 10.0 -> 5.0"]


def test_the_fp16_grad_scaler_state_is_saved_and_restored(tmp_path: Path) -> None:
    """16-mixed training keeps its loss scale in the precision plugin's grad scaler: a resumed
    run must continue with the same scale. Fabric runs 16-mixed on CUDA only, so the plugin is
    built here with a CPU scaler; the checkpoint code is the same."""
    from lightning.fabric.plugins.precision import MixedPrecision

    def plugin(init_scale: float) -> MixedPrecision:
        scaler = torch.amp.GradScaler("cpu", init_scale=init_scale, growth_interval=1)
        return MixedPrecision("16-mixed", "cpu", scaler=scaler)

    trained = plugin(1024.0)
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    for loss in (weight.sum(), weight.sum() * float("inf"), weight.sum()):
        optimizer.zero_grad()
        trained.scaler.scale(loss).backward()
        trained.scaler.step(optimizer)  # skipped for the inf step, which halves the scale
        trained.scaler.update()
    assert trained.scaler.get_scale() == 2048.0

    path = tmp_path / "last.ckpt"
    save_checkpoint(Fabric(accelerator="cpu", devices=1), path, {"precision": trained})
    resumed = plugin(65536.0)
    restore_objects(read_checkpoint(path), {"precision": resumed})
    assert resumed.state_dict() == trained.state_dict()
    assert resumed.scaler.get_scale() == 2048.0


def written_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "last.ckpt"
    model = torch.nn.Linear(64, 64)
    save_checkpoint(Fabric(accelerator="cpu", devices=1), path, {"model": model, "step": 3})
    return path


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncated", "cannot be read as a checkpoint"),
        ("random_bytes", "cannot be read as a checkpoint"),
        ("empty", r"\(0 bytes\) cannot be read as a checkpoint"),
        ("wrong_object", "holds a list, not a checkpoint dict"),
        ("flipped_byte", "is corrupt: its contents do not match the digest"),
    ],
)
def test_a_damaged_checkpoint_is_named_with_what_to_do(
    tmp_path: Path, damage: str, message: str
) -> None:
    path = written_checkpoint(tmp_path)
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "random_bytes":
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "wrong_object":
        torch.save([1, 2, 3], path)
    else:  # one bit of the weights' bytes changes: the zip file still reads
        saved = torch.load(path, weights_only=True)
        weights = saved["model"]["weight"].numpy().tobytes()
        offset = bytes(data).find(weights[:64]) + 1000
        data[offset] ^= 0x01
        path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=message) as info:
        read_checkpoint(path)
    assert str(path) in str(info.value) and "resume=<path>" in str(info.value)


def test_files_from_elsewhere_load_without_a_digest(tmp_path: Path) -> None:
    path = tmp_path / "reference.pth"
    torch.save({"net": {"module.w": torch.ones(2)}}, path)
    assert torch.equal(read_checkpoint(path)["net"]["module.w"], torch.ones(2))
    assert "payload_sha256" not in read_checkpoint(written_checkpoint(tmp_path))


def test_a_failed_write_removes_its_partial_file_and_names_the_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = written_checkpoint(tmp_path)
    before = path.read_bytes()

    def disk_full(obj: object, f: Any) -> None:
        f.write(b"PK" + b"\0" * 4096)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match=r"writing the checkpoint .*last.ckpt failed.*"):
        save_checkpoint(Fabric(accelerator="cpu", devices=1), path, {"step": 4})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no .tmp left
    assert path.read_bytes() == before


def test_checkpoints_are_not_staged_in_tmpdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TMPDIR that cannot take the file (here: one that does not exist) does not matter."""
    import tempfile

    monkeypatch.setenv("TMPDIR", str(tmp_path / "no-such-dir"))
    monkeypatch.setattr(tempfile, "tempdir", None)
    path = written_checkpoint(tmp_path)
    assert read_checkpoint(path)["step"] == 3
