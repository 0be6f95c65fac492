"""Start the worker processes: one process, spawned processes, torchrun, srun or mpirun.

Everything goes through ``idist.Parallel``: nccl when CUDA is available, gloo on CPU.

- ``--nproc-per-node N`` spawns N workers here; ``NNODES``, ``NODE_RANK``, ``MASTER_ADDR``
  and ``PORT`` (the seed's variables) place them in a job over several machines.
- torchrun, srun and mpirun start the processes themselves; their environment says which
  one did, so ``--launcher none`` with several processes is upgraded (with a notice) instead
  of running N independent copies.
- A failing process takes the job down: spawned workers are stopped by the parent, which
  names the failed rank; torchrun, ``srun --kill-on-bad-exit`` and mpirun stop the others
  when one exits non-zero, and the failing process names its rank in its error.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

from ignite_cls.__main__ import one_line
from ignite_cls.errors import UserError
from ignite_cls.job import Job

logger = logging.getLogger("ignite_cls")

DEFAULT_PORT = 29500
PR_SET_PDEATHSIG = 1  # linux/prctl.h
LAUNCHER_PROGRAMS = {"pytorch": "torchrun", "slurm": "srun", "mpi": "mpirun"}


@dataclass(frozen=True)
class ExternalLaunch:
    """How a launcher program started this process: its launcher name, world size and rank."""

    launcher: str  # pytorch | slurm | mpi
    world_size: int
    rank: int


def detect_launch(env: Mapping[str, str] = os.environ) -> ExternalLaunch | None:
    """The launcher that started this process, from the variables it sets; None if none did.

    An sbatch script or an salloc shell has Slurm job variables but is no job step: only
    srun's step id marks a task of a step, so a batch script is not taken for N ranks.
    RANK and WORLD_SIZE alone do not count (spawned workers have them too); another env://
    launcher than torchrun is named with ``--launcher pytorch``.
    """
    if "TORCHELASTIC_RUN_ID" in env:
        return ExternalLaunch("pytorch", _int_env(env, "WORLD_SIZE", 1), _int_env(env, "RANK", 0))
    if "OMPI_COMM_WORLD_SIZE" in env:
        return ExternalLaunch(
            "mpi",
            _int_env(env, "OMPI_COMM_WORLD_SIZE", 1),
            _int_env(env, "OMPI_COMM_WORLD_RANK", 0),
        )
    if in_slurm_step(env):
        return ExternalLaunch(
            "slurm", _int_env(env, "SLURM_NTASKS", 1), _int_env(env, "SLURM_PROCID", 0)
        )
    if "PMI_SIZE" in env:
        return ExternalLaunch("mpi", _int_env(env, "PMI_SIZE", 1), _int_env(env, "PMI_RANK", 0))
    return None


def resolve_launcher(requested: str, env: Mapping[str, str] = os.environ) -> str:
    """The launcher to use: ``requested``, except that ``none`` under torchrun, srun or
    mpirun with several processes becomes that launcher, with a one-line notice (rank 0)."""
    found = detect_launch(env)
    if requested != "none" or found is None or found.world_size < 2:
        return requested
    if found.rank == 0:
        logger.warning(
            f"notice: started by {LAUNCHER_PROGRAMS[found.launcher]} with {found.world_size} "
            f"processes: using --launcher {found.launcher}"
        )
    return found.launcher


def export_mpi_env(env: MutableMapping[str, str] = os.environ) -> None:
    """Set the variables torch.distributed reads (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
    MASTER_PORT) from OpenMPI's ``OMPI_COMM_WORLD_*`` or a PMI launcher's ``PMI_*``.

    PyTorch wheels have no MPI backend: mpirun only starts the processes, which then meet
    over TCP at MASTER_ADDR:MASTER_PORT (MASTER_PORT, else PORT, else 29500).
    """
    if "OMPI_COMM_WORLD_SIZE" in env:
        rank, size = env["OMPI_COMM_WORLD_RANK"], env["OMPI_COMM_WORLD_SIZE"]
        local = env.get("OMPI_COMM_WORLD_LOCAL_RANK", rank)
        local_size = env.get("OMPI_COMM_WORLD_LOCAL_SIZE", size)
    elif "PMI_SIZE" in env:
        rank, size = env.get("PMI_RANK", "0"), env["PMI_SIZE"]
        local = env.get("MPI_LOCALRANKID", rank)
        local_size = env.get("MPI_LOCALNRANKS", size)
    else:
        raise UserError(
            "--launcher mpi: no OMPI_COMM_WORLD_* or PMI_* variables; start with mpirun -n N"
        )
    if int(local_size) < int(size) and "MASTER_ADDR" not in env:
        raise UserError(
            "mpirun over several nodes needs MASTER_ADDR, the first node's address "
            "(e.g. mpirun -x MASTER_ADDR=node0 -x PORT=29500 ...)"
        )
    env.update(RANK=rank, WORLD_SIZE=size, LOCAL_RANK=local)
    env.setdefault("MASTER_ADDR", "127.0.0.1")
    env.setdefault("MASTER_PORT", env.get("PORT", str(DEFAULT_PORT)))


def check_launcher_env(launcher: str, env: Mapping[str, str] = os.environ) -> None:
    """Fail with a one-line message when the named launcher did not start this process."""
    if launcher == "pytorch" and not ("RANK" in env and "WORLD_SIZE" in env):
        raise UserError(
            "--launcher pytorch: RANK and WORLD_SIZE are not set; "
            "start with torchrun --nproc-per-node N -m ignite_cls ..."
        )
    if launcher == "slurm" and not in_slurm_step(env):
        raise UserError(
            "--launcher slurm: not a task of an srun job step (no SLURM_STEP_ID); "
            "start with srun or slurm/train.sh"
        )


def in_slurm_step(env: Mapping[str, str] = os.environ) -> bool:
    """Whether this process is a task that srun started (not a batch script or salloc shell)."""
    has_step = "SLURM_STEP_ID" in env or "SLURM_STEPID" in env
    return has_step and "SLURM_PROCID" in env and "SLURM_JOB_ID" in env


def backend_name() -> str:
    """nccl on CUDA, gloo on the CPU."""
    import torch

    return "nccl" if torch.cuda.is_available() else "gloo"


def parallel_args(launcher: str, nproc: int, env: MutableMapping[str, str] = os.environ) -> dict:
    """idist.Parallel's arguments for a (resolved) launcher and process count.

    With ``launcher none``: one plain process, or ``nproc`` spawned workers placed by
    NNODES, NODE_RANK, MASTER_ADDR and PORT (default 29500). Otherwise the launcher's own
    variables say where each process stands (mpirun's are translated first).
    """
    if not isinstance(nproc, int) or nproc < 1:
        raise UserError(f"--nproc-per-node must be a positive integer, got {nproc!r}")
    if launcher != "none":
        if nproc > 1:
            raise UserError(
                f"--nproc-per-node {nproc} cannot be combined with --launcher {launcher}: "
                f"{LAUNCHER_PROGRAMS[launcher]} starts the processes"
            )
        check_launcher_env(launcher, env)
        if launcher == "mpi":
            export_mpi_env(env)
        return {"backend": backend_name()}
    nnodes = _int_env(env, "NNODES", 1)
    node_rank = _int_env(env, "NODE_RANK", 0)
    if nnodes < 1 or not 0 <= node_rank < nnodes:
        raise UserError(
            f"NODE_RANK must be in 0..NNODES-1, got NODE_RANK={node_rank} NNODES={nnodes}"
        )
    if nproc == 1 and nnodes == 1:
        return {"backend": None}
    if nnodes > 1 and "MASTER_ADDR" not in env:
        raise UserError(
            f"NNODES={nnodes}: set MASTER_ADDR to the address of the node with NODE_RANK=0"
        )
    return dict(
        backend=backend_name(),
        nproc_per_node=nproc,
        nnodes=nnodes,
        node_rank=node_rank,
        master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
        master_port=_int_env(env, "PORT", DEFAULT_PORT),
    )


def hide_slurm_job(launcher: str, env: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Remove SLURM_JOB_ID from ``env`` unless srun is the launcher; returns what was removed.

    Ignite takes any process with SLURM_JOB_ID for an srun task and reads its rank from
    Slurm, which is wrong for workers spawned or started by torchrun or mpirun inside an
    allocation (an sbatch script, an salloc shell). The value is put back once the process
    group is up (``worker``).
    """
    if launcher == "slurm" or "SLURM_JOB_ID" not in env:
        return {}
    return {"SLURM_JOB_ID": env.pop("SLURM_JOB_ID")}


def worker(local_rank: int, job: Job, hidden_env: dict[str, str]) -> None:
    """One process of the job. With several, a user error names the rank it happened on
    (tracebacks already do: torch prefixes their lines with ``[rankN]``)."""
    import ignite.distributed as idist
    import torch

    os.environ.update(hidden_env)
    try:
        try:
            if job.command == "train":
                from ignite_cls.train import run_training

                run_training(job)
            else:
                from ignite_cls.test import run_testing

                run_testing(job)
        except (torch.OutOfMemoryError, RuntimeError) as e:
            if not (isinstance(e, torch.OutOfMemoryError) or "can't allocate memory" in str(e)):
                raise
            split = "train" if job.command == "train" else "test"
            batch = job.cfg["data"][split]["batch_size"]
            where = "CUDA" if isinstance(e, torch.OutOfMemoryError) else "CPU"
            raise UserError(
                f"{where} out of memory at data.{split}.batch_size={batch} per process: try a "
                f"smaller data.{split}.batch_size or smaller images (or --amp)"
            ) from e
    except UserError as e:
        if idist.get_world_size() == 1:
            raise
        raise UserError(f"rank {idist.get_rank()}: {one_line(e)}") from e


def spawned_worker(local_rank: int, job: Job, hidden_env: dict[str, str], parent_pid: int) -> None:
    """A worker spawned by --nproc-per-node. It ends as the entry point would (a user error:
    its one-line message and exit code 2; ``Interrupted``: 128 + the signal), and it gets
    SIGTERM (a clean stop) if the spawning process dies, instead of running on orphaned."""
    from ignite_cls.errors import Interrupted

    stop_with_parent(parent_pid)
    try:
        worker(local_rank, job, hidden_env)
    except UserError as e:
        if os.environ.get("IGNITE_CLS_DEBUG") == "1":
            raise
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    except Interrupted as e:
        print(f"interrupted: {e}", file=sys.stderr, flush=True)
        sys.exit(128 + e.signum)


def stop_with_parent(parent_pid: int) -> None:
    """Ask Linux to send this process SIGTERM when its parent exits (prctl PR_SET_PDEATHSIG);
    elsewhere, nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    if os.getppid() != parent_pid:  # the parent died before the request
        os.kill(os.getpid(), signal.SIGTERM)


def launch(job: Job) -> None:
    """Run the job's command in every process of the job (see the module docstring)."""
    import ignite.distributed as idist

    from ignite_cls.handlers.tracking import prepare_store

    launcher = resolve_launcher(job.cfg["launcher"])
    args = parallel_args(launcher, job.cfg["nproc_per_node"] or 1)
    prepare_store(job)  # the MLflow store exists before any worker touches it
    hidden = hide_slurm_job(launcher)
    try:
        with idist.Parallel(**args) as parallel:
            if "nproc_per_node" in args:  # the workers put the variables back themselves
                run_spawned(parallel, job, hidden, args)
            else:  # the process group is up
                os.environ.update(hidden)
                parallel.run(worker, job, {})
    except Exception as e:
        if not port_in_use(e):
            raise
        raise UserError(port_in_use_message(os.environ.get("MASTER_PORT", "?"))) from None
    finally:
        os.environ.update(hidden)


def port_in_use(error: BaseException) -> bool:
    """Whether rank 0 could not open the rendezvous port (another job holds it)."""
    return "EADDRINUSE" in str(error)


def port_in_use_message(port: int | str) -> str:
    return (
        f"port {port} is in use, by another job on this machine? Give each job its own: "
        "PORT=29501 (mpirun: -x PORT=29501)"
    )


def run_spawned(parallel, job: Job, hidden_env: dict[str, str], args: dict) -> None:
    """Run spawned workers; when one fails the others are stopped (by torch.multiprocessing)
    and this process exits non-zero, naming the failed rank."""
    from torch.multiprocessing import ProcessExitedException, ProcessRaisedException

    try:
        parallel.run(spawned_worker, job, hidden_env, os.getpid())
    except ProcessRaisedException as e:
        if port_in_use(e):
            raise UserError(port_in_use_message(args["master_port"])) from None
        rank = args["node_rank"] * args["nproc_per_node"] + e.error_index
        print(f"error: rank {rank} failed; the other processes were stopped{e}", file=sys.stderr)
        raise SystemExit(1) from None
    except ProcessExitedException as e:
        rank = args["node_rank"] * args["nproc_per_node"] + e.error_index
        if e.exit_code != 2:  # 2: a user error, reported by that rank already
            how = (
                f"was killed by {e.signal_name}"
                if e.signal_name
                else f"exited with code {e.exit_code}"
            )
            print(f"error: rank {rank} {how}; the other processes were stopped", file=sys.stderr)
        raise SystemExit(e.exit_code if e.exit_code > 0 else 1) from None


def _int_env(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment variable {name} must be an integer, got '{value}'") from None
