"""Checkpoint files: safe loading, broken files named, progress ordering, URL downloads."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import threading
from pathlib import Path

import pytest
import torch

from ignite_cls.checkpoint_io import (
    checkpoint_progress,
    download,
    load_checkpoint,
    periodic_checkpoints,
    save_checkpoint,
)
from ignite_cls.errors import UserError
from ignite_cls.handlers.checkpoint import load_resume_checkpoint


class Payload:
    """Pickling this runs code on load: what weights_only must refuse."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_payload_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "extra": Payload(marker)}, path)
    with pytest.raises(UserError, match="refusing to load .*evil.pt"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "checkpoint is empty"),
        (b"this is not a checkpoint", "truncated or corrupt"),
    ],
)
def test_broken_files_are_named(tmp_path, content, message):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=f"{message}.*broken.pt"):
        load_checkpoint(path)


def test_truncated_checkpoint_is_detected(tmp_path):
    path = tmp_path / "epoch_1.pt"
    save_checkpoint({"model": {"w": torch.randn(1000)}}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_not_a_dict_and_missing_file(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(UserError, match="not a checkpoint"):
        load_checkpoint(path)
    with pytest.raises(UserError, match="checkpoint not found: .*nothing.pt"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_progress_order_is_training_progress_not_file_time(tmp_path):
    names = ["epoch_3.pt", "epoch_4_iter_1600.pt", "epoch_10.pt", "epoch_2_iter_500.pt"]
    for i, name in enumerate(names):
        save_checkpoint({"i": i}, tmp_path / name)
    (tmp_path / "best_accuracy_top1_epoch_3.pt").write_bytes(b"x")
    os.utime(tmp_path / "epoch_2_iter_500.pt", (2e9, 2e9))  # newest file time
    ordered = [p.name for p in periodic_checkpoints(tmp_path)]
    assert ordered == ["epoch_10.pt", "epoch_4_iter_1600.pt", "epoch_3.pt", "epoch_2_iter_500.pt"]
    assert checkpoint_progress("best_accuracy_top1_epoch_3.pt") is None


def test_resume_falls_back_past_a_corrupt_newest_checkpoint(tmp_path, caplog):
    save_checkpoint({"model": {}, "step": 1}, tmp_path / "epoch_1.pt")
    (tmp_path / "epoch_2.pt").write_bytes(b"\x80\x02garbage")
    checkpoint, source = load_resume_checkpoint("auto", tmp_path)
    assert checkpoint["step"] == 1 and source.endswith("epoch_1.pt")
    assert "skipping epoch_2.pt" in caplog.text
    with pytest.raises(UserError, match="no checkpoint to resume from"):
        load_resume_checkpoint("auto", tmp_path / "empty")


class Server:
    """A local HTTP server over a folder, counting requests."""

    def __init__(self, folder: Path):
        counts = self.requests = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(folder), **kwargs)

            def do_GET(self):
                counts.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("IGNITE_CLS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "www").mkdir()
    srv = Server(tmp_path / "www")
    yield srv
    srv.close()


def test_hash_prefix_in_name_is_verified(server, tmp_path):
    www = tmp_path / "www"
    save_checkpoint({"model": {"w": torch.ones(2)}}, www / "plain.pt")
    digest = hashlib.sha256((www / "plain.pt").read_bytes()).hexdigest()
    (www / f"net-{digest[:8]}.pth").write_bytes((www / "plain.pt").read_bytes())
    (www / "net-deadbeef.pth").write_bytes((www / "plain.pt").read_bytes())
    good = download(f"{server.url}/net-{digest[:8]}.pth")
    assert torch.equal(load_checkpoint(good)["model"]["w"], torch.ones(2))
    with pytest.raises(UserError, match="hash mismatch"):
        download(f"{server.url}/net-deadbeef.pth")
    assert not list((tmp_path / "cache").rglob("net-deadbeef.pth"))


def test_url_downloads_once(server, tmp_path):
    save_checkpoint({"model": {}}, tmp_path / "www" / "m.pt")
    first = download(f"{server.url}/m.pt")
    second = download(f"{server.url}/m.pt")
    assert first == second and server.requests == ["/m.pt"]


def test_url_errors_are_one_line(server):
    with pytest.raises(UserError, match="unsupported URL scheme 'ftp'"):
        download("ftp://127.0.0.1/x.pt")
    with pytest.raises(UserError, match="HTTP 404"):
        download(f"{server.url}/missing.pt")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(UserError, match="cannot download"):
        download(f"http://127.0.0.1:{port}/x.pt")


def test_url_timeout_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("IGNITE_CLS_CACHE", str(tmp_path / "cache"))
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection, never answers
    try:
        with pytest.raises(UserError, match="cannot download .*timed out"):
            download(f"http://127.0.0.1:{silent.getsockname()[1]}/x.pt", timeout=0.5)
    finally:
        silent.close()
