"""Launcher detection and the arguments of idist.Parallel, from the environment each
launcher (torchrun, srun, mpirun, an sbatch script, --nproc-per-node) really sets."""

from __future__ import annotations

import pytest

from ignite_cls.errors import UserError
from ignite_cls.launch import hide_slurm_job, parallel_args, port_in_use
from ignite_cls.launchers import (
    ExternalLaunch,
    detect_launch,
    export_mpi_env,
    launch_mode,
    resolve_launcher,
)

TORCHRUN = {
    "TORCHELASTIC_RUN_ID": "none",
    "RANK": "1",
    "LOCAL_RANK": "1",
    "WORLD_SIZE": "4",
    "MASTER_ADDR": "127.0.0.1",
    "MASTER_PORT": "29400",
}
OPENMPI = {
    "OMPI_COMM_WORLD_RANK": "1",
    "OMPI_COMM_WORLD_SIZE": "2",
    "OMPI_COMM_WORLD_LOCAL_RANK": "1",
    "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
}
SLURM_JOB = {"SLURM_JOB_ID": "15", "SLURM_JOB_NODELIST": "vm", "SLURM_JOB_NUM_NODES": "1"}
# what `srun -n 2` gives its second task, and what an `sbatch -n 2` script itself sees
SRUN_TASK = {**SLURM_JOB, "SLURM_STEP_ID": "0", "SLURM_PROCID": "1", "SLURM_LOCALID": "1"}
SRUN_TASK["SLURM_NTASKS"] = "2"
SBATCH_SCRIPT = {**SLURM_JOB, "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NTASKS": "2"}
# a worker spawned by --nproc-per-node inside that batch script
SPAWNED = {**SLURM_JOB, "RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (TORCHRUN, ExternalLaunch("pytorch", 4, 1)),
        (OPENMPI, ExternalLaunch("mpi", 2, 1)),
        ({**OPENMPI, **SBATCH_SCRIPT}, ExternalLaunch("mpi", 2, 1)),  # mpirun in sbatch
        (SRUN_TASK, ExternalLaunch("slurm", 2, 1)),
        ({"PMI_RANK": "3", "PMI_SIZE": "4"}, ExternalLaunch("mpi", 4, 3)),  # MPICH's hydra
        (SBATCH_SCRIPT, None),
        (SLURM_JOB, None),  # an salloc shell
        (SPAWNED, None),
        ({}, None),
    ],
    ids=[
        "torchrun",
        "mpirun",
        "mpirun-in-sbatch",
        "srun",
        "pmi",
        "sbatch",
        "salloc",
        "spawned",
        "plain",
    ],
)
def test_detects_the_launcher_from_its_variables(env, expected):
    assert detect_launch(env) == expected


def test_launcher_none_under_a_launcher_is_upgraded_with_one_notice_on_rank_0(ignite_cls_log):
    assert resolve_launcher("none", {**OPENMPI, "OMPI_COMM_WORLD_RANK": "0"}) == "mpi"
    assert resolve_launcher("none", OPENMPI) == "mpi"  # rank 1: silent
    assert resolve_launcher("none", {**SRUN_TASK, "SLURM_PROCID": "0"}) == "slurm"
    assert ignite_cls_log.messages == [
        "notice: started by mpirun with 2 processes: using --launcher mpi",
        "notice: started by srun with 2 processes: using --launcher slurm",
    ]


def test_single_process_launches_and_explicit_launchers_are_kept(ignite_cls_log):
    one_task = {**SRUN_TASK, "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}
    assert resolve_launcher("none", one_task) == "none"
    assert resolve_launcher("none", SBATCH_SCRIPT) == "none"
    assert resolve_launcher("pytorch", TORCHRUN) == "pytorch"
    assert ignite_cls_log.messages == []


@pytest.mark.parametrize(
    ("requested", "nproc", "env", "mode"),
    [
        ("none", 1, {}, "none"),
        ("none", 2, {}, "spawn"),
        ("none", 1, {"NNODES": "2", "NODE_RANK": "1"}, "spawn"),
        ("none", 2, SBATCH_SCRIPT, "spawn"),  # --nproc-per-node inside an sbatch script
        ("none", 1, TORCHRUN, "pytorch"),
        ("none", 1, SRUN_TASK, "slurm"),
        ("mpi", 1, OPENMPI, "mpi"),
    ],
)
def test_launch_mode_says_how_the_processes_start(ignite_cls_log, requested, nproc, env, mode):
    assert launch_mode(requested, nproc, env) == mode


def test_openmpi_ranks_become_torch_variables_with_port_from_port():
    env = {**OPENMPI, "PORT": "29611"}
    export_mpi_env(env)
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"]) == ("1", "2", "1")
    assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == ("127.0.0.1", "29611")


def test_pmi_ranks_and_an_explicit_master_are_used():
    env = {"PMI_RANK": "2", "PMI_SIZE": "4", "MPI_LOCALRANKID": "0", "MPI_LOCALNRANKS": "2"}
    env.update(MASTER_ADDR="node0", MASTER_PORT="30000", PORT="29611")
    export_mpi_env(env)
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"]) == ("2", "4", "0")
    assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == ("node0", "30000")


def test_mpirun_over_several_nodes_needs_master_addr():
    env = {**OPENMPI, "OMPI_COMM_WORLD_SIZE": "4"}  # 2 here, 4 in all
    with pytest.raises(UserError, match="MASTER_ADDR"):
        export_mpi_env(env)


def test_one_plain_process_needs_no_process_group():
    assert parallel_args("none", 1, {}) == {"backend": None}


def test_spawn_takes_the_seed_variables():
    env = {"PORT": "29612", "NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "10.0.0.1"}
    assert parallel_args("none", 4, env) == dict(
        backend="gloo",
        nproc_per_node=4,
        nnodes=2,
        node_rank=1,
        master_addr="10.0.0.1",
        master_port=29612,
    )
    defaults = parallel_args("none", 2, {"MASTER_PORT": "1234"})  # PORT, not MASTER_PORT
    assert (defaults["master_addr"], defaults["master_port"], defaults["nnodes"]) == (
        "127.0.0.1",
        29500,
        1,
    )


@pytest.mark.parametrize(
    ("launcher", "nproc", "env", "message"),
    [
        ("none", 2, {"NNODES": "2"}, "MASTER_ADDR"),
        ("none", 2, {"NNODES": "2", "NODE_RANK": "2", "MASTER_ADDR": "h"}, "NODE_RANK"),
        ("none", 2, {"PORT": "abc"}, "PORT must be an integer"),
        ("none", 0, {}, "--nproc-per-node"),
        ("pytorch", 2, TORCHRUN, "cannot be combined"),
        ("pytorch", 1, {}, "torchrun"),
        ("slurm", 1, SBATCH_SCRIPT, "srun"),
        ("mpi", 1, {}, "mpirun"),
    ],
)
def test_impossible_launches_are_user_errors(launcher, nproc, env, message):
    with pytest.raises(UserError, match=message):
        parallel_args(launcher, nproc, dict(env))


def test_external_launchers_bring_their_own_ranks():
    assert parallel_args("pytorch", 1, dict(TORCHRUN)) == {"backend": "gloo"}
    assert parallel_args("slurm", 1, dict(SRUN_TASK)) == {"backend": "gloo"}
    env = dict(OPENMPI)
    assert parallel_args("mpi", 1, env) == {"backend": "gloo"}
    assert env["RANK"] == "1"


def test_slurm_job_id_is_hidden_from_ignite_unless_srun_launches():
    env = dict(SPAWNED)
    assert hide_slurm_job("none", env) == {"SLURM_JOB_ID": "15"}
    assert "SLURM_JOB_ID" not in env
    env = dict(SRUN_TASK)
    assert hide_slurm_job("slurm", env) == {}
    assert env["SLURM_JOB_ID"] == "15"


def test_a_busy_rendezvous_port_is_recognised():
    error = RuntimeError(
        "The server socket has failed to listen on any local network address. "
        "port: 29500, useIpv6: false, code: -98, name: EADDRINUSE, message: address in use"
    )
    assert port_in_use(error)
    assert not port_in_use(RuntimeError("Connection closed by peer"))


@pytest.mark.parametrize("hidden", ["", "-1"])
def test_hidden_cuda_devices_select_the_cpu_and_gloo(hidden):
    """``CUDA_VISIBLE_DEVICES=`` or ``=-1``: the CPU and gloo even on a machine with GPUs."""
    import os
    import subprocess
    import sys

    probe = (
        "import ignite.distributed as idist; from ignite_cls.launch import backend_name; "
        "print(idist.device(), backend_name())"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": hidden}
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.split() == ["cpu", "gloo"], result.stderr[-2000:]
