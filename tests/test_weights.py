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

from resviz.errors import CheckpointError, ResvizError, WeightsUnavailableError
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
    assert "could not be downloaded" in loaded.notice and "random weights" in loaded.notice
    # Where the file goes, where to get it, and the other way in: said, not left to guess.
    weights = W.pretrained_weights("resnet50")
    assert str(W.cached_weights_path("resnet50")) in loaded.notice and weights.url in loaded.notice
    assert "My checkpoint" in loaded.notice


def test_not_cached_and_not_downloading_says_where_and_how(tmp_path):
    torch.hub.set_dir(str(tmp_path / "hub"))
    with pytest.raises(WeightsUnavailableError) as err:
        W.load_pretrained("resnet18", download=False)
    assert str(W.cached_weights_path("resnet18")) in str(err.value)
    assert W.pretrained_weights("resnet18").url in str(err.value)


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


# --------------------------------------------------------------------------- one loader, four sources


def fake_trained(name="plain8", classes=("circle", "square", "star"), seed=3):
    """What :func:`resviz.runs.save_run` reads of a TrainedModel, without training one."""
    from resviz.preprocessing import Preprocessing

    model = create_model(name, num_classes=len(classes), seed=seed)
    prep = Preprocessing(resize=16, crop=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    meta = {
        "name": name,
        "variant_config": model.config.to_dict(),
        "dataset": "shapes",
        "class_names": list(classes),
        "preprocessing": prep.to_dict(),
        "seed": seed,
        "steps_done": 2,
        "final_train_error": 0.25,
        "curves": {"loss": [1.0, 0.5]},
    }
    return SimpleNamespace(
        model=model,
        name=name,
        dataset="shapes",
        config=SimpleNamespace(seed=seed),
        metadata=lambda: dict(meta),
        snapshots={},  # no weights kept along training
    )


@pytest.fixture
def run_dir(tmp_path):
    from resviz.runs import save_run

    return save_run(fake_trained(), tmp_path / "runs")


def test_spec_is_frozen_hashable_and_parses_the_cli_strings(tmp_path, run_dir):
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"x")
    assert W.WeightsSpec.parse("random") == W.WeightsSpec()
    assert W.WeightsSpec.parse("imagenet").kind == "imagenet"
    assert (
        W.WeightsSpec.parse(ckpt) == W.WeightsSpec.checkpoint(str(ckpt)) == W.WeightsSpec("checkpoint", ckpt)
    )
    assert W.WeightsSpec.parse(str(run_dir)) == W.WeightsSpec.run(run_dir)
    upload = W.WeightsSpec.checkpoint(b"\x00" * 10, filename="up.pt")
    assert b"\x00" not in repr(upload).encode() and "up.pt" in repr(upload)  # bytes never printed
    assert len({upload, W.WeightsSpec.checkpoint(b"\x00" * 10, filename="up.pt"), W.WeightsSpec()}) == 2
    with pytest.raises(AttributeError):
        upload.kind = "random"  # type: ignore[misc]
    for bad in (
        lambda: W.WeightsSpec("imagent"),
        lambda: W.WeightsSpec("checkpoint"),
        lambda: W.WeightsSpec("run"),
    ):
        with pytest.raises(ResvizError):
            bad()


def test_load_model_takes_each_of_the_four_sources(tmp_path, run_dir, no_network):
    import torchvision

    # This test's own hub folder: a cached ResNet-18 left in the session's would make every later
    # test in this process see ImageNet weights as downloaded (under xdist, whichever file comes next).
    torch.hub.set_dir(str(tmp_path / "hub"))
    reference = create_model("resnet8", num_classes=3, seed=7)
    path = tmp_path / "r8.pt"
    torch.save({"state_dict": reference.state_dict(), "class_names": ["a", "b", "c"]}, path)
    tv = torchvision.models.resnet18()
    cached = W.cached_weights_path("resnet18")
    cached.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tv.state_dict(), cached)

    random = W.load_model("resnet8", W.WeightsSpec("random"), seed=4)
    imagenet = W.load_model("resnet18", W.WeightsSpec("imagenet"))
    by_path = W.load_model("resnet8", W.WeightsSpec.checkpoint(path))
    by_bytes = W.load_model("resnet8", W.WeightsSpec.checkpoint(path.read_bytes(), filename="up.pt"))
    run = W.load_model("plain8", W.WeightsSpec.run(run_dir))
    assert no_network == []

    assert [m.weights for m in (random, imagenet, by_path, by_bytes, run)] == [
        "random", "imagenet", "checkpoint", "checkpoint", "run"
    ]  # fmt: skip
    assert all(not m.model.training for m in (random, imagenet, by_path, by_bytes, run))
    assert torch.equal(
        random.model.conv1.weight, W.load_model("resnet8", "random", seed=4).model.conv1.weight
    )
    assert imagenet.class_name(1) == "goldfish" and imagenet.preprocessing.crop == 224
    assert torch.equal(imagenet.model.fc.weight, tv.fc.weight)
    for loaded in (by_path, by_bytes):
        assert loaded.class_names == ("a", "b", "c") and loaded.config.num_classes == 3
        assert torch.equal(loaded.model.fc.weight, reference.fc.weight)
    assert by_path.source == "checkpoint r8.pt" and by_bytes.source == "checkpoint up.pt"
    assert run.name == "plain8" and run.class_names == ("circle", "square", "star") and run.notice is None
    assert run.preprocessing.crop == 16 and run.preprocessing.mean == (0.5, 0.5, 0.5)


def test_the_cli_strings_still_work_and_a_run_folder_is_a_run(tmp_path, run_dir):
    path = tmp_path / "r8.pt"
    torch.save(create_model("resnet8").state_dict(), path)
    assert W.load_model("resnet8", str(path)).weights == "checkpoint"
    # `--model` defaults to resnet18 in the CLI: a run brings its own variant and says so.
    loaded = W.load_model("resnet18", str(run_dir))
    assert loaded.weights == "run" and loaded.name == "plain8" and not loaded.config.skip
    assert loaded.notice == "Using the run's own model: plain8 (resnet18 does not apply to a saved run)."
    with pytest.raises(CheckpointError, match="not a saved run"):
        W.load_model("resnet8", str(tmp_path))  # a folder without run.json
    with pytest.raises(CheckpointError, match="own architecture"):
        W.load_model("plain8", run_dir, batchnorm=False)


def test_a_run_through_load_model_equals_load_run(run_dir):
    from resviz.models.weights import load_run

    direct, via = load_run(run_dir), W.load_model("plain8", str(run_dir))
    assert direct.model.state_dict().keys() == via.model.state_dict().keys()
    assert all(torch.equal(v, via.model.state_dict()[k]) for k, v in direct.model.state_dict().items())
    assert (via.name, via.class_names, via.preprocessing, via.source, via.metadata) == (
        direct.name, direct.class_names, direct.preprocessing, direct.source, direct.metadata
    )  # fmt: skip
    assert via.config == direct.config


def test_a_run_whose_weights_do_not_fit_is_explained(run_dir):
    torch.save(create_model("resnet20").state_dict(), run_dir / "model.pt")
    with pytest.raises(
        CheckpointError, match=r"model.pt does not fit its saved configuration: .*unexpected key.*resnet20"
    ):
        W.load_model("plain8", run_dir)


def test_a_run_whose_weights_would_run_code_is_refused(run_dir, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"conv1.weight": torch.zeros(1), "evil": Payload()}, run_dir / "model.pt")
    with pytest.raises(CheckpointError, match="arbitrary code"):
        W.load_model("plain8", run_dir)
    assert not marker.exists()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_every_source_lands_on_the_device(device, run_dir):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    for weights in ("random", W.WeightsSpec.run(run_dir)):
        loaded = W.load_model("plain8", weights, device=device)
        assert all(p.device.type == device for p in loaded.model.parameters())


def test_a_torchvision_checkpoint_gets_imagenet_classes_and_preprocessing(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18()  # a torchvision state dict, as users save one
    path = tmp_path / "resnet18-mine.pth"
    torch.save(reference.state_dict(), path)
    loaded = W.load_model("resnet18", str(path))
    meta = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta
    assert (
        loaded.class_names == tuple(meta["categories"]) and loaded.class_name(762) == meta["categories"][762]
    )
    assert loaded.preprocessing.resize == 256 and loaded.preprocessing.crop == 224
    assert "torchvision's metadata" in loaded.source
    # A 10-class fine-tune keeps numbered classes: only 1000 outputs are ImageNet's.
    small = torchvision.models.resnet18(num_classes=10)
    torch.save(small.state_dict(), tmp_path / "ten.pth")
    assert W.load_model("resnet18", str(tmp_path / "ten.pth")).class_names is None
