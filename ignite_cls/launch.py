"""Start the worker processes: one process, spawned processes, torchrun, srun or mpirun.

Everything goes through ``idist.Parallel``: nccl when CUDA is available, gloo on CPU.
"""

from __future__ import annotations

import logging
import os

import ignite.distributed as idist
import torch

from ignite_cls.job import Job

logger = logging.getLogger("ignite_cls")


def backend_name() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def external_world_size() -> tuple[str | None, int]:
    """The launcher that started this process and its world size, from its environment."""
    if "TORCHELASTIC_RUN_ID" in os.environ or ("RANK" in os.environ and "WORLD_SIZE" in os.environ):
        return "pytorch", int(os.environ.get("WORLD_SIZE", "1"))
    if "OMPI_COMM_WORLD_SIZE" in os.environ:
        return "mpi", int(os.environ["OMPI_COMM_WORLD_SIZE"])
    if "PMI_SIZE" in os.environ:
        return "mpi", int(os.environ["PMI_SIZE"])
    if "SLURM_JOB_ID" in os.environ and "SLURM_PROCID" in os.environ:
        return "slurm", int(os.environ.get("SLURM_NTASKS", "1"))
    return None, 1


def resolve_launcher(requested: str) -> str:
    """``none`` under torchrun, srun or mpirun with several processes becomes that launcher,
    with a notice, instead of silently running N independent copies."""
    detected, world_size = external_world_size()
    if requested == "none" and detected and world_size > 1:
        logger.warning(
            f"notice: started by {detected} with {world_size} processes: using --launcher {detected}"
        )
        return detected
    return requested


def export_mpi_env() -> None:
    """Map OpenMPI's (or PMI's) rank variables to the ones torch.distributed reads."""
    env = os.environ
    rank = env.get("OMPI_COMM_WORLD_RANK", env.get("PMI_RANK", "0"))
    size = env.get("OMPI_COMM_WORLD_SIZE", env.get("PMI_SIZE", "1"))
    local = env.get("OMPI_COMM_WORLD_LOCAL_RANK", env.get("MPI_LOCALRANKID", rank))
    env.update(RANK=rank, WORLD_SIZE=size, LOCAL_RANK=local)
    env.setdefault("MASTER_ADDR", "127.0.0.1")
    env.setdefault("MASTER_PORT", env.get("PORT", "29500"))


def parallel_args(job: Job) -> dict:
    """idist.Parallel's arguments for the job's launcher and process count."""
    launcher = resolve_launcher(job.cfg["launcher"])
    nproc = job.cfg["nproc_per_node"] or 1
    nnodes = int(os.environ.get("NNODES", "1"))
    if launcher == "none" and nproc == 1 and nnodes == 1:
        return {"backend": None}
    if launcher == "none":
        return dict(
            backend=backend_name(),
            nproc_per_node=nproc,
            nnodes=nnodes,
            node_rank=int(os.environ.get("NODE_RANK", "0")),
            master_addr=os.environ.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(os.environ.get("PORT", "29500")),
        )
    if launcher == "mpi":
        export_mpi_env()
    return {"backend": backend_name()}


def worker(local_rank: int, job: Job) -> None:
    if job.command == "train":
        from ignite_cls.train import run_training

        run_training(job)
    else:
        from ignite_cls.test import run_testing

        run_testing(job)


def launch(job: Job) -> None:
    with idist.Parallel(**parallel_args(job)) as parallel:
        parallel.run(worker, job)
