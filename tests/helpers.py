"""Small helpers the test modules share (the tests folder is on sys.path: ``import helpers``)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port nobody listens on now: each multi-process job gets its own rendezvous port,
    so jobs of tests running side by side never meet."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
