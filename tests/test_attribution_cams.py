"""The CAM family against pytorch-grad-cam's implementation of each method (test-only dependency
``grad-cam``): random weights and the bundled trained demo, several layers, batches of 1 and 4."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from resviz.analysis.cams_forward import AttributionStopped, forward_cam, probe_layer
from resviz.analysis.grad_cam import gradient_cams
from resviz.hooks import hook_count, resolve_layers
from resviz.models import create_model

pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

torch.set_num_threads(1)

REFERENCE = {
    "gradcam": "GradCAM",
    "gradcampp": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "hirescam": "HiResCAM",
    "gradcam_elementwise": "GradCAMElementWise",
    "eigencam": "EigenCAM",
    "eigengradcam": "EigenGradCAM",
    "fem": "FEM",
    "kpca_cam": "KPCA_CAM",
    "scorecam": "ScoreCAM",
    "ablationcam": "AblationCAM",
}
LAYERS = ["layer2", "layer3", "layer3.0.conv2", "layer3.0.shortcut_out"]


def _demo() -> torch.nn.Module:
    """The bundled demo ResNet-20, trained on the shapes dataset."""
    from resviz.models.weights import load_model
    from resviz.runs import BUNDLED_DIR

    return load_model("resnet20", str(BUNDLED_DIR / "demo-shapes-resnet20")).model.eval()


@pytest.fixture(scope="module", params=["random", "trained"])
def model(request):
    return create_model("resnet8", seed=0).eval() if request.param == "random" else _demo()


def _inputs(n: int) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(n))


def _reference(model, x, layer: str, method: str, targets) -> np.ndarray:
    module = resolve_layers(model, [layer])[layer]
    cls = getattr(pgc, REFERENCE[method])
    with cls(model=model, target_layers=[module]) as cam:
        if method in ("scorecam", "ablationcam"):
            cam.batch_size = 16
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])


def _assert_same(ours: np.ndarray, ref: np.ndarray, what: str) -> None:
    for i, (a, b) in enumerate(zip(ours, ref)):
        diff = float(np.abs(a - b).max())
        if a.std() < 1e-6 and b.std() < 1e-6:  # both blank: nothing to correlate
            continue
        r = float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
        assert r >= 0.999 and diff <= 0.01, f"{what} image {i}: pearson {r:.5f}, max diff {diff:.4f}"


GRADIENT = [
    "gradcam",
    "gradcampp",
    "xgradcam",
    "layercam",
    "hirescam",
    "gradcam_elementwise",
    "eigencam",
    "eigengradcam",
    "fem",
    "kpca_cam",
]


@pytest.mark.parametrize("n", [1, 4])
def test_gradient_cams_equal_pytorch_grad_cam(model, n):
    x = _inputs(n)
    ours = gradient_cams(model, x, LAYERS, GRADIENT)
    targets = ours[(LAYERS[0], "gradcam")].targets
    for (layer, method), r in ours.items():
        _assert_same(r.maps, _reference(model, x, layer, method, targets), f"{method} at {layer}")
    assert hook_count(model) == 0


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
@pytest.mark.parametrize("n", [1, 4])
def test_forward_cams_equal_pytorch_grad_cam(model, method, n, monkeypatch):
    import resviz.analysis.cams_forward as cams_forward

    # Score-CAM's passes on the BatchNorm-folded channels-last copy, which these tiny inputs would
    # not otherwise pay for.
    monkeypatch.setattr(cams_forward, "COPY_PAYS_SECONDS", 0.0)
    x = _inputs(n)
    # Ablation-CAM on post-ReLU layers: elsewhere pytorch-grad-cam's ablation value moves with the
    # position in its batch (each ablated copy lowers the minimum the next one is set below).
    for layer in ["layer2", "layer3"] if method == "ablationcam" else ["layer3", "layer3.0.conv2"]:
        r = forward_cam(model, x, layer, method, batch_size=24)
        _assert_same(r.maps, _reference(model, x, layer, method, r.targets), f"{method} at {layer}")
    assert hook_count(model) == 0


def test_forward_cam_progress_and_stop(model):
    seen = []

    def progress(done: int, total: int) -> bool:
        seen.append((done, total))
        return len(seen) < 2

    channels = probe_layer(model, "layer3", 32)[0]
    with pytest.raises(AttributionStopped, match="Stopped after"):
        forward_cam(model, _inputs(1), "layer3", "ablationcam", batch_size=16, progress=progress)
    assert seen == [(16, channels), (32, channels)]
    assert hook_count(model) == 0
