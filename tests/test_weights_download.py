"""Issue 21, section 1: ImageNet weights fetched for later offline use (``python -m resviz weights``,
``make weights``), tested against a local HTTP server that serves a small valid checkpoint: the
download is hash-checked, reported with its size, cached where torch hub looks, and loads."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import threading
from types import SimpleNamespace

import pytest
import torch

import resviz.models.weights as W
from resviz.cli import main


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A tiny resnet_tiny state dict served at http://127.0.0.1:PORT/tiny-<sha prefix>.pth, and the
    variant resnet18 pointed at it (its own shape does not matter to the download)."""
    from resviz.models import create_model

    buf = io.BytesIO()
    torch.save(create_model("resnet_tiny", seed=0).state_dict(), buf)
    data = buf.getvalue()
    name = f"tiny-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / name).write_bytes(data)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    handler.log_message = lambda *a, **k: None  # quiet
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{name}"
    monkeypatch.setattr(W, "pretrained_weights", lambda _name: SimpleNamespace(url=url))
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield url, data
    server.shutdown()


def test_the_weights_command_downloads_with_progress_and_caches(served, capsys):
    _, data = served
    assert not W.is_cached("resnet18")
    assert main(["weights", "resnet18"]) == 0
    out, err = capsys.readouterr()
    path = W.cached_weights_path("resnet18")
    assert path.read_bytes() == data and str(path) in out
    assert f"of {len(data) / 1e6:.0f} MB" in err  # the size, from Content-Length
    state = torch.load(path, weights_only=True, map_location="cpu")
    assert "fc.weight" in state
    # A second run downloads nothing.
    assert main(["weights", "resnet18"]) == 0
    assert "already cached" in capsys.readouterr().out


def test_a_corrupted_download_is_refused_and_leaves_nothing(served, tmp_path, monkeypatch, capsys):
    url, data = served
    bad = url.rsplit("/", 1)[0] + "/tiny-00000000.pth"  # a hash prefix the bytes do not have
    (tmp_path / "www" / "tiny-00000000.pth").write_bytes(data)
    monkeypatch.setattr(W, "pretrained_weights", lambda _name: SimpleNamespace(url=bad))
    assert main(["weights", "resnet18"]) == 2
    assert "corrupted" in capsys.readouterr().err
    assert not W.is_cached("resnet18")
    assert not list((tmp_path / "hub" / "checkpoints").glob("tmp*"))  # no partial file left


def test_offline_is_one_sentence(served, monkeypatch, capsys):
    monkeypatch.setattr(
        W, "pretrained_weights", lambda _name: SimpleNamespace(url="http://127.0.0.1:9/x-1.pth")
    )
    assert main(["weights", "resnet18"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ImageNet weights for resnet18 are not cached") and err.count("\n") == 1
