"""Checkpoint paths and files a run cannot use, refused before any work with the path named; a
checkpoint write that fails on a full disk leaves no partial file and names the checkpoint.

The full disk is a real 1 MiB tmpfs where this process may mount one (root with CAP_SYS_ADMIN),
and, everywhere, a file object that raises ENOSPC after 1 MiB as the kernel does (torch's zip
writer turns both into its own RuntimeError)."""

from __future__ import annotations

import errno
import io
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.fabric import Fabric

import src.run_dir
from src.engine.checkpoint import (
    CheckpointError,
    check_resume_config,
    read_checkpoint,
    resume_path,
    save_checkpoint,
)
from tests.launcher_helpers import compose_cfg

SMALL_DISK_BYTES = 1 << 20


def _fabric() -> Fabric:
    return Fabric(accelerator="cpu", devices=1)


def _read_start(run_dir: Path, *overrides: str) -> Any:
    """What ``python -m src.main`` reads before building anything (checkpoint.read_start)."""
    from src.engine.checkpoint import read_start

    return read_start(compose_cfg(*overrides), run_dir)


def test_a_last_ckpt_that_is_a_directory_is_refused_before_any_work(tmp_path: Path) -> None:
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.mkdir(parents=True)
    # before: resume=auto started from scratch, trained to its first checkpoint, then failed
    with pytest.raises(CheckpointError, match="is a directory, not a checkpoint file") as info:
        _read_start(tmp_path)
    assert str(last) in str(info.value)


@pytest.mark.parametrize("name", ["best.ckpt", "checkpoints", "metrics.json", "curves.png"])
def test_other_checkpoint_paths_the_run_cannot_write_are_refused(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "checkpoints"
    if name == "checkpoints":
        folder.write_text("a file where the checkpoints folder goes")
        target = folder
    elif name in ("metrics.json", "curves.png"):  # written after training, or its first validation
        target = tmp_path / name
        target.mkdir()
    else:
        target = folder / name
        target.mkdir(parents=True)
    with pytest.raises(CheckpointError) as info:
        resume_path(tmp_path, "auto")
    assert str(target) in str(info.value)


def test_a_dangling_last_ckpt_link_is_refused(tmp_path: Path) -> None:
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.symlink_to(tmp_path / "moved_away.ckpt")
    with pytest.raises(CheckpointError, match="does not exist"):
        resume_path(tmp_path, "auto")


def test_resume_or_load_from_a_directory_names_it(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="resume=.* is a directory"):
        resume_path(tmp_path, str(tmp_path))
    with pytest.raises(CheckpointError, match="is a directory, not a checkpoint file"):
        read_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nothing.ckpt")


def test_a_last_ckpt_holding_a_bare_state_dict_is_named(tmp_path: Path) -> None:
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    torch.save(torch.nn.Linear(3, 2).state_dict(), last)
    # before: resume=auto ended with a raw KeyError: 'config'
    with pytest.raises(CheckpointError, match="not a training checkpoint") as info:
        _read_start(tmp_path)
    message = str(info.value)
    assert str(last) in message and "bare state dict of 2 tensors" in message
    assert "load_from=" in message


def test_reference_weights_are_not_resumed_either(tmp_path: Path) -> None:
    saved = {"net": {"module.w": torch.ones(2)}, "epoch": 3}
    with pytest.raises(CheckpointError, match="keys epoch, net"):
        check_resume_config(tmp_path / "x.pth", saved, {})


# ------------------------------------------------------------------------------ full disk
@pytest.fixture(params=["tmpfs", "injected"])
def small_disk(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A folder on a 1 MiB file system (tmpfs; skipped where this process may not mount one),
    or one whose checkpoint writes hit ENOSPC after 1 MiB (injected)."""
    folder = tmp_path / f"small-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    mounted = False
    if request.param == "tmpfs":
        mount = ["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK_BYTES}", "tmpfs", str(folder)]
        mounted = os.geteuid() == 0 and subprocess.run(mount, capture_output=True).returncode == 0
        if not mounted:
            pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
    else:
        opener = _opener_full_after(SMALL_DISK_BYTES)
        # every run-dir file is written through src.run_dir.write_atomic: shadow its builtin open
        monkeypatch.setattr(src.run_dir, "open", opener, raising=False)
    try:
        yield folder
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)


class _FullDiskFile(io.RawIOBase):
    """A real file that stops taking bytes after ``room`` of them, with ENOSPC."""

    def __init__(self, path: str | Path, room: int) -> None:
        self._file = open(path, "wb")  # noqa: SIM115 - closed with this object
        self._room = room

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        data = bytes(data)
        if len(data) > self._room:
            self._file.write(data[: self._room])
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._file.write(data)

    def fileno(self) -> int:
        return self._file.fileno()

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        super().close()  # flushes first
        self._file.close()


def _opener_full_after(room: int) -> Any:
    def opener(path: str | Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "w" in mode:
            return _FullDiskFile(path, room)
        return open(path, mode, *args, **kwargs)  # noqa: SIM115

    return opener


def _state(floats: int) -> dict[str, Any]:
    return {"step": floats, "weights": torch.ones(floats)}


def test_the_first_checkpoint_failing_on_a_full_disk_names_it(small_disk: Path) -> None:
    path = small_disk / "checkpoints" / "last.ckpt"
    # before: RuntimeError "[enforce fail at inline_container.cc:672] . unexpected pos ..."
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(_fabric(), path, _state(1_000_000))  # 4 MB
    message = str(info.value)
    assert f"writing the checkpoint {path} failed" in message
    assert "no earlier last.ckpt exists" in message and "Free space in" in message
    assert sorted(p.name for p in path.parent.iterdir()) == []  # no partial last.ckpt.tmp


def test_a_later_checkpoint_failing_on_a_full_disk_keeps_the_previous_one(
    small_disk: Path,
) -> None:
    path = small_disk / "checkpoints" / "last.ckpt"
    save_checkpoint(_fabric(), path, _state(1000))
    with pytest.raises(CheckpointError, match="the previous last.ckpt is intact"):
        save_checkpoint(_fabric(), path, _state(1_000_000))
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]
    assert read_checkpoint(path)["step"] == 1000
    save_checkpoint(_fabric(), path, _state(2000))  # room again: the next save works
    assert read_checkpoint(path)["step"] == 2000
