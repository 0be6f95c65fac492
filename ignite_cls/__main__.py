"""Entry point: ``python -m ignite_cls {train,test,predict,export,config,benchmark} ...``.

Mistakes a user can make end with a one-line message and exit code 2; set
IGNITE_CLS_DEBUG=1 for the full traceback.
"""

from __future__ import annotations

import logging
import sys


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


if __name__ == "__main__":
    sys.exit(main())
