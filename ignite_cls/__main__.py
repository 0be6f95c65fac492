"""Entry point: ``python -m ignite_cls {train,test,config,benchmark} ...``.

Mistakes a user can make end with a one-line message and exit code 2; set
IGNITE_CLS_DEBUG=1 for the full traceback.
"""

from __future__ import annotations

import logging
import os
import sys


def one_line(error: Exception) -> str:
    """The message alone, also for errors re-raised from a DataLoader worker (whose message
    carries the worker's traceback and ends with ``module.Type: message``)."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    last = lines[-1] if lines else type(error).__name__
    prefix = f"{type(error).__module__}.{type(error).__qualname__}: "
    return last.removeprefix(prefix)


def main(argv: list[str] | None = None) -> int:
    import fire

    from ignite_cls.cli import COMMANDS, gather_cfg_options
    from ignite_cls.errors import Interrupted, UserError

    logger = logging.getLogger("ignite_cls")
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler(sys.stderr))
        logger.setLevel(logging.INFO)
        logger.propagate = False
    argv = gather_cfg_options(list(sys.argv[1:] if argv is None else argv))
    try:
        fire.Fire(COMMANDS, command=argv, name="ignite_cls")
    except UserError as e:
        if os.environ.get("IGNITE_CLS_DEBUG") == "1":
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
