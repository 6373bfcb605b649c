"""Score-CAM and its smoothed and integrated kin: channel weights from the scores of masked images.

Each channel ``A_c`` of the layer, upsampled and scaled to ``[0, 1]``, masks the image; the target's
score of the masked image weighs the channel, and a softmax over channels turns the scores into
weights. That is one forward pass of the whole network per channel (and per sample for SS-CAM and
IS-CAM), so everything here is about evaluating those passes fast, with the same maps:

- the passes run in channels-last layout and, when they would take over a second, on an inference
  copy of the network with BatchNorm folded into the convolution before it (together 1.2-1.6x
  faster on a CPU, measured here on ResNet-18; the scores agree to float rounding); the shared
  model is never changed;
- a channel whose mask is all zero (a constant channel, common after a ReLU) gives the all-zero
  image whatever the channel: its score is evaluated once;
- the softmax over channels ignores a constant added to every score, so torch-cam's subtraction of
  the clean image's score is left out (one forward pass less per image);
- masks are built per image and per batch, never ``N x C`` upsampled images at once.

Score-CAM (Wang et al. 2020, https://arxiv.org/abs/1910.01279) follows pytorch-grad-cam 1.5: masks
upsampled bilinearly with aligned corners, scaled at the input's resolution. SS-CAM (Wang et al.
2020, https://arxiv.org/abs/2006.14255) and IS-CAM (Naidu et al. 2020, https://arxiv.org/abs/2010.03023)
follow torch-cam 0.5: channels scaled at the layer's resolution, then upsampled; SS-CAM adds Gaussian
noise of ``std`` to each upsampled mask, drawn from a generator seeded with ``seed`` (one draw of the
whole ``(N, C, H, W)`` batch per sample, in torch-cam's order, so a reference seeded alike sees the
same noise); IS-CAM scores the mask scaled by ``1/S, 1/S + 2/S, ...`` and averages.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resviz.analysis.attribution_core import AttributionError

Progress = Callable[[int, int], bool | None]  # (done, total) -> False to stop


class AttributionStopped(AttributionError):
    """The person stopped a long attribution before it finished."""


class Counter:
    """Forward passes done out of ``total``, reported to ``progress``, which may stop the run."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total, self.done, self.progress = int(total), 0, progress

    def add(self, n: int, *, report: bool = True) -> None:
        self.done += int(n)
        if report and self.progress is not None and self.progress(self.done, self.total) is False:
            raise AttributionStopped(f"Stopped after {self.done} of {self.total} forward passes.")


def inference_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` for many gradient-free passes: BatchNorm folded into the convolution
    before it and channels-last weights. Call it under the model's lock.

    The folding is done by hand for our ResNets (post-activation, with BatchNorm), not by
    ``torch.fx``: its tracer patches ``nn.Module.__call__`` for the whole process while it runs,
    which broke other sessions' forward passes. Any other network gets an exact channels-last copy.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    from resviz.models.resnet import ResNet

    net = copy.deepcopy(model).eval()
    config = getattr(net, "config", None)
    if isinstance(net, ResNet) and config is not None and config.batchnorm and not config.preact:
        pairs = [(net, "conv1", "bn1")]
        for _, block in net.named_blocks():
            pairs += [(block, f"conv{i}", f"bn{i}") for i in (1, 2, 3) if hasattr(block, f"conv{i}")]
            if isinstance(block.downsample, nn.Sequential) and len(block.downsample) == 2:
                pairs.append((block.downsample, "0", "1"))  # a projection shortcut: conv then BN
        for parent, conv, bn in pairs:
            c, b = getattr(parent, conv), getattr(parent, bn)
            if isinstance(c, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                setattr(parent, conv, fuse_conv_bn_eval(c, b))
                setattr(parent, bn, nn.Identity())
    return net.to(memory_format=torch.channels_last)


def masked_scores(
    net: nn.Module, xi: Tensor, masks: Tensor, t: int, batch_size: int, counter: Counter, scale: float = 1.0
) -> Tensor:
    """``(M,)`` the target's score of ``net(scale * xi * mask)`` for each of ``masks`` ``(M, H, W)``.

    ``xi`` is one image ``(C, H, W)``; the passes go in batches of ``batch_size``.
    """
    out = torch.empty(masks.shape[0], device=xi.device)
    for s in range(0, masks.shape[0], batch_size):
        m = masks[s : s + batch_size]
        batch = torch.mul(xi[None], m[:, None]).contiguous(memory_format=torch.channels_last)
        if scale != 1.0:
            batch.mul_(scale)
        out[s : s + m.shape[0]] = net(batch)[:, t]
        counter.add(m.shape[0])
    return out


def _zero_score(net: nn.Module, x: Tensor, targets: Tensor) -> Tensor:
    """``(N,)`` each image's target score of the all-zero image (what a blank mask leaves)."""
    zero = net(torch.zeros_like(x[:1]).contiguous(memory_format=torch.channels_last))[0]
    return zero[targets]


def score_cam_weights(
    net: nn.Module, x: Tensor, act: Tensor, targets: Tensor, batch_size: int, counter: Counter
) -> Tensor:
    """Score-CAM's ``(N, C)`` weights (pytorch-grad-cam's masks: aligned corners, scaled after upsampling)."""
    n, c = act.shape[:2]
    scores = torch.empty(n, c, device=x.device)
    zero: list[Tensor] = []  # evaluated once, when the first blank mask shows up
    chunk = batch_size * 4  # upsample a few batches' masks at a time, never all C at once
    for i in range(n):
        for s in range(0, c, chunk):
            idx = torch.arange(s, min(s + chunk, c), device=x.device)
            up = F.interpolate(
                act[i : i + 1, idx], size=tuple(x.shape[-2:]), mode="bilinear", align_corners=True
            )
            lo, hi = up[0].flatten(1).aminmax(dim=1)
            blank = hi == lo  # a constant channel masks the whole image to zero
            if bool(blank.any()):
                zero = zero or [_zero_score(net, x, targets)]
                scores[i, idx[blank]] = zero[0][i]
                counter.add(int(blank.sum()), report=False)
            masks = (up[0, ~blank] - lo[~blank, None, None]) / (hi - lo)[~blank, None, None].add(1e-8)
            scores[i, idx[~blank]] = masked_scores(net, x[i], masks, int(targets[i]), batch_size, counter)
    return scores.softmax(dim=1)


def _torchcam_masks(act: Tensor, size: tuple[int, int]) -> Tensor:
    """``(N, C, H, W)``: torch-cam's masks, each channel scaled at the layer (``(A - min) / (max + 1e-8)``
    after the shift) and upsampled bilinearly (corners not aligned)."""
    shifted = act - act.flatten(2).amin(dim=2)[..., None, None]
    scaled = shifted / (shifted.flatten(2).amax(dim=2)[..., None, None] + 1e-8)
    return F.interpolate(scaled, size=size, mode="bilinear", align_corners=False)


def ss_cam_weights(
    net: nn.Module,
    x: Tensor,
    act: Tensor,
    targets: Tensor,
    batch_size: int,
    counter: Counter,
    *,
    num_samples: int,
    std: float,
    seed: int,
) -> Tensor:
    """SS-CAM's ``(N, C)`` weights: softmax of the mean score over ``num_samples`` noisy masks."""
    masks = _torchcam_masks(act, tuple(x.shape[-2:]))
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    total = torch.zeros(act.shape[:2], device=x.device)
    for _ in range(int(num_samples)):
        # One draw for the whole batch, on the CPU, as torch-cam draws it: the same seed, the same noise.
        noise = torch.normal(0.0, float(std), tuple(masks.shape), generator=gen).to(x.device)
        for i in range(x.shape[0]):
            total[i] += masked_scores(net, x[i], masks[i] + noise[i], int(targets[i]), batch_size, counter)
    return (total / int(num_samples)).softmax(dim=1)


def is_cam_weights(
    net: nn.Module,
    x: Tensor,
    act: Tensor,
    targets: Tensor,
    batch_size: int,
    counter: Counter,
    *,
    num_samples: int,
) -> Tensor:
    """IS-CAM's ``(N, C)`` weights: softmax of the mean score of the masks scaled by torch-cam's
    cumulative coefficients ``sum_{j <= s} j / S`` for ``s = 1..S``."""
    n, c = act.shape[:2]
    masks = _torchcam_masks(act, tuple(x.shape[-2:]))
    blank = masks.flatten(2).amax(dim=2) == 0  # a constant channel: the all-zero image at any scale
    zero = _zero_score(net, x, targets) if bool(blank.any()) else None
    steps = int(num_samples)
    total = torch.zeros(n, c, device=x.device)
    coeff = 0.0
    for s in range(steps):
        coeff += (s + 1) / steps
        for i in range(n):
            live = torch.nonzero(~blank[i]).flatten()
            if zero is not None:
                total[i, blank[i]] += zero[i]
            counter.add(c - live.numel(), report=False)
            scores = masked_scores(net, x[i], masks[i, live], int(targets[i]), batch_size, counter, coeff)
            total[i, live] += scores
    return (total / steps).softmax(dim=1)
