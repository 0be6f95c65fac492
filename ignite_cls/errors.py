"""The one exception type for mistakes a user can make (bad config, bad data, bad flags).

The entry point turns it into a one-line message and exit code 2; anything else is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """A problem the user can fix; its message is shown on one line, without a traceback."""


class Interrupted(Exception):
    """Training stopped on SIGTERM or Ctrl-C after writing a checkpoint; the process exits
    with 128 + the signal number so schedulers see it did not finish."""

    def __init__(self, signum: int, iteration: int, checkpoint: str | None):
        import signal

        self.signum = signum
        self.iteration = iteration
        self.checkpoint = checkpoint
        name = signal.Signals(signum).name
        saved = f"checkpoint {checkpoint}" if checkpoint else "no checkpoint (rank 0 saves it)"
        super().__init__(
            f"stopped by {name} at iteration {iteration}; {saved}; continue with --resume"
        )
