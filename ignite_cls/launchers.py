"""Which launcher started this process (torchrun, srun, mpirun or none), from the variables
each one sets, and what torch.distributed needs from them. Stdlib only: the CLI resolves the
launcher before anything heavy is imported.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from ignite_cls.errors import UserError

logger = logging.getLogger("ignite_cls")

DEFAULT_PORT = 29500
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
        return ExternalLaunch("pytorch", int_env(env, "WORLD_SIZE", 1), int_env(env, "RANK", 0))
    if "OMPI_COMM_WORLD_SIZE" in env:
        return ExternalLaunch(
            "mpi",
            int_env(env, "OMPI_COMM_WORLD_SIZE", 1),
            int_env(env, "OMPI_COMM_WORLD_RANK", 0),
        )
    if in_slurm_step(env):
        return ExternalLaunch(
            "slurm", int_env(env, "SLURM_NTASKS", 1), int_env(env, "SLURM_PROCID", 0)
        )
    if "PMI_SIZE" in env:
        return ExternalLaunch("mpi", int_env(env, "PMI_SIZE", 1), int_env(env, "PMI_RANK", 0))
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


def launch_mode(
    requested: str, nproc_per_node: int | None, env: Mapping[str, str] = os.environ
) -> str:
    """How the job's processes start: the resolved launcher (none, pytorch, slurm, mpi), or
    ``spawn`` when ``--nproc-per-node N`` (N > 1, or several NNODES) starts them here."""
    launcher = resolve_launcher(requested, env)
    several = isinstance(nproc_per_node, int) and nproc_per_node > 1
    if launcher == "none" and (several or int_env(env, "NNODES", 1) > 1):
        return "spawn"
    return launcher


def launching_rank(env: Mapping[str, str] = os.environ) -> int:
    """This process's rank as its launcher program set it; 0 where none did."""
    found = detect_launch(env)
    return found.rank if found else 0


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


def int_env(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment variable {name} must be an integer, got '{value}'") from None


def first_to_report() -> bool:
    """Whether this rank is the first of its job to fail, and so the one to print the error.

    Under torchrun, srun and mpirun every rank's stderr reaches the user, and the ranks of a
    job often fail alike (a config or data error): the first one prints its line, the others
    only exit. A job is known by the launcher process that started the ranks (torchrun, the
    Slurm step daemon, mpirun or OpenMPI's daemon: its pid and start time); the first rank
    creates a file named by it, exclusively. The ranks of one node share that process, so a
    job over several nodes prints a line per node.
    """
    launcher = _process_identity(os.getppid())
    if launcher is None:
        return True
    folder = Path(tempfile.gettempdir()) / f"ignite_cls-{os.getuid()}-failed-jobs"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        for claim in folder.iterdir():  # of jobs whose launcher has ended
            if _process_identity(int(claim.name.split(".")[0])) != claim.name:
                claim.unlink(missing_ok=True)
        os.close(os.open(folder / launcher, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    except (OSError, ValueError):  # no claim possible: rather a line too many than none
        return True
    return True


def _process_identity(pid: int) -> str | None:
    """``PID.START`` (its start time in clock ticks since boot: a pid is reused, this pair
    is not), or None when the process is gone or unknown (no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return f"{pid}.{stat.rsplit(')', 1)[1].split()[19]}"  # field 22, starttime
