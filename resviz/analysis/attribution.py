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

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resviz.device import oom_guard
from resviz.errors import LayerNotUsedError, ResvizError
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
from resviz.analysis.cams_forward import AttributionStopped, Progress, forward_cam, forward_passes
from resviz.analysis.cams_noise import smooth_grad_campp
from resviz.analysis.fullgrad import fullgrad
from resviz.analysis.grad_cam import captum_grad_cam, grad_cam, grad_cam_layers, gradient_cams
from resviz.analysis.methods import METHOD_TABLE, Kind, get_method
from resviz.analysis.methods import occlusion_plan as _occlusion_plan
from resviz.analysis.shapley_cam import shapley_cam

__all__ = [
    "BASELINES",
    "LAYER_METHODS",
    "METHODS",
    "METHOD_TABLE",
    "TOP_K",
    "AttributionError",
    "AttributionResult",
    "AttributionStopped",
    "ClassNamer",
    "Kind",
    "Prediction",
    "attribute",
    "attribute_images",
    "captum_grad_cam",
    "class_names_for",
    "comparison_cells",
    "default_layer",
    "forward_cam",
    "forward_passes",
    "fullgrad",
    "grad_cam",
    "grad_cam_layers",
    "gradient_cams",
    "layer_choices",
    "make_baseline",
    "normalize_maps",
    "occlusion_plan",
    "parse_target",
    "shapley_cam",
    "smooth_grad_campp",
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


# Keyword arguments of the former one-function API -> (method, option field).
_LEGACY = {
    "baseline": ("integrated_gradients", "baseline"),
    "ig_steps": ("integrated_gradients", "steps"),
    "noise_tunnel": ("integrated_gradients", "noise_tunnel"),
    "nt_samples": ("integrated_gradients", "nt_samples"),
    "nt_stdev": ("integrated_gradients", "nt_stdev"),
    "occlusion_window": ("occlusion", "window"),
    "occlusion_stride": ("occlusion", "stride"),
    "batch_size": ("scorecam", "batch_size"),
}


def _spec_and_options(method: str, options: object | None, legacy: dict[str, object]):
    try:
        spec = get_method(method)
    except ResvizError as exc:
        raise AttributionError(str(exc)) from None
    unknown = [k for k in legacy if k not in _LEGACY]
    if unknown:
        raise TypeError(f"attribute() got an unexpected keyword argument {unknown[0]!r}")
    if options is None:
        fields = {f.name for f in dataclasses.fields(spec.options)}
        mine = {_LEGACY[k][1]: v for k, v in legacy.items() if _LEGACY[k][1] in fields}
        options = spec.options(**mine)  # options of other methods are ignored, as they always were
    elif not isinstance(options, spec.options):
        raise AttributionError(f"{spec.label} takes {spec.options.__name__}, not {type(options).__name__}.")
    return spec, options


def attribute(
    model: nn.Module,
    x: Tensor,
    method: str = "gradcam",
    *,
    layer: str | None = None,
    target: int | Sequence[int] | None = None,
    class_name: ClassNamer | Sequence[str] | None = None,
    top_k: int = TOP_K,
    options: object | None = None,
    preprocessing: Preprocessing | None = None,
    progress: Progress | None = None,
    **legacy: object,
) -> AttributionResult:
    """Any method of the table (:data:`resviz.analysis.methods.METHOD_TABLE`) for a batch.

    Gradient CAMs take the one-pass path of :func:`gradient_cams`; the per-channel CAMs (Score-CAM,
    SS-CAM, IS-CAM, Ablation-CAM) the batched one of :func:`forward_cam`; Smooth Grad-CAM++,
    Shapley-CAM and FullGrad their own (:mod:`resviz.analysis.cams_noise`,
    :mod:`resviz.analysis.shapley_cam`, :mod:`resviz.analysis.fullgrad`). The
    captum methods do one gradient-free forward for the prediction (which also picks the target
    when none is given), then captum's method.

    Args:
        model: a classifier.
        x: ``(N, C, H, W)`` normalized images.
        method: a name of the table.
        layer: for the layer methods (default: the last stage); ignored by input methods.
        target: class to explain (one, or one per image); ``None``: the predicted class.
        class_name: class names for the labels.
        top_k: classes kept in the prediction.
        options: the method's options dataclass (default: its defaults).
        preprocessing: the model's preprocessing (for Integrated Gradients' "black" baseline).
        progress: for the per-channel CAMs, ``(done, total) -> False to stop``.
        **legacy: the former keywords (``ig_steps``, ``baseline``, ``occlusion_window``...).

    Returns:
        maps ``(N, H, W)`` in ``[0, 1]`` and the method's raw output (see :class:`AttributionResult`).
    """
    spec, opts = _spec_and_options(method, options, legacy)
    layer_name = (layer or default_layer(model)) if spec.needs_layer else None
    named = dict(class_name=class_name, top_k=top_k, target=target)
    if spec.engine == "gradient":
        return gradient_cams(model, x, [layer_name], [method], **named)[(layer_name, method)]
    if spec.engine == "forward":
        return forward_cam(model, x, layer_name, method, options=opts, progress=progress, **named)
    if spec.engine == "noise":
        return smooth_grad_campp(
            model, x, layer_name, num_samples=opts.num_samples, std=opts.std, seed=opts.seed, **named
        )
    if spec.engine == "fullgrad":
        return fullgrad(model, x, **named)
    if spec.engine == "hessian":
        return shapley_cam(model, x, layer_name, **named)
    module = resolve_layers(model, [layer_name])[layer_name] if layer_name else None
    x = _check_input(model, x)
    namer = _class_namer(class_name)
    with _analysis_mode(model), oom_guard(spec.label):
        logits = _forward_checking_layer(model, x, layer_name)
        targets = _targets(target, logits)
        with warnings.catch_warnings():
            # captum announces its ReLU hooks on every Guided Grad-CAM call; we remove them too.
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            raw, delta = _captum(model, module, x, method, targets.tolist(), opts, preprocessing)
        raw = raw.detach()
        completeness = None
        if delta is not None:
            base = make_baseline(x, opts.baseline, preprocessing)
            with torch.no_grad():
                span = (logits - model(base)).gather(1, targets[:, None])[:, 0]
            completeness = (100 * delta.abs() / span.abs().clamp_min(1e-12)).float().cpu().numpy()
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
        completeness=completeness,
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
    opts: object,
    preprocessing: Preprocessing | None,
) -> tuple[Tensor, Tensor | None]:
    """Captum's attribution ``(N, C, H, W)`` for ``x`` and the known targets, and Integrated
    Gradients' convergence delta ``(N,)`` (``None`` for the other methods and the noise tunnel)."""
    from captum.attr import GuidedGradCam, IntegratedGradients, NoiseTunnel, Occlusion, Saliency

    if method == "guided_gradcam":
        x = x.clone().requires_grad_(True)  # captum warns when it has to do this itself
        return GuidedGradCam(model, module).attribute(x, target=target, interpolate_mode="bilinear"), None
    if method == "saliency":
        absolute = bool(getattr(opts, "absolute", True))
        return Saliency(model).attribute(x.clone().requires_grad_(True), target=target, abs=absolute), None
    if method == "integrated_gradients":
        base = make_baseline(x, opts.baseline, preprocessing)
        ig = IntegratedGradients(model)
        steps = max(2, int(opts.steps))
        if not opts.noise_tunnel:
            return ig.attribute(
                x,
                baselines=base,
                target=target,
                n_steps=steps,
                internal_batch_size=steps,
                return_convergence_delta=True,
            )
        stdev = float(opts.nt_stdev) * float(x.max() - x.min())
        raw = NoiseTunnel(ig).attribute(
            x,
            nt_type="smoothgrad",
            nt_samples=max(1, int(opts.nt_samples)),
            stdevs=stdev,
            baselines=base,
            target=target,
            n_steps=steps,
            internal_batch_size=steps,
        )
        return raw, None
    # occlusion
    w, s, _ = occlusion_plan(min(x.shape[-2:]), opts.window, opts.stride)
    raw = Occlusion(model).attribute(
        x,
        sliding_window_shapes=(x.shape[1], w, w),
        strides=(x.shape[1], s, s),
        baselines=0.0,
        target=target,
        perturbations_per_eval=16,
    )
    return raw, None


def occlusion_plan(side: int, window: int | None = None, stride: int | None = None) -> tuple[int, int, int]:
    """Occlusion's square, its stride and its forward passes per image (:func:`methods.occlusion_plan`)."""
    try:
        return _occlusion_plan(side, window, stride)
    except ResvizError as exc:
        raise AttributionError(str(exc)) from None


def _reduce(method: str, raw: Tensor) -> Tensor:
    """Channels -> one ``(N, H, W)`` map per image, following each method's usual display."""
    if method == "saliency":  # Simonyan et al. 2013: max of |gradient| over channels
        return raw.abs().amax(dim=1)
    if method == "occlusion":  # evidence for the class: where hiding the patch lowers its score
        return F.relu(raw.mean(dim=1))
    return raw.abs().sum(dim=1)  # Guided Grad-CAM, Integrated Gradients


# --------------------------------------------------------------------------- comparison grid

SHORTCUT_COLUMNS = ("with shortcuts", "without shortcuts")  # the model's own column: residual, plain


def comparison_cells(
    model: nn.Module,
    x: Tensor,
    layers: Sequence[str],
    methods: Sequence[str],
    *,
    target: int | None = None,
    options: Mapping[str, object] | None = None,
    preprocessing: Preprocessing | None = None,
    twin: nn.Module | None = None,
    twin_label: str | None = None,
) -> dict[tuple[str, str], np.ndarray]:
    """The comparison grid for one image: layers x methods, or the model vs a counterpart.

    Every gradient CAM at every layer comes from one forward + one backward per network; other layer
    methods run once per layer, and input methods once (their cell is in the first row, the column
    titled "(input)").

    Args:
        model: a classifier.
        x: ``(1, C, H, W)`` one normalized image.
        layers: the rows, dotted layer names.
        methods: the columns, names of the table; with ``twin`` only gradient CAMs are shown.
        target: the class every cell explains (``None``: the model's prediction).
        options: method name -> its options dataclass (default: the method's defaults).
        preprocessing: for Integrated Gradients' "black" baseline.
        twin: the residual<->plain counterpart: columns become the two networks (x each method).
        twin_label: the counterpart's column title (default: :data:`resviz.analysis.pairs.CUT_TWIN`,
            "shortcuts cut (same weights)", or its mirror for a plain model); the model's column
            is "with shortcuts" or "without shortcuts".

    Returns:
        ``{(layer, column): (H, W) map in [0, 1]}``; column titles are method labels, or the two
        networks' titles (prefixed by the method's label when there are several).
    """
    layers, methods = list(layers), list(methods)
    if not layers or not methods:
        raise AttributionError("Choose at least one layer and one method for the grid.")
    specs = [get_method(m) for m in methods]
    options = dict(options or {})
    gradient = [m.name for m in specs if m.engine == "gradient"]
    cells: dict[tuple[str, str], np.ndarray] = {}
    if twin is not None:
        if not gradient:
            raise AttributionError("The residual-vs-plain grid shows gradient CAMs; choose one.")
        if target is None:  # both networks explain the class the residual one predicts
            target = int(grad_cam(model, x, layers[0]).targets[0])
        from resviz.analysis.pairs import counterpart_name

        residual = bool(model.config.skip)
        ours = SHORTCUT_COLUMNS[0] if residual else SHORTCUT_COLUMNS[1]
        theirs = twin_label or counterpart_name(residual, trained=False)
        for net, side in ((model, ours), (twin, theirs)):
            for (layer, m), r in gradient_cams(net, x, layers, gradient, target=target).items():
                cells[(layer, side if len(gradient) == 1 else f"{METHODS[m]}, {side}")] = r.maps[0]
        return cells
    found = gradient_cams(model, x, layers, gradient, target=target) if gradient else {}
    for spec in specs:
        opts = options.get(spec.name)
        if spec.engine == "gradient":
            for layer in layers:
                cells[(layer, spec.label)] = found[(layer, spec.name)].maps[0]
        elif spec.needs_layer:
            for layer in layers:
                r = attribute(
                    model, x, spec.name, layer=layer, target=target, options=opts, preprocessing=preprocessing
                )
                cells[(layer, spec.label)] = r.maps[0]
        else:
            r = attribute(model, x, spec.name, target=target, options=opts, preprocessing=preprocessing)
            cells[(layers[0], f"{spec.label} (input)")] = r.maps[0]
    return cells


# --------------------------------------------------------------------------- images in


IMAGENET_NAMES_NOTE = "Class names: torchvision's ImageNet categories (the checkpoint carries none)."


def class_names_for(loaded: LoadedModel) -> tuple[tuple[str, ...] | None, str | None]:
    """The class names to show for ``loaded``, and a note when they are not the checkpoint's own.

    A trained 1000-class ImageNet-stem network without names of its own gets torchvision's ImageNet
    categories (shipped inside torchvision: nothing is downloaded), and the note says so.
    """
    if loaded.class_names:
        return tuple(loaded.class_names), None
    cfg = loaded.config
    if loaded.trained and cfg.num_classes == 1000 and cfg.stem == "imagenet":
        from torchvision.models import ResNet18_Weights

        return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"]), IMAGENET_NAMES_NOTE
    return None, None


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
    names, _ = class_names_for(loaded)
    namer = names if names is not None else loaded.class_name
    return attribute(loaded.model, x, method, class_name=namer, **options)  # type: ignore[arg-type]


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
