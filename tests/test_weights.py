"""Weights: the torch hub cache path a real download takes, checkpoints, and refusing bad pickles.

No test touches the network: downloads go through a fake ``urlopen``.
"""

from __future__ import annotations

import hashlib
import io
import os
import urllib.error
from types import SimpleNamespace

import pytest
import torch

from resviz.errors import CheckpointError, WeightsUnavailableError
from resviz.models import create_model
from resviz.models import weights as W


def state_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.fixture
def no_network(monkeypatch):
    calls = []

    def refuse(url, timeout=None):
        calls.append(url)
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(W.urllib.request, "urlopen", refuse)
    return calls


def test_cached_path_lives_in_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.hub.set_dir(str(tmp_path / "hub"))
    path = W.cached_weights_path("resnet18")
    assert path.parent == tmp_path / "hub" / "checkpoints"
    assert path.name == "resnet18-f37072fd.pth"


def test_pretrained_weights_load_from_the_hub_cache(tmp_path, no_network):
    import torchvision

    torch.hub.set_dir(str(tmp_path / "hub"))
    reference = torchvision.models.resnet18().eval()
    path = W.cached_weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)

    loaded = W.load_model("resnet18", "imagenet")
    assert no_network == []  # the cache was used; nothing was fetched
    assert loaded.weights == "imagenet" and loaded.trained and loaded.notice is None
    assert len(loaded.class_names) == 1000 and loaded.class_name(1) == "goldfish"
    assert loaded.preprocessing.crop == 224 and loaded.preprocessing.resize == 256
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), reference(x), atol=1e-5)


def test_offline_without_cache_falls_back_to_random_and_says_so(tmp_path, no_network):
    torch.hub.set_dir(str(tmp_path / "hub"))
    loaded = W.load_model("resnet50", "imagenet")
    assert len(no_network) == 1
    assert loaded.weights == "random" and not loaded.trained
    assert "Could not download" in loaded.notice and "random weights" in loaded.notice


def test_variants_without_pretrained_weights_say_which_have_them():
    with pytest.raises(WeightsUnavailableError, match="resnet18"):
        W.pretrained_weights("plain18")
    loaded = W.load_model("resnet56", "imagenet")
    assert "no pretrained weights" in loaded.notice


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_download_reports_progress_and_checks_the_hash(tmp_path, monkeypatch):
    torch.hub.set_dir(str(tmp_path / "hub"))
    payload = state_bytes(create_model("resnet18").state_dict())
    digest = hashlib.sha256(payload).hexdigest()[:8]
    fake = SimpleNamespace(url=f"https://example.invalid/resnet18-{digest}.pth")
    monkeypatch.setattr(W, "pretrained_weights", lambda name: fake)
    monkeypatch.setattr(W.urllib.request, "urlopen", lambda url, timeout: FakeResponse(payload))
    seen = []
    path = W.download_weights("resnet18", progress=lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == payload
    assert seen[-1] == (len(payload), len(payload))

    # A corrupted download is refused and leaves nothing behind.
    path.unlink()
    monkeypatch.setattr(W.urllib.request, "urlopen", lambda url, timeout: FakeResponse(payload[:-10]))
    with pytest.raises(WeightsUnavailableError, match="corrupted"):
        W.download_weights("resnet18")
    assert list(path.parent.iterdir()) == []


def test_checkpoint_round_trip_with_class_names_and_prefixes():
    model = create_model("resnet_tiny", num_classes=3, seed=1).eval()
    wrapped = {
        "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
        "class_names": ["cat", "dog", "fox"],
    }
    loaded = W.load_checkpoint("resnet_tiny", state_bytes(wrapped), filename="run.pt")
    assert loaded.weights == "checkpoint" and loaded.config.num_classes == 3
    assert loaded.class_names == ("cat", "dog", "fox")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))


def test_safetensors_checkpoint(tmp_path):
    from safetensors.torch import save_file

    model = create_model("resnet8", seed=2)
    path = tmp_path / "m.safetensors"
    save_file(model.state_dict(), str(path))
    loaded = W.load_checkpoint("resnet8", path)
    assert torch.equal(loaded.model.conv1.weight, model.conv1.weight)


def test_mismatch_is_explained_with_a_guess():
    data = state_bytes(create_model("resnet20").state_dict())
    with pytest.raises(CheckpointError) as err:
        W.load_checkpoint("resnet56", data, filename="r20.pt")
    message = str(err.value)
    assert "r20.pt does not fit resnet56" in message
    assert "missing key" in message and "resnet20" in message


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    data = state_bytes({"conv1.weight": torch.zeros(1), "evil": Payload()})
    with pytest.raises(CheckpointError, match="arbitrary code"):
        W.load_checkpoint("resnet8", data, filename="evil.pt")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("data", "match"),
    [(b"", "empty"), (b"not a checkpoint at all", "not a PyTorch checkpoint")],
)
def test_garbage_checkpoints_get_one_sentence(data, match):
    with pytest.raises(CheckpointError, match=match):
        W.load_checkpoint("resnet8", data, filename="x.pt")


def test_a_checkpoint_of_tensors_but_no_state_dict_is_refused():
    with pytest.raises(CheckpointError, match="no state dict"):
        W.load_checkpoint("resnet8", state_bytes([torch.zeros(2)]), filename="list.pt")


def test_random_models_are_seeded_and_untrained():
    a, b = W.load_model("resnet8", seed=4), W.load_model("resnet8", seed=4)
    assert not a.trained and "random" in a.source
    assert torch.equal(a.model.conv1.weight, b.model.conv1.weight)
    assert a.preprocessing.crop == 32
