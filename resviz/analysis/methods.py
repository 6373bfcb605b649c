"""The table of attribution methods: what each is, what it costs, and its options. No torch here.

The Attribution page, ``python -m resviz cam --method`` and the README's list read this table, so
adding a method is one row here and one function (:mod:`resviz.analysis.cams` for a gradient CAM).
Options are small frozen dataclasses: hashable, so a page can cache on them, and each field's
``metadata`` carries its label, range and help for widgets and the CLI.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

BASELINES: dict[str, str] = {
    "black": "a black image",
    "zeros": "zeros after normalization (the dataset's mean image)",
    "blur": "a strongly blurred copy of the image",
    "noise": "uniform noise (fixed seed)",
}


class Kind(str, Enum):
    """Where a method's map lives."""

    CAM = "CAM on a layer"  # a layer's channels weighted, upsampled to the input
    LAYER = "layer attribution"  # a layer's CAM combined with input gradients (Guided Grad-CAM)
    INPUT = "input attribution"  # per pixel of the input; no layer
    # FullGrad: the input-gradient term plus every bias layer's, summed; no one layer to choose
    NETWORK = "whole network"


def _opt(default: Any, label: str, help: str, lo: float | None = None, hi: float | None = None, **more: Any):
    return field(default=default, metadata={"label": label, "help": help, "min": lo, "max": hi, **more})


@dataclass(frozen=True)
class NoOptions:
    """A method without options."""


@dataclass(frozen=True)
class ForwardCamOptions:
    """Score-CAM and Ablation-CAM: one forward pass per channel, evaluated in batches."""

    batch_size: int = _opt(64, "Batch size", "forward passes evaluated together (memory vs speed)", 1, 1024)


@dataclass(frozen=True)
class SmoothScoreCamOptions:
    """SS-CAM (Wang et al. 2020): Score-CAM averaged over masks with Gaussian noise (torch-cam's noise;
    8 samples, not its 35: each sample costs as much as a whole Score-CAM)."""

    batch_size: int = _opt(64, "Batch size", "forward passes evaluated together (memory vs speed)", 1, 1024)
    num_samples: int = _opt(8, "Noisy samples", "noisy copies of every mask; each costs a pass", 1, 128)
    std: float = _opt(2.0, "Noise std", "of the noise added to each mask (masks span 0 to 1)", 0.0, 10.0)
    seed: int = _opt(0, "Seed", "the noise's random seed: same seed, same map", 0, 2**31 - 1)


@dataclass(frozen=True)
class IntegratedScoreCamOptions:
    """IS-CAM (Naidu et al. 2020): Score-CAM integrated over scaled masks (torch-cam's default)."""

    batch_size: int = _opt(64, "Batch size", "forward passes evaluated together (memory vs speed)", 1, 1024)
    num_samples: int = _opt(10, "Integration steps", "scaled copies of every mask; each costs a pass", 1, 128)


@dataclass(frozen=True)
class SmoothGradCamppOptions:
    """Smooth Grad-CAM++ (Omeiza et al. 2019): Grad-CAM++ with gradients averaged over noisy inputs."""

    num_samples: int = _opt(
        4, "Noisy samples", "noisy copies of the image; each costs a forward + backward", 1, 64
    )
    std: float = _opt(0.3, "Noise std", "of the noise added to the normalized image", 0.0, 5.0)
    seed: int = _opt(0, "Seed", "the noise's random seed: same seed, same map", 0, 2**31 - 1)


@dataclass(frozen=True)
class SaliencyOptions:
    """Saliency (Simonyan et al. 2013): the gradient's absolute value, or its sign kept."""

    absolute: bool = _opt(
        True, "Absolute gradient", "off: keep the sign (red raises the class score, blue lowers it)"
    )


@dataclass(frozen=True)
class IntegratedGradientsOptions:
    """Integrated Gradients (Sundararajan et al. 2017) and its SmoothGrad noise tunnel."""

    baseline: str = _opt("black", "Baseline", "the path's starting point", choices=tuple(BASELINES))
    steps: int = _opt(32, "Steps", "points along the path; more steps, smaller completeness error", 2, 256)
    noise_tunnel: bool = _opt(False, "Noise tunnel (SmoothGrad)", "average over noisy copies of the image")
    nt_samples: int = _opt(4, "Noisy samples", "noisy copies per image for the noise tunnel", 1, 32)
    nt_stdev: float = _opt(0.15, "Noise level", "noise std as a fraction of the input's range", 0.0, 1.0)


@dataclass(frozen=True)
class OcclusionOptions:
    """Occlusion (Zeiler & Fergus 2014): a square of zeros (the mean colour) slid over the image."""

    window: int | None = _opt(None, "Occluding square (pixels)", "default: a seventh of the input", 1, 4096)
    stride: int | None = _opt(None, "Stride (pixels)", "default: half the square", 1, 4096)


def occlusion_plan(side: int, window: int | None = None, stride: int | None = None) -> tuple[int, int, int]:
    """Occlusion's square, its stride and the forward passes it costs per image at ``side`` pixels.

    Defaults: a square of a seventh of the input, moved by half its side. Each position is one
    forward pass, so a person can be told the cost before asking for it.
    """
    w = int(window or max(2, side // 7))
    s = int(stride or max(1, w // 2))
    if not 1 <= w <= side or s < 1:
        from resviz.errors import ResvizError

        raise ResvizError(f"The occlusion window must be 1 to {side} pixels and the stride positive.")
    per_side = math.ceil((side - w) / s) + 1
    return w, s, per_side * per_side


# (options, channels of the layer, input side) -> (forward passes, backward passes) per image
CostModel = Callable[[Any, int, int], tuple[int, int]]


@dataclass(frozen=True)
class MethodSpec:
    """One row of the table.

    Attributes:
        name: the stable identifier scripts use (``--method``).
        label: for people.
        kind: where the map lives.
        engine: ``"gradient"`` (the shared one forward + one backward), ``"forward"`` (batched
            forward passes per channel: a cost to say before running), ``"noise"`` (a forward and
            backward per noisy copy of the image), ``"hessian"`` (a backward and a double
            backward), ``"fullgrad"`` (one forward + backward through the whole network) or
            ``"captum"``.
        cost: forward and backward passes per image, from the options, the layer's channels and the
            input's side.
        cost_text: the same in words, for the README and the CLI's help.
        options: the options dataclass, instantiable with no arguments for the defaults.
        reference: the paper, and the library whose implementation the tests compare with.
        about: one or two sentences for people: what it computes, and what its colours mean.
        uses_class: False for the methods whose map is the same whatever class is asked for
            (Eigen-CAM, FEM, KPCA-CAM: activations only), so a page can grey out its class picker.
        signed: its raw attribution has a meaningful sign (raises vs lowers the class), shown on a
            diverging colour scale besides the usual map.
    """

    name: str
    label: str
    kind: Kind
    engine: str
    cost: CostModel
    cost_text: str
    options: type = NoOptions
    reference: str = ""
    about: str = ""
    uses_class: bool = True
    signed: bool = False

    @property
    def needs_layer(self) -> bool:
        return self.kind not in (Kind.INPUT, Kind.NETWORK)

    def default_options(self) -> Any:
        return self.options()


def _one_pass(_o: Any, _c: int, _s: int) -> tuple[int, int]:
    return 1, 1


def _ig_cost(o: IntegratedGradientsOptions, _c: int, _s: int) -> tuple[int, int]:
    if o.noise_tunnel:
        per = o.steps * o.nt_samples
        return 1 + per, per  # the prediction, then every noisy copy's path
    # The prediction, the path, captum's convergence delta (the image and the baseline again) and
    # the baseline once more for the completeness percentage: as counted in the tests.
    return 4 + o.steps, o.steps


def _occlusion_cost(o: OcclusionOptions, _c: int, side: int) -> tuple[int, int]:
    return 2 + occlusion_plan(side, o.window, o.stride)[2], 0


def _gcam(name: str, label: str, reference: str, about: str) -> MethodSpec:
    text = "1 forward + 1 backward (shared by every gradient CAM and layer)"
    return MethodSpec(name, label, Kind.CAM, "gradient", _one_pass, text, reference=reference, about=about)


# For people: what each method computes and what its colours mean (the page shows it under the picker).
_ABOUT: dict[str, str] = {
    "gradcam": (
        "Weights each channel of the layer by its mean gradient for the class, sums them and keeps "
        "the positive part. Warm colours: where the layer's features raise the class score."
    ),
    "gradcampp": (
        "Grad-CAM with channel weights from positive gradients only (higher-order terms), so "
        "several objects of the class can all light up. Warm colours: where the layer's features "
        "raise the class score."
    ),
    "xgradcam": (
        "Grad-CAM with each gradient weighted by its activation; close to Grad-CAM on ResNets. Warm"
        " colours: where the layer's features raise the class score."
    ),
    "layercam": (
        "Each position's activation times its own positive gradient, not a channel average: finer "
        "maps at early layers. Warm colours: where the layer's features raise the class score."
    ),
    "hirescam": (
        "Activation times gradient position by position, summed over channels: what the layer "
        "contributes to the class score. Warm colours: where the layer's features raise the class "
        "score."
    ),
    "gradcam_elementwise": (
        "Like HiResCAM, with the positive part taken before the channel sum. Warm colours: where "
        "the layer's features raise the class score."
    ),
    "eigengradcam": (
        "The first principal component of activation x gradient: the dominant class-related "
        "pattern. Warm colours: strong in that pattern."
    ),
    "eigencam": (
        "The first principal component of the layer's activations: the dominant pattern, whatever "
        "the class (no class to pick). Warm colours: strong in that pattern."
    ),
    "fem": (
        "Keeps the channels whose activation stands out (above their mean + 2 std) and averages "
        "them: whatever the class (no class to pick). Warm colours: unusually active features."
    ),
    "kpca_cam": (
        "Eigen-CAM with a kernel (RBF) PCA in place of the linear one: whatever the class (no class"
        " to pick). Warm colours: strong in the first component."
    ),
    "shapleycam": (
        "Grad-CAM's channel weights corrected by a second-order (Hessian-vector) term, "
        "approximating each channel's Shapley value. Warm colours: where the layer's features raise"
        " the class score."
    ),
    "scorecam": (
        "Masks the image with each upsampled channel and weighs that channel by the class's "
        "probability on the masked image; no gradient. Warm colours: regions that alone keep the "
        "class."
    ),
    "ablationcam": (
        "Switches off each channel in turn and weighs it by how much the class score drops; no "
        "gradient. Warm colours: regions the class needs."
    ),
    "sscam": (
        "Score-CAM averaged over noisy copies of each mask: smoother, and as many times slower as "
        "there are samples. Warm colours: regions that alone keep the class."
    ),
    "iscam": (
        "Score-CAM summed over masks scaled up from 0 to 1 (an integral): steadier weights, one "
        "pass per step. Warm colours: regions that alone keep the class."
    ),
    "smoothgradcampp": (
        "Grad-CAM++ with gradients averaged over noisy copies of the image: less speckle, one "
        "backward pass per sample. Warm colours: where the layer's features raise the class score."
    ),
    "fullgrad": (
        "Input-gradient x input plus every layer's bias-gradient x bias, all summed: the whole "
        "network, no layer to pick. Warm colours: large contributions."
    ),
    "guided_gradcam": (
        "Grad-CAM at the layer times guided backpropagation at the input: pixel-sharp detail inside"
        " the Grad-CAM region. Bright: fine detail that raises the class."
    ),
    "saliency": (
        "The gradient of the class score at each pixel (Simonyan et al.): where a small change "
        "moves the score most. Its absolute value by default; the signed view shows red for raises "
        "and blue for lowers."
    ),
    "integrated_gradients": (
        "Gradients averaged along a straight path from a baseline image to this one, times their "
        "difference: the attributions add up to f(image) - f(baseline) (the completeness check). "
        "Signed: red raises the class, blue lowers it."
    ),
    "occlusion": (
        "Slides a square of the mean colour over the image and records how far the class score "
        "falls at each position; no gradient. Warm colours: hiding it lowers the class."
    ),
}

_PGC = "pytorch-grad-cam"
METHOD_TABLE: tuple[MethodSpec, ...] = (
    _gcam("gradcam", "Grad-CAM", f"Selvaraju et al. 2017; captum LayerGradCam, {_PGC}", _ABOUT["gradcam"]),
    _gcam("gradcampp", "Grad-CAM++", f"Chattopadhyay et al. 2018; {_PGC}", _ABOUT["gradcampp"]),
    _gcam("xgradcam", "XGrad-CAM", f"Fu et al. 2020; {_PGC}", _ABOUT["xgradcam"]),
    _gcam("layercam", "LayerCAM", f"Jiang et al. 2021; {_PGC}", _ABOUT["layercam"]),
    _gcam("hirescam", "HiResCAM", f"Draelos & Carin 2020; {_PGC}", _ABOUT["hirescam"]),
    _gcam(
        "gradcam_elementwise",
        "Element-wise Grad-CAM",
        f"{_PGC} GradCAMElementWise",
        _ABOUT["gradcam_elementwise"],
    ),
    _gcam("eigengradcam", "EigenGrad-CAM", f"{_PGC} EigenGradCAM", _ABOUT["eigengradcam"]),
    MethodSpec(
        "eigencam",
        "Eigen-CAM",
        Kind.CAM,
        "gradient",
        lambda _o, _c, _s: (1, 0),
        "1 forward (no gradient)",
        reference=f"Muhammad & Yeasin 2020; {_PGC}",
        about=_ABOUT["eigencam"],
        uses_class=False,
    ),
    MethodSpec(
        "fem",
        "FEM",
        Kind.CAM,
        "gradient",
        lambda _o, _c, _s: (1, 0),
        "1 forward (no gradient)",
        reference=f"Fuad et al. 2020 (k = 2); {_PGC} FEM",
        about=_ABOUT["fem"],
        uses_class=False,
    ),
    MethodSpec(
        "kpca_cam",
        "KPCA-CAM",
        Kind.CAM,
        "gradient",
        lambda _o, _c, _s: (1, 0),
        "1 forward (no gradient) + a kernel PCA per image",
        reference=f"Karmani et al. 2024; {_PGC} KPCA_CAM",
        about=_ABOUT["kpca_cam"],
        uses_class=False,
    ),
    MethodSpec(
        "shapleycam",
        "Shapley-CAM",
        Kind.CAM,
        "hessian",
        lambda _o, _c, _s: (1, 2),
        "1 forward + 1 backward + 1 double backward (a Hessian-vector product)",
        reference=f"Cai et al. 2025; {_PGC} ShapleyCAM",
        about=_ABOUT["shapleycam"],
    ),
    MethodSpec(
        "scorecam",
        "Score-CAM",
        Kind.CAM,
        "forward",
        lambda _o, c, _s: (1 + c, 0),
        "1 forward per channel of the layer (batched), on the masked image",
        ForwardCamOptions,
        f"Wang et al. 2020; {_PGC}",
        about=_ABOUT["scorecam"],
    ),
    MethodSpec(
        "ablationcam",
        "Ablation-CAM",
        Kind.CAM,
        "forward",
        lambda _o, c, _s: (1 + c, 0),
        "1 forward per channel of the layer (batched), from the layer's activation up",
        ForwardCamOptions,
        f"Desai & Ramaswamy 2020; {_PGC}",
        about=_ABOUT["ablationcam"],
    ),
    MethodSpec(
        "sscam",
        "SS-CAM",
        Kind.CAM,
        "forward",
        lambda o, c, _s: (1 + c * o.num_samples, 0),
        "1 forward per channel of the layer per noisy sample (batched), on the masked image",
        SmoothScoreCamOptions,
        "Wang et al. 2020; torch-cam SSCAM",
        about=_ABOUT["sscam"],
    ),
    MethodSpec(
        "iscam",
        "IS-CAM",
        Kind.CAM,
        "forward",
        lambda o, c, _s: (1 + c * o.num_samples, 0),
        "1 forward per channel of the layer per integration step (batched), on the masked image",
        IntegratedScoreCamOptions,
        "Naidu et al. 2020; torch-cam ISCAM",
        about=_ABOUT["iscam"],
    ),
    MethodSpec(
        "smoothgradcampp",
        "Smooth Grad-CAM++",
        Kind.CAM,
        "noise",
        lambda o, _c, _s: (1 + o.num_samples, o.num_samples),
        "1 forward + 1 forward and backward per noisy sample",
        SmoothGradCamppOptions,
        "Omeiza et al. 2019; torch-cam SmoothGradCAMpp",
        about=_ABOUT["smoothgradcampp"],
    ),
    MethodSpec(
        "fullgrad",
        "FullGrad",
        Kind.NETWORK,
        "fullgrad",
        _one_pass,
        "1 forward + 1 backward to the input (every bias layer's gradient from the same pass)",
        reference=f"Srinivas & Fleuret 2019; {_PGC} FullGrad",
        about=_ABOUT["fullgrad"],
    ),
    MethodSpec(
        "guided_gradcam",
        "Guided Grad-CAM",
        Kind.LAYER,
        "captum",
        lambda _o, _c, _s: (3, 2),
        "3 forwards + 2 backwards",
        reference="Selvaraju et al. 2017; captum GuidedGradCam",
        about=_ABOUT["guided_gradcam"],
    ),
    MethodSpec(
        "saliency",
        "Saliency",
        Kind.INPUT,
        "captum",
        lambda _o, _c, _s: (2, 1),
        "2 forwards + 1 backward",
        SaliencyOptions,
        reference="Simonyan et al. 2013; captum Saliency",
        about=_ABOUT["saliency"],
        signed=True,
    ),
    MethodSpec(
        "integrated_gradients",
        "Integrated Gradients",
        Kind.INPUT,
        "captum",
        _ig_cost,
        "4 + steps forwards and steps backwards (noise tunnel: 1 + steps x samples, and as many backwards)",
        IntegratedGradientsOptions,
        "Sundararajan et al. 2017; captum IntegratedGradients",
        about=_ABOUT["integrated_gradients"],
        signed=True,
    ),
    MethodSpec(
        "occlusion",
        "Occlusion",
        Kind.INPUT,
        "captum",
        _occlusion_cost,
        "2 + 1 forward per position of the square",
        OcclusionOptions,
        "Zeiler & Fergus 2014; captum Occlusion",
        about=_ABOUT["occlusion"],
    ),
)
METHODS_BY_NAME: dict[str, MethodSpec] = {m.name: m for m in METHOD_TABLE}
METHODS: dict[str, str] = {m.name: m.label for m in METHOD_TABLE}
LAYER_METHODS = frozenset(m.name for m in METHOD_TABLE if m.needs_layer)


def get_method(name: str) -> MethodSpec:
    """The row for ``name``; an unknown name raises an error that lists the choices."""
    try:
        return METHODS_BY_NAME[name]
    except KeyError:
        from resviz.errors import ResvizError

        raise ResvizError(f"Unknown method {name!r}; choose one of {', '.join(METHODS)}.") from None


def make_options(method: str, values: dict[str, Any] | None = None) -> Any:
    """The method's options from ``{field: value}`` (strings from a CLI are converted), checked
    against each field's choices and range; unknown fields raise an error that lists the known ones."""
    from resviz.errors import ResvizError

    spec = get_method(method)
    fields = {f.name: f for f in dataclasses.fields(spec.options)}
    out: dict[str, Any] = {}
    for key, raw in (values or {}).items():
        f = fields.get(key)
        if f is None:
            known = ", ".join(fields) or "none"
            raise ResvizError(f"{spec.label} has no option {key!r}; its options: {known}.")
        out[key] = _convert(spec.label, f, raw)
    return spec.options(**out)


def _convert(label: str, f: dataclasses.Field, raw: Any) -> Any:
    from resviz.errors import ResvizError

    default, meta = f.default, f.metadata
    try:
        if raw is None or (isinstance(raw, str) and raw.lower() in ("", "none", "default")):
            value = None if default is None else default
        elif isinstance(default, bool):
            value = raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes", "on")
        elif isinstance(default, float):
            value = float(raw)
        elif isinstance(default, int) or "int" in str(f.type):
            value = int(raw)
        else:
            value = str(raw)
    except ValueError:
        raise ResvizError(f"{label}'s option {f.name} must be a number; got {raw!r}.") from None
    if meta.get("choices") and value not in meta["choices"]:
        raise ResvizError(f"{label}'s option {f.name} must be one of {', '.join(meta['choices'])}.")
    lo, hi = meta.get("min"), meta.get("max")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and ((lo is not None and value < lo) or (hi is not None and value > hi)):
        raise ResvizError(f"{label}'s option {f.name} must be between {lo} and {hi}; got {value}.")
    return value


def method_help() -> str:
    """One line per method for ``--help``: name, label and cost."""
    return "; ".join(f"{m.name} ({m.label}: {m.cost_text})" for m in METHOD_TABLE)


def option_help() -> str:
    """The options of every method that has some, for ``--option``'s help: ``"batch_size (scorecam,
    ablationcam); ..."``, methods with the same options grouped."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for m in METHOD_TABLE:
        names = tuple(f.name for f in dataclasses.fields(m.options))
        if names:
            groups.setdefault(names, []).append(m.name)
    return "; ".join(f"{', '.join(names)} ({', '.join(methods)})" for names, methods in groups.items())


def readme_table() -> str:
    """The README's Markdown table of every method with its kind, cost and options."""
    rows = ["| method | name | kind | cost per image | options | reference |", "|---|---|---|---|---|---|"]
    for m in METHOD_TABLE:
        opts = ", ".join(f"`{f.name}={f.default}`" for f in dataclasses.fields(m.options)) or "-"
        rows.append(f"| {m.label} | `{m.name}` | {m.kind.value} | {m.cost_text} | {opts} | {m.reference} |")
    return "\n".join(rows)
