"""The story's three ratios against gradients taken by hand with autograd, on a net unlike the default."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from resviz.analysis.gradients import gradient_profile
from resviz.analysis.story import ratios
from resviz.models import create_model


@pytest.mark.parametrize("name", ["plain14", "resnet14"])
def test_ratios_equal_a_hand_computation(name):
    torch.manual_seed(0)
    model = create_model(name, seed=3, num_classes=5, widths=(4, 8, 16), stem_width=4)
    for m in model.modules():  # non-trivial BatchNorm affine parameters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    x, y = torch.randn(6, 3, 16, 16), torch.tensor([0, 1, 2, 3, 4, 0])
    profile = gradient_profile(model, x, y, split=False)
    got = ratios(profile, batchnorm=True)

    # By hand: keep the first and last block outputs, one backward, norms per element.
    blocks = [b for _, b in model.named_blocks()]
    outs = {}
    hooks = [
        blocks[i].register_forward_hook(lambda _m, _i, o, i=i: outs.__setitem__(i, o))
        for i in (0, len(blocks) - 1)
    ]
    model.train()
    try:
        loss = F.cross_entropy(model(x), y)
        first_conv, last_conv = model.conv1, blocks[-1].conv2
        g_first, g_last, w_first, w_last = torch.autograd.grad(
            loss, [outs[0], outs[len(blocks) - 1], first_conv.weight, last_conv.weight]
        )
    finally:
        for h in hooks:
            h.remove()
    rms = lambda g: g.norm().item() / math.sqrt(g.numel())  # noqa: E731
    assert got.activation == pytest.approx(rms(g_first) / rms(g_last), rel=1e-4)
    assert got.weight == pytest.approx(w_first.norm().item() / w_last.norm().item(), rel=1e-4)
    rel_first = w_first.norm().item() / first_conv.weight.norm().item()
    rel_last = w_last.norm().item() / last_conv.weight.norm().item()
    assert got.relative == pytest.approx(rel_first / rel_last, rel=1e-4)
