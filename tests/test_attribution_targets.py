"""The CAM family and FullGrad against pytorch-grad-cam and torch-cam where a wrong implementation
would show: a batch of three images, each explained for a *different* class that is *not* its
argmax, on nets unlike the option-A CIFAR ResNet the code was written against (a bottleneck net
with projection shortcuts, a pre-activation net, a plain net), with random BatchNorm statistics
and biases so that FullGrad's bias terms and every BatchNorm take part.

A method that silently explains the predicted class, or that reports the asked class but weighs
the channels for the argmax, fails here; with argmax targets (the other reference tests) it would
not.
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
from resviz.analysis.grad_cam import gradient_cams
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

from tests.test_attribution_cams import GRADIENT, REFERENCE, _assert_same  # noqa: E402

torch.set_num_threads(1)

# name -> (input side, two layers with spatial output). ImageNet-style stems divide by 4 before
# layer1, so these take 64 pixels to keep a 4x4 map at layer3.
NETS = {
    "resnet_tiny_bottleneck": (64, ["layer2", "layer3"]),  # bottleneck, projection (B) shortcuts
    "preact_resnet_tiny": (64, ["layer2", "layer3"]),  # pre-activation blocks
    "plain8": (32, ["layer2", "layer3"]),  # no shortcut at all
}


def _randomize_batchnorm(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every BatchNorm gets random running statistics, scale and shift (a fresh net has mean 0,
    variance 1, scale 1, shift 0, where FullGrad's bias term is zero and BatchNorm is the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(0.3 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.3 * torch.randn(c, generator=g))
    return model.eval()


@pytest.fixture(scope="module", params=list(NETS))
def net(request):
    name = request.param
    side, layers = NETS[name]
    model = _randomize_batchnorm(create_model(name, seed=0), seed=1)
    x = torch.randn(3, 3, side, side, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        logits = model(x)
    targets = _other_targets(logits)
    return name, model, x, layers, targets


def _other_targets(logits: torch.Tensor) -> list[int]:
    """One class per image, never its argmax, and no two images the same (the 2nd, 3rd, ... best)."""
    used: set[int] = set()
    out = []
    for row in logits:
        order = row.argsort(descending=True).tolist()
        pick = next(c for c in order[1:] if c not in used)
        used.add(pick)
        out.append(pick)
    return out


def test_the_targets_are_three_different_non_argmax_classes(net):
    _, model, x, _, targets = net
    with torch.no_grad():
        predicted = model(x).argmax(1).tolist()
    assert len(set(targets)) == 3 and all(t != p for t, p in zip(targets, predicted))
    # A random BatchNorm really is there: not the identity, with a non-zero effective bias.
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.bias.abs().min() > 0 and (bn.running_var - 1).abs().max() > 0.1


def _pgc(model, x, layer: str, method: str, targets) -> np.ndarray:
    module = dict(model.named_modules())[layer]
    with getattr(pgc, REFERENCE.get(method, method))(model=model, target_layers=[module]) as cam:
        if method in ("scorecam", "ablationcam"):
            cam.batch_size = 64
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])


def _torchcam(model, x, cls, layer: str, targets, seed: int | None = None, **kwargs) -> np.ndarray:
    """torch-cam's map at the layer, upsampled to the input as ours (bilinear) and scaled to [0, 1]."""
    side = int(x.shape[-1])
    with cls(model, layer, input_shape=(3, side, side), **kwargs) as extractor:
        with torch.no_grad():
            model(x)  # torch-cam reads the input and the activation from this forward's hooks
        if seed is not None:
            torch.manual_seed(seed)  # the same generator state that our `seed` option gives
        cam = extractor(class_idx=[int(t) for t in targets])[0]
    up = F.interpolate(cam[:, None], size=(side, side), mode="bilinear", align_corners=False)[:, 0]
    return normalize_maps(up).numpy()


def _check_targets(result, targets) -> None:
    assert result.targets.tolist() == targets


def test_gradient_cams(net):
    name, model, x, layers, targets = net
    ours = gradient_cams(model, x, layers, GRADIENT, target=targets)
    for (layer, method), r in ours.items():
        _check_targets(r, targets)
        _assert_same(r.maps, _pgc(model, x, layer, method, targets), f"{method} at {layer} of {name}")
    assert hook_count(model) == 0


class _FullGradByModule(pgc.FullGrad):
    """pytorch-grad-cam's FullGrad with each gradient paired with its own layer's bias.

    The reference pairs the bias layers, in registration order, with the gradients in the order
    backward reaches them: the same order only in a chain. A projection shortcut (``downsample``
    registered before ``conv1`` and run beside the branch) breaks that, and the reference fails
    or mixes layers up. Here each gradient goes to its layer's slot; the formula is unchanged.
    """

    def __init__(self, model) -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints that target_layers is ignored
            super().__init__(model=model, target_layers=[])
        hooks = self.activations_and_grads
        for h in hooks.handles:
            h.remove()
        hooks.handles.clear()
        self._slots: dict[int, torch.Tensor] = {}
        for i, layer in enumerate(self.target_layers):
            hooks.handles.append(layer.register_forward_hook(self._keeper(i)))

    def _keeper(self, i: int):
        def hook(_m, _i, out) -> None:
            if out.requires_grad:
                out.register_hook(lambda g: self._slots.__setitem__(i, g.detach()))

        return hook

    def compute_cam_per_layer(self, input_tensor, target_category, eigen_smooth):
        self.activations_and_grads.gradients = [self._slots[i] for i in range(len(self.target_layers))]
        return super().compute_cam_per_layer(input_tensor, target_category, eigen_smooth)


def _pgc_fullgrad(model, x, targets) -> np.ndarray:
    with _FullGradByModule(model) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])


def test_fullgrad(net):
    name, model, x, _, targets = net
    ours = attribute(model, x, "fullgrad", target=targets)
    _check_targets(ours, targets)
    ref = _pgc_fullgrad(model, x, targets)
    _assert_same(ours.maps, ref, f"FullGrad on {name}")
    # The bias terms matter here: the input-gradient term alone is another map.
    argmax = attribute(model, x, "fullgrad")
    assert np.abs(argmax.maps - ours.maps).max() > 0.05
    assert hook_count(model) == 0


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_score_and_ablation_cam(net, method, monkeypatch):
    import resviz.analysis.cams_forward as cams_forward

    monkeypatch.setattr(cams_forward, "COPY_PAYS_SECONDS", 0.0)  # the folded copy, as at full size
    name, model, x, layers, targets = net
    # A pre-activation block ends without a ReLU: the ablation value is far below the minimum
    # (pytorch-grad-cam's moves with the position in its batch), and the final BatchNorm and ReLU
    # turn every such value into the same zero.
    layer = layers[1]
    ours = attribute(model, x, method, layer=layer, target=targets, batch_size=64)
    _check_targets(ours, targets)
    _assert_same(ours.maps, _pgc(model, x, layer, method, targets), f"{method} at {layer} of {name}")
    assert hook_count(model) == 0


def test_shapley_cam(net):
    name, model, x, layers, targets = net
    ours = attribute(model, x, "shapleycam", layer=layers[1], target=targets)
    _check_targets(ours, targets)
    ref = _pgc(model, x, layers[1], "ShapleyCAM", targets)
    _assert_same(ours.maps, ref, f"Shapley-CAM on {name}")


TORCHCAM = {
    "smoothgradcampp": (
        SmoothGradCamppOptions(num_samples=3, std=0.3, seed=5),
        "SmoothGradCAMpp",
        dict(seed=5, num_samples=3, std=0.3),
    ),
    "sscam": (
        SmoothScoreCamOptions(batch_size=64, num_samples=2, std=0.5, seed=3),
        "SSCAM",
        dict(seed=3, num_samples=2, std=0.5),
    ),
    "iscam": (IntegratedScoreCamOptions(batch_size=64, num_samples=2), "ISCAM", dict(num_samples=2)),
}


@pytest.mark.parametrize("method", list(TORCHCAM))
def test_torchcam_methods(net, method, monkeypatch):
    import resviz.analysis.cams_forward as cams_forward

    monkeypatch.setattr(cams_forward, "COPY_PAYS_SECONDS", 0.0)
    name, model, x, layers, targets = net
    opts, cls, kwargs = TORCHCAM[method]
    ours = attribute(model, x, method, layer=layers[1], target=targets, options=opts)
    _check_targets(ours, targets)
    ref = _torchcam(model, x, getattr(tcm, cls), layers[1], targets, **kwargs)
    _assert_same(ours.maps, ref, f"{method} at {layers[1]} of {name}")
    assert hook_count(model) == 0
