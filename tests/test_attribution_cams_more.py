"""FullGrad and Shapley-CAM against pytorch-grad-cam's, and Smooth Grad-CAM++, SS-CAM and IS-CAM
against torch-cam's (test-only dependencies ``grad-cam`` and ``torchcam``): random and trained
weights, two layers, batches of 1 and 4.

The noisy methods draw their noise from torch's generator: ours from a ``torch.Generator`` seeded
with the method's ``seed`` option, torch-cam from the global generator, which the test seeds with
the same number just before calling it. Both draw one noise tensor of the same shape per sample, in
the same order, so both see the very same noise (and the maps agree to float rounding).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from resviz.analysis.attribution import attribute
from resviz.analysis.attribution_core import normalize_maps
from resviz.analysis.cams_forward import AttributionStopped
from resviz.analysis.methods import (
    IntegratedScoreCamOptions,
    SmoothGradCamppOptions,
    SmoothScoreCamOptions,
)
from resviz.hooks import hook_count
from resviz.models import create_model

pgc = pytest.importorskip("pytorch_grad_cam")
tcm = pytest.importorskip("torchcam.methods")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

torch.set_num_threads(1)
LAYERS = ["layer2", "layer3"]
SIDE = 32


def _layers(n: int) -> list[str]:
    """Both layers for one image; the narrower one for a batch (the per-channel CAMs cost a pass per
    channel, per sample, per image, and the reference as much again)."""
    return LAYERS if n == 1 else LAYERS[:1]


def _demo() -> torch.nn.Module:
    """The bundled demo ResNet-20, trained on the shapes dataset."""
    from resviz.models.weights import load_model
    from resviz.runs import BUNDLED_DIR

    return load_model("resnet20", str(BUNDLED_DIR / "demo-shapes-resnet20")).model.eval()


@pytest.fixture(autouse=True)
def _inference_copy(monkeypatch):
    """The masked images on the BatchNorm-folded channels-last copy, as on a full-size input (these
    tiny inputs would not otherwise pay for it)."""
    import resviz.analysis.cams_forward as cams_forward

    monkeypatch.setattr(cams_forward, "COPY_PAYS_SECONDS", 0.0)


@pytest.fixture(scope="module", params=["random", "trained"])
def model(request):
    return create_model("resnet8", seed=0).eval() if request.param == "random" else _demo()


def _inputs(n: int) -> torch.Tensor:
    return torch.randn(n, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(10 + n))


def _assert_same(ours: np.ndarray, ref: np.ndarray, what: str) -> None:
    assert ours.shape == ref.shape, what
    for i, (a, b) in enumerate(zip(ours, ref)):
        diff = float(np.abs(a - b).max())
        if a.std() < 1e-6 and b.std() < 1e-6:  # both blank: nothing to correlate
            continue
        r = float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
        assert r >= 0.999 and diff <= 0.01, f"{what} image {i}: pearson {r:.5f}, max diff {diff:.4f}"


def _torchcam(model, x, cls, layer: str, targets, seed: int | None = None, **kwargs) -> np.ndarray:
    """torch-cam's map at the layer, upsampled to the input as ours (bilinear) and scaled to [0, 1]."""
    with cls(model, layer, input_shape=(3, SIDE, SIDE), **kwargs) as extractor:
        with torch.no_grad():
            model(x)  # torch-cam reads the input and the activation from this forward's hooks
        if seed is not None:
            torch.manual_seed(seed)  # the same generator state that our `seed` option gives
        cam = extractor(class_idx=[int(t) for t in targets])[0]
    up = F.interpolate(cam[:, None], size=(SIDE, SIDE), mode="bilinear", align_corners=False)[:, 0]
    return normalize_maps(up).numpy()


@pytest.mark.parametrize("n", [1, 4])
def test_fullgrad_equals_pytorch_grad_cam(model, n):
    x = _inputs(n)
    ours = attribute(model, x, "fullgrad")
    assert ours.layer is None and ours.maps.shape == (n, SIDE, SIDE)
    quiet = contextlib.redirect_stdout(io.StringIO())  # it prints that target_layers is ignored
    with quiet, pgc.FullGrad(model=model, target_layers=[]) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in ours.targets])
    _assert_same(ours.maps, ref, "FullGrad")
    assert hook_count(model) == 0


@pytest.mark.parametrize("n", [1, 4])
def test_smooth_grad_campp_equals_torchcam(model, n):
    x = _inputs(n)
    for layer in LAYERS:
        opts = SmoothGradCamppOptions(num_samples=3, std=0.3, seed=5)
        ours = attribute(model, x, "smoothgradcampp", layer=layer, options=opts)
        ref = _torchcam(model, x, tcm.SmoothGradCAMpp, layer, ours.targets, seed=5, num_samples=3, std=0.3)
        _assert_same(ours.maps, ref, f"Smooth Grad-CAM++ at {layer}")
    assert hook_count(model) == 0


@pytest.mark.parametrize("n", [1, 4])
def test_ss_cam_equals_torchcam(model, n):
    x = _inputs(n)
    for layer in _layers(n):
        opts = SmoothScoreCamOptions(batch_size=48, num_samples=2, std=0.5, seed=3)
        ours = attribute(model, x, "sscam", layer=layer, options=opts)
        ref = _torchcam(model, x, tcm.SSCAM, layer, ours.targets, seed=3, num_samples=2, std=0.5)
        _assert_same(ours.maps, ref, f"SS-CAM at {layer}")
    assert hook_count(model) == 0


@pytest.mark.parametrize("n", [1, 4])
def test_is_cam_equals_torchcam(model, n):
    x = _inputs(n)
    for layer in _layers(n):
        ours = attribute(model, x, "iscam", layer=layer, options=IntegratedScoreCamOptions(num_samples=2))
        ref = _torchcam(model, x, tcm.ISCAM, layer, ours.targets, num_samples=2)
        _assert_same(ours.maps, ref, f"IS-CAM at {layer}")
    assert hook_count(model) == 0


def test_noise_is_the_seed_s_and_the_model_is_left_as_it_was():
    model = create_model("resnet8", seed=0).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = _inputs(1)
    a = attribute(model, x, "smoothgradcampp", layer="layer3", options=SmoothGradCamppOptions(seed=1))
    b = attribute(model, x, "smoothgradcampp", layer="layer3", options=SmoothGradCamppOptions(seed=1))
    c = attribute(model, x, "smoothgradcampp", layer="layer3", options=SmoothGradCamppOptions(seed=2))
    np.testing.assert_array_equal(a.maps, b.maps)
    assert np.abs(a.maps - c.maps).max() > 1e-3
    seen = []

    def stop_second(done: int, total: int) -> bool:
        seen.append((done, total))
        return len(seen) < 2

    opts = SmoothScoreCamOptions(batch_size=16, num_samples=3)
    with pytest.raises(AttributionStopped, match="Stopped after 32 of 192"):
        attribute(model, x, "sscam", layer="layer3", options=opts, progress=stop_second)
    assert seen == [(16, 192), (32, 192)]  # 64 channels x 3 samples
    assert hook_count(model) == 0 and not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.is_contiguous() for p in model.parameters())  # the channels-last copy stayed a copy


@pytest.mark.parametrize("n", [1, 4])
def test_shapley_cam_equals_pytorch_grad_cam(model, n):
    x = _inputs(n)
    for layer in LAYERS:
        ours = attribute(model, x, "shapleycam", layer=layer)
        module = dict(model.named_modules())[layer]
        with pgc.ShapleyCAM(model=model, target_layers=[module]) as cam:
            ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in ours.targets])
        _assert_same(ours.maps, ref, f"Shapley-CAM at {layer}")
    assert hook_count(model) == 0


class _Smooth(torch.nn.Module):
    """SiLU above the layer, so that the Hessian term of Shapley-CAM is not zero."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.head = torch.nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.nn.functional.silu(self.conv1(x))
        b = torch.nn.functional.silu(self.conv2(a)) ** 2
        return self.head(b.mean(dim=(2, 3)))


def test_shapley_cam_second_order_term_on_a_smooth_net():
    model = _Smooth().eval()
    x = _inputs(2)
    ours = attribute(model, x, "shapleycam", layer="conv1")
    with pgc.ShapleyCAM(model=model, target_layers=[model.conv1]) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in ours.targets])
    _assert_same(ours.maps, ref, "Shapley-CAM on a smooth net")
    grad_cam = attribute(model, x, "gradcam", layer="conv1", target=ours.targets.tolist())
    assert np.abs(grad_cam.maps - ours.maps).max() > 0.01  # the Hessian term is there
