"""The method table, its options, the library's comparison grid, Integrated Gradients' completeness,
class names, and the overlay's colour scale and categorical class axes."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from resviz.analysis.attribution import (
    attribute,
    class_names_for,
    comparison_cells,
    gradient_cams,
    make_baseline,
)
from resviz.analysis.methods import (
    METHOD_TABLE,
    METHODS,
    ForwardCamOptions,
    IntegratedGradientsOptions,
    Kind,
    get_method,
    make_options,
    readme_table,
)
from resviz.errors import ResvizError
from resviz.hooks import hook_count
from resviz.models import create_model, make_twin

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def _x(n: int = 1, side: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(3))


def test_table_is_torch_free_and_complete():
    code = "import sys, resviz.analysis.methods as m; print('torch' in sys.modules, len(m.METHOD_TABLE))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["False", str(len(METHOD_TABLE))]
    required = {
        "gradcam",
        "gradcampp",
        "xgradcam",
        "layercam",
        "hirescam",
        "scorecam",
        "ablationcam",
        "eigencam",
        "fullgrad",
        "smoothgradcampp",
        "sscam",
        "iscam",
        "fem",
        "kpca_cam",
        "shapleycam",
    }
    assert required <= set(METHODS)
    for spec in METHOD_TABLE:
        opts = spec.default_options()
        hash(opts)  # a page's cache key
        assert dataclasses.is_dataclass(opts)
    assert get_method("saliency").kind is Kind.INPUT and not get_method("saliency").needs_layer
    # FullGrad: the whole network (input + every bias layer), no layer.
    full = get_method("fullgrad")
    assert full.kind is Kind.NETWORK and not full.needs_layer
    for name in ("scorecam", "ablationcam", "sscam", "iscam"):
        assert "batch_size" in {f.name for f in dataclasses.fields(get_method(name).options)}


# Small options, so that every method runs in a moment; the cost must follow them.
_SMALL = {"num_samples": 2, "steps": 3, "nt_samples": 2, "batch_size": 7, "window": 8, "stride": 4}


@pytest.mark.parametrize("noise_tunnel", [False, True])
def test_the_cost_is_the_passes_each_method_makes(noise_tunnel, monkeypatch):
    """The table's cost is what a page tells before running: it must be the images that really go
    forward through the network, and the gradients that really come back to its output, per image."""
    import resviz.analysis.cams_forward as cams_forward

    monkeypatch.setattr(cams_forward, "COPY_PAYS_SECONDS", 1e9)  # the passes on the model itself
    model = create_model("resnet8", seed=0).eval()
    n, side, layer = 2, 16, "layer3.0.conv2"  # a conv's output: no constant channel to skip
    channels = dict(model.named_modules())[layer].out_channels
    counted = [0, 0]

    def count(_m, _i, out: torch.Tensor) -> None:
        counted[0] += out.shape[0]
        if out.requires_grad:
            out.register_hook(lambda g: counted.__setitem__(1, counted[1] + g.shape[0]))

    specs = [s for s in METHOD_TABLE if s.name == "integrated_gradients" or not noise_tunnel]
    for spec in specs:
        fields = {f.name for f in dataclasses.fields(spec.options)}
        opts = dataclasses.replace(
            spec.default_options(),
            **{k: v for k, v in _SMALL.items() if k in fields},
            **({"noise_tunnel": True} if noise_tunnel else {}),
        )
        counted[:] = [0, 0]
        handle = model.register_forward_hook(count)
        try:
            attribute(model, _x(n, side), spec.name, layer=layer if spec.needs_layer else None, options=opts)
        finally:
            handle.remove()
        forwards, backwards = spec.cost(opts, channels, side)
        if spec.engine == "hessian":
            backwards -= 1  # the double backward starts from the gradient, not from the output
        assert (counted[0] / n, counted[1] / n) == (forwards, backwards), spec.name


def test_make_options_converts_and_checks():
    assert make_options("integrated_gradients", {"steps": "64", "noise_tunnel": "true"}) == (
        IntegratedGradientsOptions(steps=64, noise_tunnel=True)
    )
    assert make_options("occlusion", {"window": "8"}).window == 8
    with pytest.raises(ResvizError, match="between 2 and 256"):
        make_options("integrated_gradients", {"steps": "1"})
    with pytest.raises(ResvizError, match="its options: batch_size"):
        make_options("scorecam", {"batch": "3"})
    with pytest.raises(ResvizError, match="must be one of black"):
        make_options("integrated_gradients", {"baseline": "white"})
    with pytest.raises(ResvizError, match="Unknown method 'gradcamm'"):
        get_method("gradcamm")


def test_option_help_lists_every_option_from_the_table():
    from resviz.analysis.methods import option_help

    text = option_help()
    assert "batch_size (scorecam, ablationcam)" in text
    assert "batch_size, num_samples, std, seed (sscam)" in text
    assert "num_samples, std, seed (smoothgradcampp)" in text and "fullgrad" not in text


def test_readme_lists_every_method_with_its_cost():
    assert readme_table() in (ROOT / "README.md").read_text(encoding="utf-8")


def test_attribute_takes_options_and_the_former_keywords():
    model = create_model("resnet8", seed=0).eval()
    x = _x(2)
    a = attribute(model, x, "integrated_gradients", options=IntegratedGradientsOptions(steps=8))
    b = attribute(model, x, "integrated_gradients", ig_steps=8)
    np.testing.assert_allclose(a.raw, b.raw, rtol=1e-5, atol=1e-7)
    with pytest.raises(ResvizError, match="takes IntegratedGradientsOptions"):
        attribute(model, x, "integrated_gradients", options=ForwardCamOptions())
    r = attribute(model, x, "scorecam", layer="layer3", batch_size=16)
    assert r.maps.shape == (2, 32, 32) and r.layer == "layer3"


def test_integrated_gradients_completeness_is_the_sum_against_the_logit_gap():
    model = create_model("resnet8", seed=0).eval()
    x = _x(2)
    r = attribute(model, x, "integrated_gradients", options=IntegratedGradientsOptions(steps=16))
    with torch.no_grad():  # independent: the attributions' sum against f(x) - f(baseline)
        gap = (model(x) - model(make_baseline(x, "black"))).gather(1, torch.as_tensor(r.targets)[:, None])[
            :, 0
        ]
    expected = 100 * np.abs(r.raw.reshape(2, -1).sum(1) - gap.numpy()) / np.abs(gap.numpy())
    np.testing.assert_allclose(r.completeness, expected, rtol=1e-3, atol=1e-3)
    assert attribute(model, x, "saliency").completeness is None


def test_comparison_cells_match_single_calls_and_the_twin():
    model = create_model("resnet8", seed=0).eval()
    x, layers = _x(1), ["layer2", "layer3"]
    cells = comparison_cells(model, x, layers, ["gradcam", "layercam", "saliency"], target=2)
    assert set(cells) == {
        *((lay, lab) for lay in layers for lab in ("Grad-CAM", "LayerCAM")),
        ("layer2", "Saliency (input)"),
    }
    for layer in layers:
        np.testing.assert_allclose(
            cells[(layer, "LayerCAM")],
            attribute(model, x, "layercam", layer=layer, target=2).maps[0],
            atol=1e-6,
        )
    np.testing.assert_allclose(
        cells[("layer2", "Saliency (input)")], attribute(model, x, "saliency", target=2).maps[0], atol=1e-6
    )
    twin = make_twin(model).eval()
    both = comparison_cells(model, x, layers, ["gradcam"], target=2, twin=twin)
    plain = gradient_cams(twin, x, layers, ["gradcam"], target=2)
    np.testing.assert_allclose(
        both[("layer3", "shortcuts cut (same weights)")], plain[("layer3", "gradcam")].maps[0], atol=1e-6
    )
    assert hook_count(model) == 0 and hook_count(twin) == 0


def test_imagenet_names_for_a_trained_1000_class_checkpoint():
    from resviz.models.weights import LoadedModel
    from resviz.preprocessing import for_config

    model = create_model("resnet_tiny", seed=0).eval()
    prep = for_config(model.config)
    checkpoint = LoadedModel(model, "resnet_tiny", "checkpoint", "tiny.pt", prep)
    names, note = class_names_for(checkpoint)
    assert len(names) == 1000 and names[0] == "tench" and names[762] == "restaurant"
    assert "torchvision's ImageNet categories" in note
    assert class_names_for(LoadedModel(model, "resnet_tiny", "random", "random", prep)) == (None, None)
    assert class_names_for(LoadedModel(model, "resnet_tiny", "checkpoint", "x", prep, ("a",) * 1000)) == (
        ("a",) * 1000,
        None,
    )


def test_overlay_has_a_colour_scale_and_class_axes_are_categorical():
    from resviz.plots.attribution import overlay_figure, top_k_figure

    fig = overlay_figure(
        np.zeros((8, 8, 3), np.uint8), np.linspace(0, 1, 64).reshape(8, 8), colormap="Viridis"
    )
    bars = [t for t in fig.data if t.type == "scatter" and t.marker.showscale]
    assert len(bars) == 1 and bars[0].marker.cmin == 0 and bars[0].marker.cmax == 1
    assert list(bars[0].marker.colorbar.ticktext) == ["0 least", "0.5", "1 most"]
    top = top_k_figure([str(i) for i in range(5)], [0.3, 0.2, 0.2, 0.1, 0.1], target="2")
    assert top.layout.yaxis.type == "category"
