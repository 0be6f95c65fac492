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
from collections.abc import MutableMapping

from ignite_cls.config import setting
from ignite_cls.errors import (
    Interrupted,
    UserError,
    debugging,
    one_line,
    out_of_memory,
    report,
)
from ignite_cls.job import Job
from ignite_cls.launchers import (
    DEFAULT_PORT,
    LAUNCHER_PROGRAMS,
    check_launcher_env,
    export_mpi_env,
    first_to_report,
    int_env,
)

PR_SET_PDEATHSIG = 1  # linux/prctl.h
USER_ERROR = f"{UserError.__module__}.{UserError.__qualname__}: "  # how a traceback ends


def backend_name() -> str:
    """nccl on CUDA, gloo on the CPU."""
    import torch

    return "nccl" if torch.cuda.is_available() else "gloo"


def parallel_args(launcher: str, nproc: int, env: MutableMapping[str, str] = os.environ) -> dict:
    """idist.Parallel's arguments for a launch mode (``Job.launcher``) and process count.

    With ``none`` or ``spawn``: one plain process, or ``nproc`` spawned workers placed by
    NNODES, NODE_RANK, MASTER_ADDR and PORT (default 29500). Otherwise the launcher's own
    variables say where each process stands (mpirun's are translated first).
    """
    if not isinstance(nproc, int) or nproc < 1:
        raise UserError(f"--nproc-per-node must be a positive integer, got {nproc!r}")
    if launcher not in ("none", "spawn"):
        if nproc > 1:
            raise UserError(
                f"--nproc-per-node {nproc} cannot be combined with --launcher {launcher}: "
                f"{LAUNCHER_PROGRAMS[launcher]} starts the processes"
            )
        check_launcher_env(launcher, env)
        if launcher == "mpi":
            export_mpi_env(env)
        return {"backend": backend_name()}
    nnodes = int_env(env, "NNODES", 1)
    node_rank = int_env(env, "NODE_RANK", 0)
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
        master_port=int_env(env, "PORT", DEFAULT_PORT),
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


def run_command(job: Job) -> None:
    """The command's own assembly of data, model and engines (imported in the worker only)."""
    if job.command == "train":
        from ignite_cls.train import run_training as run
    elif job.command == "test":
        from ignite_cls.test import run_testing as run
    else:
        from ignite_cls.predict import run_prediction as run
    run(job)


def worker(local_rank: int, job: Job, hidden_env: dict[str, str]) -> None:
    """One process of the job. With several, a user error names the rank it happened on
    (tracebacks already do: torch prefixes their lines with ``[rankN]``)."""
    import ignite.distributed as idist
    import torch

    from ignite_cls.tracking import agent

    os.environ.update(hidden_env)
    agent.start(job)  # a spawned rank 0's own (the command started it otherwise)
    try:
        try:
            run_command(job)
        except (torch.OutOfMemoryError, RuntimeError) as e:
            if not out_of_memory(e):
                raise
            split = "train" if job.command == "train" else "test"  # predict: the test batch
            batch = job.cfg["data"][split]["batch_size"]
            where = "CUDA" if isinstance(e, torch.OutOfMemoryError) else "CPU"
            raise UserError(
                f"{where} out of memory at data.{split}.batch_size={batch} per process: try a "
                f"smaller data.{split}.batch_size or smaller images (or --amp)"
            ) from e
    except UserError as e:
        if idist.get_world_size() == 1:
            raise
        error = UserError(f"rank {idist.get_rank()}: {one_line(e)}")
        if job.launcher in LAUNCHER_PROGRAMS:  # spawned ranks: the spawning process prints
            error.silent = not first_to_report()
        raise error from e


def spawned_worker(local_rank: int, job: Job, hidden_env: dict[str, str], parent_pid: int) -> None:
    """A worker spawned by --nproc-per-node. A user error goes to the spawning process, which
    prints it once for the job (exit code 2; ``run_spawned``); ``Interrupted`` ends it as the
    entry point would (its line, 128 + the signal). It gets SIGTERM (a clean stop) if the
    spawning process dies, instead of running on orphaned."""
    stop_with_parent(parent_pid)
    try:
        worker(local_rank, job, hidden_env)
    except UserError:
        raise  # to the spawning process, which prints it: one line for the job, not per rank
    except Interrupted as e:
        code = report(e)
        if code is None:
            raise
        sys.exit(code)


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

    from ignite_cls.handlers.watchdog import process_group_timeout

    args = parallel_args(job.launcher, job.cfg["nproc_per_node"] or 1)
    timeout = process_group_timeout(setting(job.cfg, "dist.stall_timeout"))
    hidden = hide_slurm_job(job.launcher)
    opened = False  # the process group, by this process
    try:
        if "nproc_per_node" in args:  # each spawned worker opens the group with the timeout
            args["timeout"] = timeout
        elif args["backend"] is not None:  # Parallel would open it without one
            idist.initialize(args.pop("backend"), timeout=timeout)
            opened = True
        with idist.Parallel(**args) as parallel:
            if "nproc_per_node" in args:  # the workers put the variables back themselves
                run_spawned(parallel, job, hidden, args)
            else:
                os.environ.update(hidden)
                parallel.run(worker, job, {})
    except Exception as e:
        if not port_in_use(e):
            raise
        raise UserError(port_in_use_message(os.environ.get("MASTER_PORT", "?"))) from None
    finally:
        os.environ.update(hidden)
        if opened:
            idist.finalize()


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

    from ignite_cls.handlers.watchdog import STALL_EXIT

    # this process names the failed rank itself, last; torch's notes on stopping the others
    # would come after that line
    logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)
    try:
        parallel.run(spawned_worker, job, hidden_env, os.getpid())
    except ProcessRaisedException as e:
        if port_in_use(e):
            raise UserError(port_in_use_message(args["master_port"])) from None
        last_line = str(e).strip().splitlines()[-1]
        if last_line.startswith(USER_ERROR) and not debugging():  # "rank N: ..." (``worker``)
            print(f"error: {last_line.removeprefix(USER_ERROR)}", file=sys.stderr)
            raise SystemExit(2) from None
        rank = args["node_rank"] * args["nproc_per_node"] + e.error_index
        print(f"error: rank {rank} failed; the other processes were stopped{e}", file=sys.stderr)
        raise SystemExit(1) from None
    except ProcessExitedException as e:
        rank = args["node_rank"] * args["nproc_per_node"] + e.error_index
        if e.exit_code not in (2, STALL_EXIT):  # that rank reported it already
            how = (
                f"was killed by {e.signal_name}"
                if e.signal_name
                else f"exited with code {e.exit_code}"
            )
            print(f"error: rank {rank} {how}; the other processes were stopped", file=sys.stderr)
        raise SystemExit(e.exit_code if e.exit_code > 0 else 1) from None
