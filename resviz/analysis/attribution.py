"""Attribution: what a ResNet looks at, for the class it predicts or any class, at any layer.

:func:`attribute` runs any method of :data:`METHODS`. Grad-CAM has a fast path of its own
(:mod:`resviz.analysis.grad_cam`); the companions are captum's, with only the glue written here:
Guided Grad-CAM, Saliency, Integrated Gradients (baseline choice, optional SmoothGrad noise tunnel)
and Occlusion.

Every call holds the model's lock (captum registers hooks on the model itself, and the app shares one
model between sessions), runs in eval mode and puts the modes back, and removes every hook it or
captum installed, on success and on failure. Results are frozen dataclasses of CPU numpy arrays
(:mod:`resviz.analysis.attribution_core`, whose public names are importable from here too).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resviz.device import oom_guard
from resviz.errors import LayerNotUsedError
from resviz.hooks import forward_hooks, resolve_layers

if TYPE_CHECKING:
    from PIL import Image

    from resviz.models.weights import LoadedModel
    from resviz.preprocessing import Preprocessing

from resviz.analysis.attribution_core import (
    BASELINES,
    LAYER_METHODS,
    METHODS,
    TOP_K,
    AttributionError,
    AttributionResult,
    ClassNamer,
    Prediction,
    _analysis_mode,
    _check_input,
    _class_namer,
    _prediction,
    _targets,
    default_layer,
    layer_choices,
    normalize_maps,
)
from resviz.analysis.grad_cam import captum_grad_cam, grad_cam, grad_cam_layers

__all__ = [
    "BASELINES",
    "LAYER_METHODS",
    "METHODS",
    "TOP_K",
    "AttributionError",
    "AttributionResult",
    "ClassNamer",
    "Prediction",
    "attribute",
    "attribute_images",
    "captum_grad_cam",
    "default_layer",
    "grad_cam",
    "grad_cam_layers",
    "layer_choices",
    "make_baseline",
    "normalize_maps",
    "occlusion_plan",
    "parse_target",
]


# --------------------------------------------------------------------------- captum's companions


def make_baseline(x: Tensor, kind: str, preprocessing: Preprocessing | None = None) -> Tensor:
    """The Integrated Gradients starting point for ``x`` ``(N, C, H, W)``, in the same normalized space.

    Args:
        x: normalized images.
        kind: a key of :data:`BASELINES`.
        preprocessing: gives the mean and std that turn black pixels into model inputs; without it
            "black" falls back to the per-channel minimum of ``x``.
    """
    if kind == "zeros":
        return torch.zeros_like(x)
    if kind == "black":
        if preprocessing is not None:
            mean = torch.tensor(preprocessing.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
            std = torch.tensor(preprocessing.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
            return ((0.0 - mean) / std).expand_as(x).clone()
        return x.amin(dim=(2, 3), keepdim=True).expand_as(x).clone()
    if kind == "blur":
        from torchvision.transforms.functional import gaussian_blur

        k = max(3, (min(x.shape[-2:]) // 4) | 1)  # odd kernel, a quarter of the image
        return gaussian_blur(x, [k, k], [k / 3.0, k / 3.0])
    if kind == "noise":
        gen = torch.Generator(device="cpu").manual_seed(0)
        lo, hi = x.amin(), x.amax()
        noise = torch.rand(x.shape, generator=gen, dtype=x.dtype).to(x.device)
        return lo + (hi - lo) * noise
    raise AttributionError(f"Unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}.")


def attribute(
    model: nn.Module,
    x: Tensor,
    method: str = "gradcam",
    *,
    layer: str | None = None,
    target: int | Sequence[int] | None = None,
    class_name: ClassNamer | Sequence[str] | None = None,
    top_k: int = TOP_K,
    baseline: str = "black",
    preprocessing: Preprocessing | None = None,
    ig_steps: int = 32,
    noise_tunnel: bool = False,
    nt_samples: int = 4,
    nt_stdev: float = 0.15,
    occlusion_window: int | None = None,
    occlusion_stride: int | None = None,
) -> AttributionResult:
    """Any method of :data:`METHODS` for a batch, with the model's top-k prediction.

    Grad-CAM takes the fast path of :func:`grad_cam`. The others do one gradient-free forward for the
    prediction (which also picks the target when none is given), then captum's method with the
    target known.

    Args:
        model: a classifier.
        x: ``(N, C, H, W)`` normalized images.
        method: a key of :data:`METHODS`.
        layer: for Grad-CAM and Guided Grad-CAM (default: the last stage); ignored otherwise.
        target: class to explain (one, or one per image); ``None``: the predicted class.
        class_name: class names for the labels.
        top_k: classes kept in the prediction.
        baseline: Integrated Gradients' starting point, a key of :data:`BASELINES`.
        preprocessing: the model's preprocessing (for the "black" baseline).
        ig_steps: Integrated Gradients' number of steps along the path.
        noise_tunnel: average Integrated Gradients over noisy copies (SmoothGrad).
        nt_samples: noisy copies per image for the noise tunnel.
        nt_stdev: noise standard deviation, as a fraction of the input's value range.
        occlusion_window: side of the occluding square in pixels (default: a seventh of the input).
        occlusion_stride: step between occlusions (default: half the window).

    Returns:
        maps ``(N, H, W)`` in ``[0, 1]`` and the method's raw output (see :class:`AttributionResult`).
    """
    if method not in METHODS:
        raise AttributionError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    if method == "gradcam":
        return grad_cam(model, x, layer, target=target, class_name=class_name, top_k=top_k)
    layer_name = (layer or default_layer(model)) if method in LAYER_METHODS else None
    module = resolve_layers(model, [layer_name])[layer_name] if layer_name else None
    x = _check_input(model, x)
    namer = _class_namer(class_name)
    with _analysis_mode(model), oom_guard(METHODS[method]):
        logits = _forward_checking_layer(model, x, layer_name)
        targets = _targets(target, logits)
        t = targets.tolist()
        with warnings.catch_warnings():
            # captum announces its ReLU hooks on every Guided Grad-CAM call; we remove them too.
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            raw = _captum(
                model,
                module,
                x,
                method,
                t,
                baseline,
                preprocessing,
                ig_steps,
                noise_tunnel,
                nt_samples,
                nt_stdev,
                occlusion_window,
                occlusion_stride,
            )
        raw = raw.detach()
        maps = normalize_maps(_reduce(method, raw))
        prediction = _prediction(logits, namer, top_k)
    target_np = targets.cpu().numpy().astype(np.int64)
    return AttributionResult(
        method=method,
        layer=layer_name,
        maps=maps.float().cpu().numpy(),
        raw=raw.float().cpu().numpy(),
        targets=target_np,
        target_labels=tuple(namer(int(i)) for i in target_np),
        prediction=prediction,
    )


def _forward_checking_layer(model: nn.Module, x: Tensor, name: str | None) -> Tensor:
    """The logits of a gradient-free forward; checks that layer ``name`` runs with a 4-D output.

    Captum's Guided Grad-CAM fails deep inside (an IndexError) on a layer without spatial output
    such as ``fc``, and silently on one that never runs: say so in a sentence before calling it.
    """
    shapes: list[tuple[int, ...]] = []

    def record(_m: nn.Module, _i: object, out: object) -> None:
        if isinstance(out, Tensor):
            shapes.append(tuple(out.shape))

    with torch.no_grad():
        if name is None:
            return model(x)
        with forward_hooks(model, {name: record}):
            logits = model(x)
    if not shapes:
        raise LayerNotUsedError.for_layer(name)
    if len(shapes[0]) != 4:
        raise AttributionError(f"Grad-CAM needs a layer with spatial output (N, C, H, W); {name!r} has none.")
    return logits


def _captum(
    model: nn.Module,
    module: nn.Module | None,
    x: Tensor,
    method: str,
    target: list[int],
    baseline: str,
    preprocessing: Preprocessing | None,
    ig_steps: int,
    noise_tunnel: bool,
    nt_samples: int,
    nt_stdev: float,
    window: int | None,
    stride: int | None,
) -> Tensor:
    """Captum's attribution ``(N, C, H, W)`` for ``x`` and the known targets."""
    from captum.attr import GuidedGradCam, IntegratedGradients, NoiseTunnel, Occlusion, Saliency

    if method == "guided_gradcam":
        x = x.clone().requires_grad_(True)  # captum warns when it has to do this itself
        return GuidedGradCam(model, module).attribute(x, target=target, interpolate_mode="bilinear")
    if method == "saliency":
        return Saliency(model).attribute(x.clone().requires_grad_(True), target=target, abs=True)
    if method == "integrated_gradients":
        base = make_baseline(x, baseline, preprocessing)
        ig = IntegratedGradients(model)
        steps = max(2, int(ig_steps))
        if not noise_tunnel:
            return ig.attribute(x, baselines=base, target=target, n_steps=steps, internal_batch_size=steps)
        stdev = float(nt_stdev) * float(x.max() - x.min())
        return NoiseTunnel(ig).attribute(
            x,
            nt_type="smoothgrad",
            nt_samples=max(1, int(nt_samples)),
            stdevs=stdev,
            baselines=base,
            target=target,
            n_steps=steps,
            internal_batch_size=steps,
        )
    # occlusion
    w, s, _ = occlusion_plan(min(x.shape[-2:]), window, stride)
    return Occlusion(model).attribute(
        x,
        sliding_window_shapes=(x.shape[1], w, w),
        strides=(x.shape[1], s, s),
        baselines=0.0,
        target=target,
        perturbations_per_eval=16,
    )


def occlusion_plan(side: int, window: int | None = None, stride: int | None = None) -> tuple[int, int, int]:
    """Occlusion's square, its stride and the forward passes it costs per image at ``side`` pixels.

    Defaults: a square of a seventh of the input, moved by half its side. Each position is one
    forward pass, so a person can be told the cost before asking for it.
    """
    w = int(window or max(2, side // 7))
    s = int(stride or max(1, w // 2))
    if not 1 <= w <= side or s < 1:
        raise AttributionError(f"The occlusion window must be 1 to {side} pixels and the stride positive.")
    per_side = math.ceil((side - w) / s) + 1
    return w, s, per_side * per_side


def _reduce(method: str, raw: Tensor) -> Tensor:
    """Channels -> one ``(N, H, W)`` map per image, following each method's usual display."""
    if method == "saliency":  # Simonyan et al. 2013: max of |gradient| over channels
        return raw.abs().amax(dim=1)
    if method == "occlusion":  # evidence for the class: where hiding the patch lowers its score
        return F.relu(raw.mean(dim=1))
    return raw.abs().sum(dim=1)  # Guided Grad-CAM, Integrated Gradients


# --------------------------------------------------------------------------- images in


def attribute_images(
    loaded: LoadedModel,
    images: Sequence[Image.Image],
    method: str = "gradcam",
    **options: object,
) -> AttributionResult:
    """:func:`attribute` for PIL images, preprocessed and labelled the way ``loaded`` says.

    Args:
        loaded: the model with its preprocessing and class names.
        images: one or more RGB images; all go through in one batch.
        method: a key of :data:`METHODS`.
        **options: passed to :func:`attribute` (``layer``, ``target``, ``baseline``...).
    """
    if not images:
        raise AttributionError("Pick or upload at least one image.")
    x = loaded.preprocessing.tensor(list(images))
    options.setdefault("preprocessing", loaded.preprocessing)
    return attribute(loaded.model, x, method, class_name=loaded.class_name, **options)  # type: ignore[arg-type]


def parse_target(text: str | int | None, class_names: Sequence[str] | None, num_classes: int) -> int | None:
    """A target class from a person: ``None``/"" for the prediction, an index, or a class name.

    Raises:
        AttributionError: an index out of range or a name that no class has.
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if isinstance(text, int) or str(text).strip().lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < num_classes:
            raise AttributionError(
                f"Class {index} does not exist: this model has classes 0 to {num_classes - 1}."
            )
        return index
    wanted = str(text).strip().lower()
    names = [n.lower() for n in (class_names or ())]
    if wanted in names:
        return names.index(wanted)
    close = [n for n in (class_names or ()) if wanted in n.lower()][:3]
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise AttributionError(f"No class is named {text!r}; give a class index or an exact name.{hint}")
