"""Grad-CAM equals captum's LayerGradCam at every layer that ``layer_choices`` offers, alone and
together: identity shortcut taps included (the gradient over every use of the tensor)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import LayerGradCam

from resviz.analysis.attribution import grad_cam_layers, layer_choices
from resviz.hooks import hook_count, resolve_layers
from resviz.models import create_model

torch.set_num_threads(1)

# (variant, input side): full-size networks on tiny inputs; resnet20 has option-A shortcuts. The
# tiny variants have the same blocks and taps and keep the default run fast.
MODELS = [
    pytest.param(("resnet18", 32), id="resnet18", marks=pytest.mark.slow),
    pytest.param(("resnet20", 16), id="resnet20"),
    pytest.param(("preact_resnet18", 32), id="preact_resnet18", marks=pytest.mark.slow),
    pytest.param(("resnet_tiny", 32), id="resnet_tiny"),
    pytest.param(("preact_resnet_tiny", 32), id="preact_resnet_tiny"),
]


def _captum_raw(model, x, layer: str, target: list[int]) -> np.ndarray:
    module = resolve_layers(model, [layer])[layer]
    cam = LayerGradCam(model, module).attribute(x, target=target, relu_attributions=False)
    return cam[:, 0].detach().numpy()


def _rel_err(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-12))


@pytest.fixture(scope="module", params=MODELS)
def case(request):
    name, side = request.param
    model = create_model(name, seed=0).eval()
    x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(1))
    layers = layer_choices(model)
    together = grad_cam_layers(model, x, layers)
    target = together[layers[0]].targets.tolist()
    refs = {layer: _captum_raw(model, x, layer, target) for layer in layers}
    return model, x, layers, together, refs


def test_every_layer_together_equals_captum(case):
    _, _, layers, together, refs = case
    bad = {n: e for n in layers if (e := _rel_err(together[n].raw, refs[n])) > 1e-4}
    assert not bad, bad


def test_every_layer_alone_equals_captum(case):
    model, x, layers, _, refs = case
    bad = {}
    for layer in layers:
        alone = grad_cam_layers(model, x, [layer])[layer].raw
        if (e := _rel_err(alone, refs[layer])) > 1e-4:
            bad[layer] = e
    assert not bad, bad
    assert hook_count(model) == 0


def test_identity_tap_alone_and_with_its_block_input_agree(case):
    """The issue's case: a tap's map must not depend on what else was asked."""
    model, x, _, _, _ = case
    modules = dict(model.named_modules())
    blocks = [b for s in model.feature_info for b in s.blocks]
    taps = [b for b in blocks if modules[b].downsample is None]  # identity shortcuts
    assert taps
    tap = f"{taps[-1]}.shortcut_out"
    # The module whose output is the block's input: the previous block, or the stem's max-pool.
    i = blocks.index(taps[-1])
    before = blocks[i - 1] if i else "maxpool"
    alone = grad_cam_layers(model, x, [tap])[tap].raw
    paired = grad_cam_layers(model, x, [before, tap])[tap].raw
    np.testing.assert_allclose(alone, paired, rtol=1e-5, atol=1e-6 * np.abs(paired).max())
