"""Reading and writing checkpoint files safely.

Writes are atomic and durable (temp file, flush, fsync, rename, fsync of the folder), so a
kill at any moment leaves either the old file or the new one. Reads use
``torch.load(weights_only=True)``, so a file carrying a pickled payload cannot run code, and
turn every way a file can be broken into a one-line UserError. URLs (http/https) are
downloaded once into a cache folder, atomically, and verified when their name carries a
sha256 prefix (torch hub's ``name-<hash>.pth`` convention).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from ignite_cls.errors import UserError

CHECKPOINT_NAME = re.compile(r"^epoch_(\d+)(?:_iter_(\d+))?\.pt$")
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,64})\.")


def cache_dir() -> Path:
    """Where downloaded checkpoints live: $IGNITE_CLS_CACHE or ~/.cache/ignite_cls."""
    return Path(os.environ.get("IGNITE_CLS_CACHE", Path.home() / ".cache" / "ignite_cls"))


def is_url(source: str | os.PathLike) -> bool:
    return "://" in str(source)


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(file)`` on a temp file beside ``path``, fsync it, then rename it into place."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException as e:
        full = _disk_full(e, path.parent)
        Path(tmp_name).unlink(missing_ok=True)
        if full:
            raise UserError(f"no space left on the device while writing {path}") from e
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _disk_full(error: BaseException, folder: Path) -> bool:
    """ENOSPC, or a failed write on a file system with (almost) no space left: torch.save
    reports a full disk as a zip-writer RuntimeError, not as ENOSPC."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    return isinstance(error, Exception) and shutil.disk_usage(folder).free < (1 << 20)


def save_checkpoint(checkpoint: dict, path: str | os.PathLike) -> None:
    import torch

    atomic_write(Path(path), lambda f: torch.save(checkpoint, f))


def download(url: str, timeout: float = 60.0) -> Path:
    """Download ``url`` into the cache once (atomic write) and return the local path."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https"):
        raise UserError(f"unsupported URL scheme '{parsed.scheme}' in {url} (http or https only)")
    name = Path(parsed.path).name or "checkpoint.pt"
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    target = cache_dir() / "checkpoints" / digest / name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            atomic_write(target, lambda f: shutil.copyfileobj(response, f))
    except urllib.error.HTTPError as e:
        raise UserError(f"cannot download {url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(f"cannot download {url}: {reason}") from e
    expected = _HASH_IN_NAME.search(name)
    if expected:
        actual = sha256_of(target)
        if not actual.startswith(expected.group(1)):
            target.unlink()
            raise UserError(
                f"hash mismatch for {url}: file sha256 starts {actual[: len(expected.group(1))]}, "
                f"its name says {expected.group(1)}"
            )
    return target


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve(source: str | os.PathLike) -> Path:
    """A local path for a checkpoint path or URL; a missing file is a UserError."""
    if is_url(source):
        return download(str(source))
    path = Path(source).expanduser()
    if not path.is_file():
        raise UserError(f"checkpoint not found: {source}")
    return path


def load_checkpoint(source: str | os.PathLike) -> dict:
    """Load a checkpoint (path or URL) on the CPU, safely; broken files give one-line errors."""
    import torch

    path = resolve(source)
    if path.stat().st_size == 0:
        raise UserError(f"checkpoint is empty (0 bytes): {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise UserError(
                f"refusing to load {path}: it holds objects other than tensors and plain data "
                f"(possible code payload): {first_line}"
            ) from e
        raise UserError(f"checkpoint is truncated or corrupt: {path} ({first_line})") from e
    if not isinstance(checkpoint, dict):
        raise UserError(f"not a checkpoint (no state dict inside): {path}")
    return checkpoint


def model_state(checkpoint: dict, source: str, use_ema: bool = True) -> dict:
    """The model weights a checkpoint holds: the average of the weights (``ema_model``) when
    it has one and ``use_ema`` (``ema.use_for_inference``), else ``model`` (or
    ``state_dict``, as others save it)."""
    key = weights_key(checkpoint, use_ema)
    state = checkpoint.get(key, checkpoint.get("state_dict"))
    if not isinstance(state, dict):
        raise UserError(f"not a model checkpoint (no 'model' weights inside): {source}")
    return state


def weights_key(checkpoint: dict, use_ema: bool) -> str:
    """``ema_model`` or ``model``: which weights ``model_state`` takes."""
    return "ema_model" if use_ema and isinstance(checkpoint.get("ema_model"), dict) else "model"


def checkpoint_progress(name: str) -> tuple[int, int] | None:
    """Training progress a periodic checkpoint's name encodes, as a sortable key.

    ``epoch_3.pt`` is the end of epoch 3; ``epoch_4_iter_1600.pt`` is iteration 1600, inside
    epoch 4. The key (completed epochs, iteration within the running epoch or 0) orders them.
    """
    match = CHECKPOINT_NAME.match(name)
    if not match:
        return None
    epoch, iteration = int(match.group(1)), match.group(2)
    if iteration is None:
        return (epoch, 0)
    return (epoch - 1, int(iteration))


def periodic_checkpoints(work_dir: str | os.PathLike) -> list[Path]:
    """The work dir's periodic checkpoints, most progressed first."""
    folder = Path(work_dir)
    if not folder.is_dir():
        return []
    found = [(checkpoint_progress(p.name), p) for p in folder.iterdir() if p.is_file()]
    return [p for key, p in sorted((kp for kp in found if kp[0]), reverse=True)]
