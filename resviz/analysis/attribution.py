"""Attribution: what a ResNet looks at, for the class it predicts or any class, at any layer.

Grad-CAM (Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391) has a fast path of its own: the
top-k prediction and the map come from **one** forward pass and **one** backward pass that stops at
the target layer. The forward runs without autograd up to that layer; a forward hook detaches the
layer's output, marks it as requiring grad and switches autograd on, so the graph starts there. The
predicted class is read from the same forward's logits, and ``torch.autograd.grad`` asks only for
the layer's gradient, so autograd never walks below it. Captum's ``LayerGradCam`` is the reference it
is tested against (:func:`captum_grad_cam`).

The companions are captum's, with only the glue written here: Guided Grad-CAM, Saliency, Integrated
Gradients (baseline choice, optional SmoothGrad noise tunnel) and Occlusion.

Every call holds the model's lock (captum registers hooks on the model itself, and the app shares one
model between sessions), runs in eval mode and puts the modes back, and removes every hook it or
captum installed, on success and on failure. Results are frozen dataclasses of CPU numpy arrays.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resviz.device import model_device, oom_guard
from resviz.errors import LayerNotUsedError, ResvizError
from resviz.hooks import forward_hooks, model_lock, preserve_model_state, resolve_layers
from resviz.models.resnet import ResNet

if TYPE_CHECKING:
    from PIL import Image

    from resviz.models.weights import LoadedModel
    from resviz.preprocessing import Preprocessing

METHODS: dict[str, str] = {
    "gradcam": "Grad-CAM",
    "guided_gradcam": "Guided Grad-CAM",
    "saliency": "Saliency",
    "integrated_gradients": "Integrated Gradients",
    "occlusion": "Occlusion",
}
LAYER_METHODS = frozenset({"gradcam", "guided_gradcam"})  # the others attribute to the input pixels
BASELINES: dict[str, str] = {
    "black": "a black image",
    "zeros": "zeros after normalization (the dataset's mean image)",
    "blur": "a strongly blurred copy of the image",
    "noise": "uniform noise (fixed seed)",
}
TOP_K = 5

ClassNamer = Callable[[int], str]


class AttributionError(ResvizError, ValueError):
    """A method, target class or input that attribution cannot use."""


@dataclass(frozen=True)
class Prediction:
    """The top-k classes of each image, from the same forward pass as the attribution.

    Attributes:
        indices: ``(N, k)`` int64 class indices, most probable first.
        probs: ``(N, k)`` float32 softmax probabilities.
        labels: ``N`` tuples of ``k`` class names (or ``"class i"`` without names).
    """

    indices: np.ndarray
    probs: np.ndarray
    labels: tuple[tuple[str, ...], ...]

    @property
    def top1(self) -> np.ndarray:
        """``(N,)`` the predicted class of each image."""
        return self.indices[:, 0]


@dataclass(frozen=True)
class AttributionResult:
    """Attribution maps for a batch of images.

    Attributes:
        method: a key of :data:`METHODS`.
        layer: the layer a Grad-CAM method attributes to; ``None`` for input methods.
        maps: ``(N, H, W)`` float32 in ``[0, 1]`` at the input resolution, ready to overlay.
        raw: the method's own output before reduction and normalization: for Grad-CAM the
            gradient-weighted channel sum ``(N, h, w)`` at the layer's resolution (before the ReLU);
            for the input methods ``(N, C, H, W)``.
        targets: ``(N,)`` int64 the class each map explains.
        target_labels: ``N`` class names of ``targets``.
        prediction: the model's top-k for each image.
    """

    method: str
    layer: str | None
    maps: np.ndarray
    raw: np.ndarray
    targets: np.ndarray
    target_labels: tuple[str, ...]
    prediction: Prediction

    def __len__(self) -> int:
        return int(self.maps.shape[0])

    def to_npz(self) -> bytes:
        """The maps, raw attributions, targets and top-k as a compressed ``.npz`` file."""
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            maps=self.maps,
            raw=self.raw,
            targets=self.targets,
            target_labels=np.array(self.target_labels),
            top_indices=self.prediction.indices,
            top_probs=self.prediction.probs,
            method=np.array(self.method),
            layer=np.array(self.layer or ""),
        )
        return buf.getvalue()


# --------------------------------------------------------------------------- helpers


def default_layer(model: nn.Module) -> str:
    """The last stage (``layer4`` for ImageNet ResNets, ``layer3`` for CIFAR ones).

    Any other classifier gets its last convolution.
    """
    if isinstance(model, ResNet):
        return model.feature_info[-1].name
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise AttributionError("The model has no convolutional layer for Grad-CAM.")
    return convs[-1]


def layer_choices(model: nn.Module) -> list[str]:
    """Layers Grad-CAM can use, coarse to fine: stages, blocks, then every other spatial module."""
    info = model.feature_info if isinstance(model, ResNet) else ()
    stages = [s.name for s in info]
    blocks = [b for s in info for b in s.blocks]
    skip = {"", "fc", "avgpool", *stages, *blocks}
    modules = dict(model.named_modules())

    def unused(name: str) -> bool:  # a plain block's shortcut tap never runs
        parent = modules.get(name.rpartition(".")[0])
        return name.endswith("shortcut_out") and not getattr(parent, "skip", True)

    rest = [
        n
        for n, m in modules.items()
        if n not in skip
        and not unused(n)
        and not isinstance(m, nn.Sequential | nn.Linear | nn.AdaptiveAvgPool2d)
    ]
    return [*stages, *blocks, *rest]


def _class_namer(class_name: ClassNamer | Sequence[str] | None) -> ClassNamer:
    if class_name is None:
        return lambda i: f"class {i}"
    if callable(class_name):
        return class_name
    names = tuple(class_name)
    return lambda i: names[i] if 0 <= i < len(names) else f"class {i}"


def _check_input(model: nn.Module, x: Tensor) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise AttributionError(f"Expected a batch of images shaped (N, C, H, W), got {shape}.")
    channels = getattr(getattr(model, "config", None), "in_channels", x.shape[1])
    if x.shape[1] != channels:
        raise AttributionError(f"The model takes {channels}-channel images; this batch has {x.shape[1]}.")
    if x.shape[0] == 0:
        raise AttributionError("No images to attribute.")
    return x.detach().to(model_device(model), torch.float32)


def _num_classes(model: nn.Module, logits: Tensor | None = None) -> int:
    cfg = getattr(model, "config", None)
    if cfg is not None:
        return int(cfg.num_classes)
    if logits is not None:
        return int(logits.shape[1])
    raise AttributionError("Cannot tell how many classes the model has.")


def _targets(target: int | Sequence[int] | None, logits: Tensor) -> Tensor:
    """``(N,)`` the class to explain per image: the argmax of ``logits`` where ``target`` is None."""
    n, classes = logits.shape
    if target is None:
        return logits.argmax(dim=1)
    t = torch.as_tensor([target] * n if isinstance(target, int | np.integer) else list(target))
    if t.ndim != 1 or t.numel() != n:
        raise AttributionError(f"Give one target class, or one per image ({n}); got {t.numel()}.")
    bad = t[(t < 0) | (t >= classes)]
    if bad.numel():
        raise AttributionError(
            f"Class {int(bad[0])} does not exist: this model has classes 0 to {classes - 1}."
        )
    return t.to(device=logits.device, dtype=torch.long)


def _prediction(logits: Tensor, namer: ClassNamer, k: int = TOP_K) -> Prediction:
    probs = logits.detach().float().softmax(dim=1)
    top = probs.topk(min(k, probs.shape[1]), dim=1)
    indices = top.indices.cpu().numpy().astype(np.int64)
    return Prediction(
        indices=indices,
        probs=top.values.cpu().numpy().astype(np.float32),
        labels=tuple(tuple(namer(int(i)) for i in row) for row in indices),
    )


def normalize_maps(maps: Tensor) -> Tensor:
    """Min-max scale each map of ``(N, H, W)`` to ``[0, 1]``; a constant map becomes zeros."""
    lo, hi = torch.aminmax(maps.flatten(1), dim=1)  # one pass over the maps, not two
    lo, span = lo.view(-1, 1, 1), (hi - lo).view(-1, 1, 1)
    return maps.sub(lo).div_(span.clamp_min(1e-12)).mul_(span > 1e-12)


@contextmanager
def _analysis_mode(model: nn.Module) -> Iterator[None]:
    """Hold the model's lock and make sure it is in eval mode, restoring any module's mode after.

    A cached model is already in eval mode, so the common case only checks that, which is far
    cheaper than saving and restoring every module's mode.
    """
    with model_lock(model):
        if any(m.training for m in model.modules()):
            with preserve_model_state(model):
                yield
        else:
            yield


def _upsample(cam: Tensor, size: tuple[int, int]) -> Tensor:
    """``(N, 1, h, w)`` -> ``(N, 1, H, W)`` with captum's interpolation (bilinear)."""
    from captum.attr import LayerAttribution

    if tuple(cam.shape[-2:]) == tuple(size):
        return cam
    return LayerAttribution.interpolate(cam, size, interpolate_mode="bilinear")


# --------------------------------------------------------------------------- Grad-CAM, fast path


def grad_cam_layers(
    model: nn.Module,
    x: Tensor,
    layers: Sequence[str],
    *,
    target: int | Sequence[int] | None = None,
    class_name: ClassNamer | Sequence[str] | None = None,
    top_k: int = TOP_K,
) -> dict[str, AttributionResult]:
    """Grad-CAM at several layers and the top-k prediction from one forward and one backward.

    The map is ``ReLU(sum_c alpha_c * A_c)`` with ``alpha_c`` the spatial mean of
    ``d y_target / d A_c``, upsampled bilinearly to the input and scaled to ``[0, 1]`` per image.

    Args:
        model: a classifier; its lock is held and its modes are restored.
        x: ``(N, C, H, W)`` normalized images.
        layers: dotted module names, e.g. ``["layer3", "layer4.1.conv2"]``.
        target: the class to explain, one for all or one per image; ``None``: the predicted class.
        class_name: a function or sequence giving class names for the labels.
        top_k: how many classes the prediction keeps.

    Returns:
        One :class:`AttributionResult` per layer, all sharing the same prediction and targets.

    Raises:
        LayerNotFoundError: a name the model does not have.
        LayerNotUsedError: a layer the forward pass never runs (a plain block's shortcut tap).
        AttributionError: a bad input or target, or a layer without spatial output.
    """
    layers = list(dict.fromkeys(layers))
    if not layers:
        raise AttributionError("Choose at least one layer for Grad-CAM.")
    resolve_layers(model, layers)  # a bad name fails before the input is checked or moved
    x = _check_input(model, x)
    namer = _class_namer(class_name)
    acts: dict[str, Tensor] = {}

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs: object, output: Tensor) -> Tensor | None:
            if not isinstance(output, Tensor):
                return None
            if not output.requires_grad:
                # The first hooked layer reached: the graph starts here, so the backward pass
                # cannot go below it and nothing below it keeps activations for autograd.
                output = output.detach().requires_grad_(True)
                torch.set_grad_enabled(True)  # undone when the enclosing no_grad block exits
            acts[name] = output
            return output

        return hook

    with _analysis_mode(model), oom_guard("Grad-CAM"), torch.no_grad():
        with forward_hooks(model, {name: make_hook(name) for name in layers}):
            logits = model(x)
        missing = [n for n in layers if n not in acts]
        if missing:
            raise LayerNotUsedError.for_layer(missing[0])
        if not logits.requires_grad:
            raise AttributionError("The model's output does not depend on the chosen layer.")
        targets = _targets(target, logits)
        selected = logits.gather(1, targets[:, None]).sum()  # images are independent in eval mode
        grads = torch.autograd.grad(selected, [acts[n] for n in layers], allow_unused=True)
        torch.set_grad_enabled(False)
        prediction = _prediction(logits, namer, top_k)
        target_np = targets.cpu().numpy().astype(np.int64)
        target_labels = tuple(namer(int(t)) for t in target_np)
        results = {}
        for name, grad in zip(layers, grads):
            act = acts[name].detach()
            if grad is None or act.ndim != 4:
                raise AttributionError(
                    f"Grad-CAM needs a layer with spatial output (N, C, H, W); {name!r} has none."
                )
            weights = grad.mean(dim=(2, 3), keepdim=True)  # alpha_c: (N, C, 1, 1)
            cam = (weights * act).sum(dim=1, keepdim=True)  # (N, 1, h, w)
            up = _upsample(F.relu(cam), tuple(x.shape[-2:]))
            results[name] = AttributionResult(
                method="gradcam",
                layer=name,
                maps=normalize_maps(up[:, 0]).float().cpu().numpy(),
                raw=cam[:, 0].float().cpu().numpy(),
                targets=target_np,
                target_labels=target_labels,
                prediction=prediction,
            )
    return results


def grad_cam(
    model: nn.Module,
    x: Tensor,
    layer: str | None = None,
    *,
    target: int | Sequence[int] | None = None,
    class_name: ClassNamer | Sequence[str] | None = None,
    top_k: int = TOP_K,
) -> AttributionResult:
    """Grad-CAM at one layer (default: the last stage) with the top-k prediction, in one pass.

    Args:
        model: a classifier.
        x: ``(N, C, H, W)`` normalized images.
        layer: dotted module name; ``None`` for :func:`default_layer`.
        target: class to explain (one, or one per image); ``None``: the predicted class.
        class_name: class names for the labels.
        top_k: classes kept in the prediction.

    Returns:
        maps ``(N, H, W)`` in ``[0, 1]``, raw ``(N, h, w)``.
    """
    layer = layer or default_layer(model)
    return grad_cam_layers(model, x, [layer], target=target, class_name=class_name, top_k=top_k)[layer]


def captum_grad_cam(model: nn.Module, x: Tensor, layer: str, target: int | Sequence[int]) -> np.ndarray:
    """Captum's ``LayerGradCam`` with ReLU, upsampled and normalized like :func:`grad_cam`.

    The reference for tests and the benchmark: ``(N, C, H, W)`` in, ``(N, H, W)`` in ``[0, 1]`` out.
    """
    from captum.attr import LayerGradCam

    module = resolve_layers(model, [layer])[layer]
    x = _check_input(model, x)
    with _analysis_mode(model):
        t = target if isinstance(target, int) else list(target)
        cam = LayerGradCam(model, module).attribute(x, target=t, relu_attributions=True)
        up = _upsample(cam.detach(), tuple(x.shape[-2:]))
    return normalize_maps(up[:, 0]).cpu().numpy()


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
