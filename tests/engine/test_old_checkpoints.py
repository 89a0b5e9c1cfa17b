"""Checkpoints written by an older version of this tool: a run trained by the last commit before
src/ was split into layers (src/optim.py then, src/engine/optim.py now, and other config keys)
resumes exactly with today's code and loads with load_from."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from tests.launcher_helpers import ROOT, run_main, tiny_run

# The last commit before the move into src/engine, src/inference, src/launch, src/sweeps.
BEFORE_LAYERS = "93e2935"
OLD_PARTS = ("src", "conf", "hydra_plugins")
# Runs the old tree's src.main: this project's editable install maps `src` and `hydra_plugins`
# to today's checkout for any module the old tree lacks, which would mix the two versions.
RUN_OLD_MAIN = (
    "import runpy, sys; "
    "sys.meta_path[:] = [f for f in sys.meta_path if 'Editable' not in str(f)]; "
    "runpy.run_module('src.main', run_name='__main__', alter_sys=True)"
)


def checkout(commit: str, into: Path) -> Path:
    """The tree of ``commit`` (its src/ and conf/), unpacked into ``into``."""
    archive = into / "tree.tar"
    try:
        subprocess.run(
            ["git", "-C", str(ROOT), "archive", "-o", str(archive), commit, *OLD_PARTS],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"no git history with commit {commit} here: {err}")
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


@pytest.mark.slow
def test_an_older_versions_checkpoint_resumes_exactly_and_loads(
    tiny_root: Path, tmp_path: Path
) -> None:
    old_tree = checkout(BEFORE_LAYERS, tmp_path)
    old_run = tmp_path / "old_run"
    run = [*tiny_run(tiny_root, total_iter=6), "callbacks=keep_last"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    old = [sys.executable, "-c", RUN_OLD_MAIN, *run, f"hydra.run.dir={old_run}"]
    result = subprocess.run(old, cwd=old_tree, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    old_final = weights(old_run / "checkpoints" / "last.ckpt")

    # Today's code continues the old run from its iteration-4 checkpoint to the same end.
    new_run = tmp_path / "new_run"
    middle = old_run / "checkpoints" / "iter_000004.ckpt"
    result = run_main([*run, f"hydra.run.dir={new_run}", f"resume={middle}"])
    assert "resumed from" in result.stdout + result.stderr
    new_final = weights(new_run / "checkpoints" / "last.ckpt")
    assert new_final.keys() == old_final.keys()
    assert all(torch.equal(new_final[k], old_final[k]) for k in old_final)

    # load_from reads the old checkpoint's weights into a fresh evaluation.
    result = run_main(
        [
            *tiny_run(tiny_root),
            "mode=validate",
            f"load_from={old_run / 'checkpoints' / 'best.ckpt'}",
        ]
        + [f"hydra.run.dir={tmp_path / 'validate'}"]
    )
    assert "validate: " in result.stdout + result.stderr
