"""One training job per work dir: an exclusive lock that dies with its process."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from ignite_cls.errors import UserError

LOCK_NAME = ".lock"


def lock_work_dir(work_dir: Path) -> IO:
    """Take the work dir's lock (flock: released by the kernel when the process dies, so a
    killed job never leaves it stuck). Keep the returned file open for the job's lifetime."""
    work_dir.mkdir(parents=True, exist_ok=True)
    handle = open(work_dir / LOCK_NAME, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise UserError(
            f"work dir {work_dir} is in use by another training job (pid {owner}); "
            "wait for it or choose another --work-dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
