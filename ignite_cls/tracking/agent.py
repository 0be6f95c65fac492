"""The MLflow side of a run, in a process of its own: the tracking agent.

Importing MLflow, creating the store, opening the run and writing artifacts and the model
take seconds of CPU. On a process of their own they run beside the command's own start-up
(importing torch, building data and model) on another core, and off the training loop; the
command never imports MLflow. The command's rank 0 starts the agent first thing
(``start``), talks to it through a pipe of pickled messages (``Agent.send`` for work that
needs no answer, ``Agent.call`` for opening and closing the run) and waits for it only when
it closes the run.

The agent ignores SIGINT and SIGTERM (the command decides how to stop and closes the run
KILLED). When the command ends without closing the run (killed, crashed), the agent reads
the end of the pipe and ends the run KILLED with what had arrived, so a run is never left
RUNNING; ``--resume`` continues it.

    python -m ignite_cls.tracking.agent IN_FD OUT_FD   (started by ``start``; not for users)
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Any

from ignite_cls.config import setting
from ignite_cls.errors import UserError

HEADER = struct.Struct("<Q")  # the length of each pickled message
_running: Agent | None = None  # this process's agent, once started


def write_message(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def read_message(stream: IO[bytes]) -> Any:
    """The next message; EOFError when the other side has gone."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        raise EOFError
    data = stream.read(HEADER.unpack(header)[0])
    return pickle.loads(data)


class Agent:
    """The command's handle on its tracking agent process."""

    def __init__(self, job: Any):
        to_agent, agent_in = os.pipe()
        agent_out, from_agent = os.pipe()
        # MLflow's own chatter (progress bars, INFO lines, hints) stays out of the console
        quiet = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "MLFLOW_LOGGING_LEVEL": "WARNING"}
        env = {**os.environ, **quiet, "PYTHONWARNINGS": "ignore::UserWarning"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ignite_cls.tracking.agent", str(to_agent), str(from_agent)],
            pass_fds=(to_agent, from_agent),
            stdin=subprocess.DEVNULL,
            env=env,
        )
        os.close(to_agent)
        os.close(from_agent)
        self._out = os.fdopen(agent_in, "wb")
        self._in = os.fdopen(agent_out, "rb")
        self._sending = threading.Lock()  # the checkpoint writer thread sends too
        self.alive = True
        # files the command writes for the agent; the agent removes the folder when it ends
        self.workspace = Path(tempfile.mkdtemp(prefix="ignite_cls_run_"))
        self.send("job", job, str(self.workspace))

    def send(self, operation: str, *args: Any) -> None:
        """Hand the agent some work; problems come back when the run is closed."""
        if not self.alive:
            return
        try:
            with self._sending:
                write_message(self._out, (operation, args))
        except (BrokenPipeError, OSError):
            self._gone()

    def call(self, operation: str, *args: Any) -> dict:
        """Work whose answer the command needs (a dict; ``error`` set when it failed)."""
        self.send(operation, *args)
        if self.alive:
            try:
                return read_message(self._in)
            except (EOFError, OSError):
                self._gone()
        return {"error": "the MLflow tracking process stopped unexpectedly"}

    def _gone(self) -> None:
        self.alive = False

    def finish(self) -> None:
        """Close the pipe: the agent ends (it has answered the close already)."""
        for stream in (self._out, self._in):
            try:
                stream.close()
            except OSError:
                pass
        self.alive = False


def start(job: Any) -> Agent | None:
    """Start this process's agent if ``job`` is a tracked command's rank 0 (at most once)."""
    global _running
    if _running is None and tracked(job):
        _running = Agent(job)
    return _running


def tracked(job: Any) -> bool:
    """Whether ``job``'s process records an MLflow run: rank 0 of a train, test or predict."""
    if job.command not in ("train", "test", "predict") or not setting(job.cfg, "mlflow.enabled"):
        return False
    if job.launcher == "spawn":  # the launching process only spawns the workers
        import ignite.distributed as idist

        return idist.get_world_size() > 1 and idist.get_rank() == 0
    return job.rank == 0


def running() -> Agent:
    """The agent ``start`` started in this process."""
    if _running is None:
        raise UserError("internal: no MLflow tracking process was started for this command")
    return _running


def serve(inbox: IO[bytes], outbox: IO[bytes]) -> None:
    """The agent's loop: one job, then operations until the run is closed or the command
    has gone."""
    from ignite_cls.tracking.recorder import Recorder

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _, (job, workspace) = read_message(inbox)
    recorder = Recorder(job, Path(workspace))
    while True:
        try:
            operation, args = read_message(inbox)
        except EOFError:
            recorder.abandon()
            return
        answer = recorder.handle(operation, args)
        if operation in ("open", "close"):
            write_message(outbox, answer)
        if operation == "close":
            return


if __name__ == "__main__":
    serve(os.fdopen(int(sys.argv[1]), "rb"), os.fdopen(int(sys.argv[2]), "wb"))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # everything is written; skip the interpreter's slow teardown
