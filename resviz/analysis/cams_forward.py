"""The per-channel CAMs: channel weights from forward passes, batched, with progress and stop.

Score-CAM, SS-CAM, IS-CAM (:mod:`resviz.analysis.cams_score`) and Ablation-CAM cost one forward pass
per channel of the layer (512 at ResNet-18's ``layer4``; SS-CAM and IS-CAM that many per sample), so
all take a ``batch_size``, report progress through a callback that can stop them, and have a cost
that the method table tells before running. The formulas follow pytorch-grad-cam 1.5 (Score-CAM,
Ablation-CAM) and torch-cam 0.5 (SS-CAM, IS-CAM), constants included, which the tests compare
against; what is done differently is only speed:

- Ablation-CAM (Desai & Ramaswamy 2020, https://openaccess.thecvf.com/content_WACV_2020/papers/
  Desai_Ablation-CAM_Visual_Explanations_for_Deep_Convolutional_Network_via_Gradient-free_WACV_2020_paper.pdf)
  starts each batch from the layer's activation: the network below the layer runs for one image
  per batch, and a forward hook hands the layers above it the batch of ablated copies (the other
  tensors the rest of the block reads, such as the shortcut, broadcast over that batch). Exact.
- Score-CAM and its kin must run the whole network on each masked image: see
  :mod:`resviz.analysis.cams_score` for how those passes are made cheaper.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resviz.analysis import cams_score
from resviz.analysis.attribution_core import (
    TOP_K,
    AttributionError,
    AttributionResult,
    ClassNamer,
    _analysis_mode,
    _check_input,
    _class_namer,
    _prediction,
    _targets,
    _upsample,
    normalize_maps,
)
from resviz.analysis.cams_score import AttributionStopped, Counter, Progress
from resviz.analysis.methods import (
    ForwardCamOptions,
    IntegratedScoreCamOptions,
    SmoothScoreCamOptions,
    get_method,
)
from resviz.device import oom_guard
from resviz.errors import LayerNotUsedError
from resviz.hooks import forward_hooks, resolve_layers

__all__ = ["AttributionStopped", "Progress", "forward_cam", "forward_passes", "probe_layer"]

FORWARD_CAMS = ("scorecam", "ablationcam", "sscam", "iscam")


def forward_passes(channels: int, images: int = 1, samples: int = 1) -> int:
    """Forward passes a per-channel CAM costs beyond the first: one per channel (per sample) per
    image (an upper bound: the all-zero input of constant channels is evaluated once)."""
    return int(channels) * int(images) * int(samples)


def _layer_activation(model: nn.Module, x: Tensor, layer: str) -> tuple[Tensor, Tensor, int]:
    """``(logits (N, K), activation (N, C, h, w), calls)`` from one gradient-free forward.

    A module called several times (a block's shared ReLU) gives its last call's output, as captum's
    and pytorch-grad-cam's hooks do; ``calls`` counts them.
    """
    got: list[Tensor] = []

    def keep(_m: nn.Module, _i: object, out: object) -> None:
        if isinstance(out, Tensor):
            got.append(out.detach())

    with forward_hooks(model, {layer: keep}):
        logits = model(x)
    if not got:
        raise LayerNotUsedError.for_layer(layer)
    if got[-1].ndim != 4:
        raise AttributionError(
            f"This method needs a layer with spatial output (N, C, H, W); {layer!r} has none."
        )
    return logits, got[-1], len(got)


def _ablation_value(act: Tensor) -> float:
    # pytorch-grad-cam's choice: zero after a ReLU (minimum 0), else far below the minimum.
    low = float(act.min())
    return 0.0 if low == 0.0 else low - 1e7


def _ablation_cam_weights(
    model: nn.Module,
    x: Tensor,
    layer: str,
    act: Tensor,
    calls: int,
    logits: Tensor,
    targets: Tensor,
    batch_size: int,
    counter: Counter,
) -> Tensor:
    """``(N, C)``: ``(y - y_ablated_c) / y`` with channel ``c`` of the layer set to the ablation value."""
    n, c = act.shape[:2]
    original = logits.gather(1, targets[:, None])[:, 0]
    drops = torch.empty(n, c, device=x.device)
    batch: list[Tensor] = []
    seen = [0]

    def replace(_m: nn.Module, _i: object, out: Tensor) -> Tensor | None:
        seen[0] += 1
        return batch[0] if seen[0] % calls == 0 else None  # only the call the activation came from

    with forward_hooks(model, {layer: replace}):
        for i in range(n):
            value = _ablation_value(act[i])
            for s in range(0, c, batch_size):
                idx = torch.arange(s, min(s + batch_size, c), device=x.device)
                ablated = act[i : i + 1].repeat(idx.numel(), 1, 1, 1)
                ablated[torch.arange(idx.numel()), idx] = value
                batch[:] = [ablated]
                out = model(x[i : i + 1])  # the rest of the network broadcasts over the batch
                if out.shape[0] != idx.numel():
                    raise AttributionError(f"Ablation-CAM cannot batch the layers after {layer!r}.")
                drops[i, idx] = out[:, int(targets[i])]
                counter.add(idx.numel())
    return (original[:, None] - drops) / original[:, None]


_OPTIONS = {
    "scorecam": ForwardCamOptions,
    "ablationcam": ForwardCamOptions,
    "sscam": SmoothScoreCamOptions,
    "iscam": IntegratedScoreCamOptions,
}


def forward_cam(
    model: nn.Module,
    x: Tensor,
    layer: str,
    method: str,
    *,
    target: int | Sequence[int] | None = None,
    class_name: ClassNamer | Sequence[str] | None = None,
    top_k: int = TOP_K,
    batch_size: int = 64,
    options: object | None = None,
    progress: Progress | None = None,
) -> AttributionResult:
    """Score-CAM, SS-CAM, IS-CAM or Ablation-CAM at one layer for a batch of images.

    Args:
        model: a classifier; its lock is held and its modes are restored.
        x: ``(N, C, H, W)`` normalized images.
        layer: dotted module name with spatial output.
        method: one of :data:`FORWARD_CAMS`.
        target: class to explain (one, or one per image); ``None``: the predicted class.
        class_name: class names for the labels.
        top_k: classes kept in the prediction.
        batch_size: forward passes evaluated together (when ``options`` is not given).
        options: the method's options dataclass (default: its defaults with ``batch_size``).
        progress: called with ``(done, total)`` forward passes after each batch; returning ``False``
            stops the run with :class:`AttributionStopped`.

    Returns:
        maps ``(N, H, W)`` in ``[0, 1]``; raw ``(N, h, w)``, the weighted channel sum before the ReLU.
    """
    if method not in FORWARD_CAMS:
        raise AttributionError(
            f"{method!r} is not a forward-pass CAM; choose one of {', '.join(FORWARD_CAMS)}."
        )
    opts = options if options is not None else _OPTIONS[method](batch_size=int(batch_size))
    if int(opts.batch_size) < 1:
        raise AttributionError("The batch size must be at least 1.")
    resolve_layers(model, [layer])
    x = _check_input(model, x)
    namer = _class_namer(class_name)
    with _analysis_mode(model), oom_guard(get_method(method).label), torch.no_grad():
        t0 = time.perf_counter()
        logits, act, calls = _layer_activation(model, x, layer)
        per_image = (time.perf_counter() - t0) / x.shape[0]
        targets = _targets(target, logits)
        weights = _weights(model, x, layer, method, opts, act, calls, logits, targets, progress, per_image)
        cam = (weights[:, :, None, None] * act).sum(dim=1)
        up = _upsample(F.relu(cam)[:, None], tuple(x.shape[-2:]))
        prediction = _prediction(logits, namer, top_k)
    target_np = targets.cpu().numpy().astype(np.int64)
    return AttributionResult(
        method=method,
        layer=layer,
        maps=normalize_maps(up[:, 0]).float().cpu().numpy(),
        raw=cam.float().cpu().numpy(),
        targets=target_np,
        target_labels=tuple(namer(int(t)) for t in target_np),
        prediction=prediction,
    )


# Building the inference copy costs about 0.15 s (a deep copy and a trace); it saves 20-40% of each
# pass, so it pays when the passes would take over a second.
COPY_PAYS_SECONDS = 1.0


def _weights(model, x, layer, method, opts, act, calls, logits, targets, progress, per_image) -> Tensor:
    """``(N, C)`` channel weights of ``method``, with its passes counted for ``progress``;
    ``per_image`` is the seconds one image's forward pass took."""
    n, c = act.shape[:2]
    samples = getattr(opts, "num_samples", 1)
    counter = Counter(forward_passes(c, n, samples), progress)
    bs = int(opts.batch_size)
    if method == "ablationcam":
        return _ablation_cam_weights(model, x, layer, act, calls, logits, targets, bs, counter)
    # The masked images go through a copy (BatchNorm folded, channels-last) when that pays; either
    # way without hooks, under the model's lock.
    fast = counter.total * per_image > COPY_PAYS_SECONDS
    net = cams_score.inference_copy(model) if fast else model
    if method == "scorecam":
        return cams_score.score_cam_weights(net, x, act, targets, bs, counter)
    if method == "sscam":
        return cams_score.ss_cam_weights(
            net, x, act, targets, bs, counter, num_samples=samples, std=opts.std, seed=opts.seed
        )
    return cams_score.is_cam_weights(net, x, act, targets, bs, counter, num_samples=samples)


def probe_layer(model: nn.Module, layer: str, side: int, in_channels: int | None = None) -> tuple[int, float]:
    """``(channels of the layer, seconds per forward pass of one image)``, measured on a batch of 8
    zero images at ``side`` pixels: what a page needs to say a forward-pass CAM's cost before it runs.

    ``in_channels`` defaults to the model's own (a digits run takes 1-channel images: a 3-channel
    probe failed there before the per-channel CAMs could run)."""
    if in_channels is None:
        in_channels = int(getattr(getattr(model, "config", None), "in_channels", 3))
    x = torch.zeros(8, in_channels, side, side)
    with _analysis_mode(model), torch.no_grad():
        _check_input(model, x)
        x = x.to(next(model.parameters()).device)
        t0 = time.perf_counter()
        _, act, _ = _layer_activation(model, x, layer)
        seconds = (time.perf_counter() - t0) / 8
    return int(act.shape[1]), seconds


def estimate_seconds(passes: int, seconds_per_pass: float) -> int:
    """A time estimate from a measured forward pass, rounded up to a whole second."""
    return math.ceil(max(0.0, passes * seconds_per_pass))
