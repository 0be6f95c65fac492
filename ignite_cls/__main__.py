"""Entry point: ``python -m ignite_cls {train,test,predict,export,config,benchmark} ...``.

Mistakes a user can make end with a one-line message and exit code 2; set
IGNITE_CLS_DEBUG=1 for the full traceback.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys

_exit_code = 1  # what the process ends with unless ``main`` returns (an uncaught bug: 1)


def main(argv: list[str] | None = None) -> int:
    import fire

    from ignite_cls.cli import COMMANDS, gather_cfg_options
    from ignite_cls.errors import REPORTED, report

    logger = logging.getLogger("ignite_cls")
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler(sys.stderr))
        logger.setLevel(logging.INFO)
        logger.propagate = False
    argv = gather_cfg_options(list(sys.argv[1:] if argv is None else argv))
    try:
        fire.Fire(COMMANDS, command=argv, name="ignite_cls")
    except REPORTED as e:
        code = report(e)
        if code is None:
            raise
        return code
    return 0


def _exit_now() -> None:
    """The last exit handler: everything is written, the other handlers have run (loader
    workers stopped, the MLflow run closed); end the process without the interpreter's
    teardown of every imported module, which takes seconds after torch and MLflow."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_code)


def run() -> None:
    """The command line: ``main``, then a quick exit (``_exit_now``)."""
    global _exit_code
    atexit.register(_exit_now)  # registered first, so it runs after every other handler
    try:
        _exit_code = main()
    except SystemExit as e:  # e.g. a spawned worker's exit code, passed on
        _exit_code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    sys.exit(_exit_code)


if __name__ == "__main__":
    run()
