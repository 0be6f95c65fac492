"""OpenCV windows for ``--show``: whether one can open here (asked of a child process),
and one window per image for ``--wait-time`` seconds."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import cv2
import ignite.distributed as idist
import numpy as np

from ignite_cls.errors import UserError

STOP_KEYS = (27, ord("q"))  # Esc or q: show no further windows

# Runs in a child process: OpenCV's Qt backend aborts the whole process when it cannot reach
# the display, so the parent must not find out by opening a window itself.
_WINDOW_PROBE = (
    "import cv2; cv2.namedWindow('ignite_cls display check', "
    "cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL); "
    "cv2.waitKey(1); cv2.destroyAllWindows(); cv2.waitKey(1)"
)
_display_checked = False


def display_problem() -> str | None:
    """Why no OpenCV window can be opened here, or None when one can."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "--show needs a display, but neither DISPLAY nor WAYLAND_DISPLAY is set"
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _WINDOW_PROBE],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "--show: opening a test window did not finish within 60 s"
    if probe.returncode == 0:
        return None
    lines = [line.strip() for line in probe.stderr.splitlines() if line.strip()]
    display_lines = [line for line in lines if "display" in line.lower()]
    detail = (display_lines or lines or [f"exit code {probe.returncode}"])[0]
    return f"--show cannot open a window: {detail[:200]}"


def require_display() -> None:
    """Raise a one-line `UserError` when rank 0 cannot open a window, on every rank alike
    (a collective when there are several processes: call it on every rank, before inference)."""
    global _display_checked
    problem = (display_problem() or "") if idist.get_rank() == 0 else ""
    if idist.get_world_size() > 1:
        problem = idist.broadcast(problem, src=0)
    if problem:
        raise UserError(f"{problem} (save the images with --show-dir DIR instead)")
    _display_checked = True


def require_display_here() -> None:
    """`require_display` for this process alone, skipped when it already passed."""
    global _display_checked
    if not _display_checked:
        problem = display_problem()
        if problem:
            raise UserError(f"{problem} (save the images with --show-dir DIR instead)")
        _display_checked = True


def show_window(title: str, rgb: np.ndarray, wait_time: float) -> bool:
    """Show `rgb` in its own window for `wait_time` seconds (0: until a key is pressed or
    the window is closed); False when the user pressed Esc or q to see no more."""
    cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
    cv2.imshow(title, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    deadline = time.monotonic() + wait_time if wait_time > 0 else math.inf
    key = -1
    while key == -1 and time.monotonic() < deadline:
        step_ms = min(100, max(1, math.ceil((deadline - time.monotonic()) * 1000)))
        key = cv2.waitKey(step_ms)
        if not _window_open(title):
            break  # closed by the user
    if _window_open(title):
        cv2.destroyWindow(title)
        cv2.waitKey(1)  # let the GUI process the close
    return key == -1 or (key & 0xFF) not in STOP_KEYS


def _window_open(title: str) -> bool:
    try:
        return cv2.getWindowProperty(title, cv2.WND_PROP_VISIBLE) >= 1
    except cv2.error:
        return False
