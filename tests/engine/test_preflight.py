"""Launch checks: a torchrun launch whose layout does not match the config is refused before any
work, saying what to set; ranks that would write into different run dirs are refused."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch.distributed as dist

from src.config import ConfigError
from src.engine.preflight import check_environment
from src.launch.processes import TorchrunLayout, announce_rank, torchrun_layout
from tests.launcher_helpers import compose_cfg

CPU = ("trainer.accelerator=cpu", "dataset.batch_size=8")


def torchrun_env(monkeypatch: pytest.MonkeyPatch, nodes: int, per_node: int) -> None:
    """The variables torchrun sets in a worker of `--nnodes nodes --nproc-per-node per_node`."""
    world = nodes * per_node
    for name, value in {
        "TORCHELASTIC_RUN_ID": "none",
        "WORLD_SIZE": world,
        "LOCAL_WORLD_SIZE": per_node,
        "GROUP_WORLD_SIZE": nodes,
        "ROLE_WORLD_SIZE": world,
        "RANK": 0,
        "LOCAL_RANK": 0,
        "GROUP_RANK": 0,
    }.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)


def test_torchrun_layout_reads_torchrun_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    assert torchrun_layout() is None
    env = {"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"}
    assert torchrun_layout(env) == TorchrunLayout(nodes=2, per_node=4)  # WORLD / LOCAL_WORLD
    assert torchrun_layout({**env, "GROUP_WORLD_SIZE": "2"}) == TorchrunLayout(2, 4)


def test_matching_torchrun_launch_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    torchrun_env(monkeypatch, nodes=2, per_node=1)
    cfg = compose_cfg(*CPU, "trainer.num_nodes=2", "trainer.strategy=ddp", "run_name=r")
    assert check_environment(cfg) == "cpu"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["trainer.num_nodes=1", "trainer.devices=1"],
            "trainer.num_nodes=1 but torchrun runs 2 node(s) (--nnodes 2): set trainer.num_nodes=2",
        ),
        (
            ["trainer.num_nodes=2", "trainer.devices=2"],
            "trainer.devices=2 but torchrun starts 1 process(es) per node (--nproc-per-node 1): "
            "set trainer.devices=1",
        ),
        (
            ["trainer.num_nodes=2", "trainer.strategy=ddp_spawn"],
            "torchrun has started them: use trainer.strategy=ddp",
        ),
    ],
)
def test_torchrun_launch_not_matching_the_config_is_refused(
    monkeypatch: pytest.MonkeyPatch, overrides: list[str], message: str
) -> None:
    torchrun_env(monkeypatch, nodes=2, per_node=1)
    cfg = compose_cfg(*CPU, "run_name=r", *overrides)
    with pytest.raises(ConfigError, match="this torchrun launch does not match") as error:
        check_environment(cfg)
    assert message in str(error.value)


def test_torchrun_without_run_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each process torchrun starts resolves the default run_name itself (time + random tag)."""
    torchrun_env(monkeypatch, nodes=2, per_node=1)
    cfg = compose_cfg(*CPU, "trainer.num_nodes=2")
    with pytest.raises(ConfigError, match="give every node the same run_name=<name>"):
        check_environment(cfg)
    monkeypatch.setenv("SLURM_JOB_ID", "123")  # torchrun inside a SLURM job: the job id
    assert check_environment(cfg) == "cpu"


def test_ranks_that_see_different_run_dirs_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What rank 1 reports is faked: its own default run_name, then a node without the shared
    filesystem (no checkpoint where rank 0 has one)."""
    fabric = SimpleNamespace(global_rank=0, world_size=2, node_rank=0, local_rank=0)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    rank1 = (str(tmp_path / "other"), (("last.ckpt", 1),))

    def gather(found: list[object], mine: object) -> None:
        found[:] = [mine, rank1]

    monkeypatch.setattr(dist, "all_gather_object", gather)
    with pytest.raises(ConfigError, match="every node of a multi-node launch must get the same"):
        announce_rank(fabric, run)  # type: ignore[arg-type]
    rank1 = (str(run.resolve()), ())
    with pytest.raises(ConfigError, match="must share the filesystem that holds outputs/"):
        announce_rank(fabric, run)  # type: ignore[arg-type]
    rank1 = (str(run.resolve()), (("last.ckpt", 1),))  # one run dir, seen alike
    announce_rank(fabric, run)  # type: ignore[arg-type]


def test_several_nodes_without_a_multi_node_launcher_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Started by hand on one machine, every node would take itself for node 0 and wait."""
    for name in ("TORCHELASTIC_RUN_ID", "SLURM_PROCID", "NODE_RANK"):
        monkeypatch.delenv(name, raising=False)
    cfg = compose_cfg(*CPU, "trainer.num_nodes=2", "trainer.strategy=ddp")
    with pytest.raises(ConfigError, match="no multi-node launcher started this process: run it"):
        check_environment(cfg)
    monkeypatch.setenv("SLURM_PROCID", "0")  # a task that srun started
    assert check_environment(cfg) == "cpu"
