"""Who creates the processes of a multi-process (DDP) job, in every launch path.

- Single run (``python -m src.main trainer.devices=2 ...``): Lightning re-executes the command
  for the other local ranks with ``hydra.run.dir=<same dir>``; nothing to do here.
- ``--multirun`` with Hydra's basic launcher: Lightning's re-execution would re-run the whole
  sweep, so each job starts its other local ranks itself, as single RUN-mode jobs in the job's
  own output directory with the job's own overrides (``start_local_ranks``).
- submitit (``hydra/launcher=slurm`` or ``local``): the launcher starts one task per rank
  (``tasks_per_node = trainer.devices``, ``nodes = trainer.num_nodes``). On SLURM, srun's
  variables are read by Fabric's SLURMEnvironment; submitit_local sets none, so its torch
  distributed environment is exported from submitit's helper.
- torchrun (``torchrun --nnodes N --nproc-per-node D ... -m src.main``), on one node or
  several: torchrun starts every rank as its own ``python -m src.main`` and sets the rank
  variables, read by Fabric's TorchElasticEnvironment; ``torchrun_layout`` gives its node and
  process counts, which src/engine/preflight.py holds against the config.

Every rank of a run works in the same run dir (ranks > 0 log to ``train_ddp_process_<k>.log``
from their first line on); ``announce_rank`` logs where each rank runs and refuses ranks that
disagree on the run dir (the default run_name differs per process: each node of a torchrun
launch needs the same run_name).

Between the jobs of one multirun process, ``finish_job`` destroys the process group, waits for
the ranks it started and clears the environment, so the next job starts clean.

A rank that fails must not leave the others waiting for it (at the rendezvous, or in a
collective) until the process group's timeout: the basic launcher stops the ranks it started,
torchrun stops a failed launch's ranks, and in a submitit SLURM job ``failure_ends_slurm_step``
makes the failed rank exit non-zero, which srun answers by ending the others
(SLURM_KILL_BAD_EXIT=1, set by conf/hydra/launcher/slurm.yaml) and sacct records as FAILED.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.fabric import Fabric
from omegaconf import DictConfig

from src.config import ConfigError
from src.run_dir import CHECKPOINT_DIR, rank_log

log = logging.getLogger(__name__)

# Variables that make Lightning treat a process as one rank of an existing group.
_RANK_VARIABLES = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT")
# Strategies whose extra processes Lightning creates by re-executing the command line.
_REEXEC_STRATEGIES = ("auto", "ddp")


@dataclass
class JobProcesses:
    """Ranks this process started for the current job, and the variables it set."""

    children: list[subprocess.Popen] = field(default_factory=list)
    exported: bool = False  # rank variables were set in this process for this job


def in_submitit_job() -> str | None:
    """The submitit executor ("local" or "slurm") when running inside a submitit job."""
    return os.environ.get("SUBMITIT_EXECUTOR")


def process_rank() -> int:
    """This process's global rank as the launcher set it (0 when no launcher did)."""
    for name in ("RANK", "SLURM_PROCID", "SUBMITIT_LOCAL_GLOBALID", "LOCAL_RANK"):
        if os.environ.get(name):
            return int(os.environ[name])
    return 0


@dataclass(frozen=True)
class TorchrunLayout:
    """What torchrun launched: nodes (--nnodes) x processes per node (--nproc-per-node)."""

    nodes: int
    per_node: int


def torchrun_layout(env: dict[str, str] | None = None) -> TorchrunLayout | None:
    """The layout of the torchrun launch this process belongs to, or None outside torchrun.
    torchrun sets GROUP_WORLD_SIZE (nodes) and LOCAL_WORLD_SIZE (processes on this node);
    without the former, nodes = WORLD_SIZE / LOCAL_WORLD_SIZE."""
    env = os.environ if env is None else env
    if "TORCHELASTIC_RUN_ID" not in env:  # what torch.distributed.is_torchelastic_launched reads
        return None
    per_node = int(env["LOCAL_WORLD_SIZE"])
    nodes = int(env.get("GROUP_WORLD_SIZE") or int(env["WORLD_SIZE"]) // per_node)
    return TorchrunLayout(nodes=nodes, per_node=per_node)


def announce_rank(fabric: Fabric, run_dir: Path) -> None:
    """Log where this rank runs (node, host, SLURM's node id), and refuse ranks that disagree
    on the run dir or on what is in it (each would write or resume its own half of the run)."""
    slurm_node = os.environ.get("SLURM_NODEID")
    log.info(
        "rank %d of %d: node %d, local rank %d, host %s%s",
        fabric.global_rank,
        fabric.world_size,
        fabric.node_rank,
        fabric.local_rank,
        socket.gethostname(),
        f" (SLURM_NODEID={slurm_node}, SLURMD_NODENAME={os.environ.get('SLURMD_NODENAME')})"
        if slurm_node is not None
        else "",
    )
    if fabric.world_size == 1:
        return
    views: list[Any] = [None] * fabric.world_size
    dist.all_gather_object(views, _run_dir_view(run_dir))
    dirs = {view[0] for view in views}
    if len(dirs) > 1:
        raise ConfigError(
            f"the ranks of this run work in different run dirs ({', '.join(sorted(dirs))}): "
            "every node of a "
            "multi-node launch must get the same run_name=<name> (the default, start time + a "
            "random tag, differs per process)"
        )
    if len({view[1] for view in views}) > 1:
        raise ConfigError(
            f"the ranks of this run see different checkpoints in {run_dir}/checkpoints: the "
            "nodes of a multi-node run must share the filesystem that holds outputs/ (a rank "
            "that resumes nothing while rank 0 resumes would train another run)"
        )


def _run_dir_view(run_dir: Path) -> tuple[str, tuple[tuple[str, int], ...]]:
    """The run dir as this rank sees it: its path, and the checkpoints in it (name, size)
    before this run writes any."""
    checkpoints = run_dir / CHECKPOINT_DIR
    files = sorted(checkpoints.iterdir()) if checkpoints.is_dir() else []
    return str(run_dir.resolve()), tuple((f.name, f.stat().st_size) for f in files)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare_job_processes(cfg: DictConfig, run_dir: Path) -> JobProcesses:
    """Make sure every rank of this job exists before Fabric starts; see the module docstring."""
    job = JobProcesses()
    trainer = cfg.trainer
    world = trainer.devices * trainer.num_nodes
    if world == 1:
        return job
    executor = in_submitit_job()
    if executor == "local":
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(
            set_cuda_visible_devices=False, overwrite=True
        )
        os.environ["MASTER_ADDR"] = "127.0.0.1"  # all local tasks; never another interface
        job.exported = True
        return job
    if executor is not None or "LOCAL_RANK" in os.environ:
        return job  # SLURM tasks, or a rank someone else started
    if HydraConfig.get().mode != RunMode.MULTIRUN or trainer.strategy not in _REEXEC_STRATEGIES:
        return job  # Lightning's own re-execution (RUN mode) or a spawning strategy
    if trainer.num_nodes > 1:
        raise ValueError("a --multirun job with num_nodes > 1 needs a cluster launcher (slurm)")
    port = str(_free_port())
    hydra = HydraConfig.get()
    command = [sys.executable, "-m", "src.main", *hydra.overrides.task]
    # The other ranks must compose the same config: configs found through a search path the
    # command line added (e.g. hparams_search files kept outside conf/) would be missing.
    command += [o for o in hydra.overrides.hydra if o.startswith("hydra.searchpath")]
    if hydra.job.config_name and hydra.job.config_name != "config":
        command += ["--config-name", hydra.job.config_name]
    shared = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "NODE_RANK": "0"}
    for local_rank in range(1, trainer.devices):
        args = [
            f"hydra.run.dir={run_dir}",
            "hydra.output_subdir=null",
            f"hydra.job.name=train_ddp_process_{local_rank}",
        ]
        env = {**os.environ, **shared, "LOCAL_RANK": str(local_rank)}
        job.children.append(subprocess.Popen(command + args, env=env))
    log.info("started ranks 1..%d of this job in %s", trainer.devices - 1, run_dir)
    os.environ.update({**shared, "LOCAL_RANK": "0"})
    job.exported = True
    return job


def release_process_group(failed: bool) -> None:
    """Destroy the process group once gloo's worker threads are idle.

    A gloo worker frees a finished collective (and the tensors Python handed it, which needs
    the GIL) while holding the group's work lock; the group's destructor takes that lock, and
    runs with the GIL held when the last reference (the DDP wrapper's) goes away in some later
    garbage collection. Seen: a job hung after writing its results, once in about 20 DDP sweeps.
    So: free the DDP wrapper and those tensors now, while the group lives on, then wait at
    barriers (the GIL released) so that the workers finish, then destroy the group."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if not failed and dist.get_backend() == "gloo":
        gc.collect()
        try:
            for _ in range(2):  # the second waits out the first's clean-up
                dist.monitored_barrier(timeout=timedelta(seconds=120))
        except RuntimeError as err:  # a rank gone: nothing to drain with it
            log.warning("ranks did not meet before the process group ended: %s", err)
    dist.destroy_process_group()


def finish_job(job: JobProcesses, failed: bool = False) -> None:
    """End this job's process group and the ranks it started; clear what was exported."""
    release_process_group(failed)
    for child in job.children:
        if failed:
            child.terminate()
        try:
            code = child.wait(timeout=120)
        except subprocess.TimeoutExpired:
            child.kill()
            code = child.wait()
        if code != 0 and not failed:
            raise RuntimeError(f"rank process {child.args} exited with {code}")
    if job.exported:
        for name in _RANK_VARIABLES + ("LOCAL_WORLD_SIZE",):
            os.environ.pop(name, None)


@contextmanager
def failure_ends_slurm_step() -> Iterator[None]:
    """Around a job: inside a submitit SLURM job, a job that raises makes its process exit 1 once
    submitit has saved the outcome. Hydra turns the exception into the job's result and submitit
    then exits 0, so SLURM would not know that the job failed: sacct would say COMPLETED, and in a
    job of several ranks the others would wait for the failed one until the time limit (seen: one
    rank failed before the ranks met, the other waited at the rendezvous). With
    SLURM_KILL_BAD_EXIT=1 srun ends them at once. The exception stays in the job's result,
    job_error.txt and the sweep report."""
    try:
        yield
    except Exception:
        if in_submitit_job() == "slurm":
            several_ranks = int(os.environ.get("SLURM_NTASKS", "1")) > 1
            if several_ranks and os.environ.get("SLURM_KILL_BAD_EXIT") != "1":
                log.warning(
                    "SLURM_KILL_BAD_EXIT is not 1 in this job: srun leaves the other ranks "
                    "running. Keep `export SLURM_KILL_BAD_EXIT=1` in hydra.launcher.setup"
                )
            atexit.register(_exit_failed)  # runs first (last registered): after submitit's save
        raise


def _exit_failed() -> None:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # sys.exit in an exit handler does not change the exit code; os._exit does (and skips the
    # handlers registered before this one, hence the flushes above).
    os._exit(1)


def log_to_rank_file(run_dir: Path, rank: int) -> None:
    """Ranks > 0 started by a launcher share the job's output dir: give each its own log file
    instead of appending to the job's main log."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            path = run_dir / rank_log(rank)
            if Path(handler.baseFilename) == path:
                continue
            replacement = logging.FileHandler(path)
            replacement.setFormatter(handler.formatter)
            replacement.setLevel(handler.level)
            root.removeHandler(handler)
            handler.close()
            root.addHandler(replacement)
