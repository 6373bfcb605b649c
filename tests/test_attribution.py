"""Attribution: correctness against hand computation and independent implementations, batching,
shared-model safety, hook hygiene, plots and the ``cam`` command."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resviz.analysis.attribution import (
    BASELINES,
    LAYER_METHODS,
    METHODS,
    AttributionError,
    attribute,
    captum_grad_cam,
    default_layer,
    grad_cam,
    grad_cam_layers,
    layer_choices,
    make_baseline,
    occlusion_plan,
    parse_target,
)
from resviz.errors import LayerNotFoundError, LayerNotUsedError, ResvizError
from resviz.hooks import capture_gradients, capture_outputs, hook_count, model_lock
from resviz.models import create_model, make_twin

torch.set_num_threads(1)


def _inputs(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    return create_model("resnet_tiny", seed=0).eval()


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    return create_model("resnet18", seed=0).eval()


# --------------------------------------------------------------------------- hand-computed case


class HandNet(nn.Module):
    """1 input channel -> 2 feature channels (A0 = x, A1 = -x) -> global mean -> 2 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(1, 2, 1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.features.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.fc.weight.copy_(torch.tensor([[2.0, 1.0], [0.0, 3.0]]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


HAND_X = torch.tensor([[1.0, 2.0], [3.0, -4.0]]).view(1, 1, 2, 2)


def test_hand_computed_grad_cam_predicted_class():
    # logits: y0 = 2*mean(x) + 1*mean(-x) = 0.5*mean(x)=0.25... mean(x)=0.5 -> y0=0.5, y1=-1.5: class 0.
    # alpha = W[0] / (h*w) = [0.5, 0.25]; cam = 0.5*x - 0.25*x = 0.25*x.
    r = grad_cam(HandNet().eval(), HAND_X, "features")
    assert r.targets.tolist() == [0]
    assert r.prediction.indices.tolist() == [[0, 1]]
    np.testing.assert_allclose(r.raw[0], [[0.25, 0.5], [0.75, -1.0]], atol=1e-6)
    # ReLU -> [[.25, .5], [.75, 0]], min-max normalized by 0.75.
    np.testing.assert_allclose(r.maps[0], [[1 / 3, 2 / 3], [1.0, 0.0]], atol=1e-6)
    expected_probs = torch.tensor([0.5, -1.5]).softmax(0).numpy()
    np.testing.assert_allclose(r.prediction.probs[0], expected_probs, atol=1e-6)


def test_hand_computed_grad_cam_chosen_class():
    # alpha = W[1] / 4 = [0, 0.75]; cam = -0.75*x = [[-.75, -1.5], [-2.25, 3]] -> ReLU keeps only 3.
    r = grad_cam(HandNet().eval(), HAND_X, "features", target=1)
    assert r.targets.tolist() == [1]
    np.testing.assert_allclose(r.raw[0], [[-0.75, -1.5], [-2.25, 3.0]], atol=1e-6)
    np.testing.assert_allclose(r.maps[0], [[0, 0], [0, 1]], atol=1e-6)
    ref = captum_grad_cam(HandNet().eval(), HAND_X, "features", [1])
    np.testing.assert_allclose(r.maps, ref, atol=1e-6)


def test_hand_net_upsamples_bilinearly_to_the_input():
    net = HandNet().eval()
    x = F.interpolate(HAND_X, size=(4, 4), mode="nearest")
    net.features.stride = (2, 2)  # layer output 2x2, input 4x4
    r = grad_cam(net, x, "features")
    cam = torch.relu(torch.from_numpy(r.raw)[:, None])
    up = F.interpolate(cam, size=(4, 4), mode="bilinear", align_corners=False)[:, 0]
    up = (up - up.amin()) / (up.amax() - up.amin())
    np.testing.assert_allclose(r.maps, up.numpy(), atol=1e-6)


# --------------------------------------------------------------------------- real ResNet agreement


def _independent_grad_cam(model: nn.Module, x: torch.Tensor, layer: str, target: list[int]) -> np.ndarray:
    """The definition, written with resviz's own hooks and a full backward, in numpy."""
    with capture_outputs(model, [layer]) as acts, capture_gradients(model, [layer]) as grads:
        x = x.clone().requires_grad_(True)
        logits = model(x)
        logits[torch.arange(len(target)), torch.tensor(target)].sum().backward()
    model.zero_grad(set_to_none=True)
    a = acts[layer].numpy()
    g = grads[layer].numpy()
    cam = np.maximum((g.mean(axis=(2, 3), keepdims=True) * a).sum(axis=1), 0.0)
    up = F.interpolate(torch.from_numpy(cam)[:, None], size=x.shape[-2:], mode="bilinear")[:, 0].numpy()
    lo = up.min(axis=(1, 2), keepdims=True)
    hi = up.max(axis=(1, 2), keepdims=True)
    return (up - lo) / np.maximum(hi - lo, 1e-12)


@pytest.mark.parametrize("layer", ["layer4", "layer3.1", "layer4.1.conv2"])
def test_grad_cam_agrees_with_independent_and_captum_on_resnet18(resnet18, layer):
    x = _inputs(2, 64, seed=1)
    r = grad_cam(resnet18, x, layer)
    ours_targets = r.targets.tolist()
    np.testing.assert_allclose(r.maps, _independent_grad_cam(resnet18, x, layer, ours_targets), atol=1e-4)
    np.testing.assert_allclose(r.maps, captum_grad_cam(resnet18, x, layer, ours_targets), atol=1e-5)
    with torch.no_grad():
        logits = resnet18(x)
    assert ours_targets == logits.argmax(1).tolist()
    np.testing.assert_allclose(r.prediction.probs, logits.softmax(1).topk(5).values.numpy(), atol=1e-5)


def test_grad_cam_agrees_on_plain_twin(resnet18):
    twin = make_twin(resnet18).eval()
    x = _inputs(1, 64, seed=2)
    r = grad_cam(twin, x, "layer4", target=3)
    np.testing.assert_allclose(r.maps, _independent_grad_cam(twin, x, "layer4", [3]), atol=1e-4)


def test_one_forward_and_no_backward_below_the_layer(tiny):
    calls = {"forward": 0, "backward_below": 0}
    handles = [
        tiny.register_forward_hook(lambda *_: calls.__setitem__("forward", calls["forward"] + 1)),
        tiny.layer3.register_full_backward_hook(
            lambda *_: calls.__setitem__("backward_below", calls["backward_below"] + 1)
        ),
    ]
    try:
        grad_cam(tiny, _inputs(2), "layer4")
    finally:
        for h in handles:
            h.remove()
    assert calls == {"forward": 1, "backward_below": 0}


def test_several_layers_in_one_pass_equal_separate_calls(tiny):
    x = _inputs(2)
    layers = ["layer1", "layer2.0", "layer3", "layer4"]
    together = grad_cam_layers(tiny, x, layers)
    for name in layers:
        np.testing.assert_allclose(together[name].maps, grad_cam(tiny, x, name).maps, atol=1e-6)


# --------------------------------------------------------------------------- batches


def test_batch_equals_single_images(tiny):
    x = _inputs(3, seed=3)
    batch = grad_cam(tiny, x, "layer3", target=[1, 2, 3])
    for i in range(3):
        single = grad_cam(tiny, x[i : i + 1], "layer3", target=[1, 2, 3][i])
        np.testing.assert_allclose(batch.maps[i], single.maps[0], atol=1e-5)
        np.testing.assert_allclose(batch.prediction.probs[i], single.prediction.probs[0], atol=1e-6)


@pytest.mark.parametrize("method", ["saliency", "guided_gradcam", "integrated_gradients"])
def test_captum_methods_batch_equals_single(tiny, method):
    x = _inputs(2, seed=4)
    batch = attribute(tiny, x, method, ig_steps=4)
    for i in range(2):
        single = attribute(tiny, x[i : i + 1], method, ig_steps=4)
        np.testing.assert_allclose(batch.maps[i], single.maps[0], atol=1e-4)


# --------------------------------------------------------------------------- every method, both kinds


@pytest.mark.parametrize("name", ["resnet_tiny", "plain_resnet_tiny", "resnet8", "plain8"])
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_runs_on_residual_and_plain(name, method):
    model = create_model(name, seed=0).eval()
    size = 32
    x = _inputs(2, size)
    r = attribute(model, x, method, ig_steps=4, occlusion_window=8, occlusion_stride=8)
    assert r.maps.shape == (2, size, size) and r.maps.dtype == np.float32
    assert np.isfinite(r.maps).all() and r.maps.min() >= 0.0 and r.maps.max() <= 1.0
    assert r.prediction.indices.shape == (2, 5)
    assert r.targets.tolist() == r.prediction.top1.tolist()
    assert (r.layer == default_layer(model)) == (method in LAYER_METHODS)
    assert hook_count(model) == 0 and not model.training


@pytest.mark.parametrize(
    ("side", "window", "stride"), [(32, None, None), (32, 8, 8), (30, 7, 4), (224, 32, 16)]
)
def test_occlusion_plan_counts_captums_forward_passes(side, window, stride):
    """The cost the page quotes is the number of positions captum's Occlusion evaluates."""
    from captum.attr import Occlusion

    calls = []
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model.register_forward_hook(lambda _m, _i, _o: calls.append(1))
    w, s, passes = occlusion_plan(side, window, stride)
    with torch.no_grad():
        Occlusion(model).attribute(
            torch.randn(1, 3, side, side), sliding_window_shapes=(3, w, w), strides=(3, s, s), target=0
        )
    assert len(calls) == passes + 1  # one unoccluded forward, then one per position
    with pytest.raises(AttributionError, match="occlusion window"):
        occlusion_plan(side, side + 1)


def test_integrated_gradients_options(tiny):
    x = _inputs(1)
    for kind in BASELINES:
        base = make_baseline(x, kind)
        assert base.shape == x.shape and torch.isfinite(base).all()
    r = attribute(
        tiny, x, "integrated_gradients", baseline="blur", noise_tunnel=True, nt_samples=2, ig_steps=3
    )
    assert r.maps.shape == (1, 32, 32)
    with pytest.raises(AttributionError, match="baseline"):
        attribute(tiny, x, "integrated_gradients", baseline="grey")


def test_black_baseline_uses_preprocessing():
    from resviz.preprocessing import IMAGENET

    base = make_baseline(torch.zeros(1, 3, 4, 4), "black", IMAGENET)
    np.testing.assert_allclose(
        base[0, :, 0, 0].numpy(), [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225], atol=1e-5
    )


# --------------------------------------------------------------------------- errors and targets


def test_targets_and_errors(tiny):
    x = _inputs(2)
    r = attribute(tiny, x, "saliency", target=[7, 9], class_name=[f"n{i}" for i in range(1000)])
    assert r.targets.tolist() == [7, 9] and r.target_labels == ("n7", "n9")
    with pytest.raises(AttributionError, match="does not exist"):
        grad_cam(tiny, x, target=1000)
    with pytest.raises(AttributionError, match="one per image"):
        grad_cam(tiny, x, target=[1, 2, 3])
    with pytest.raises(LayerNotFoundError, match="layer4"):
        grad_cam(tiny, x, "layer5")
    with pytest.raises(AttributionError, match="Unknown method"):
        attribute(tiny, x, "lime")
    with pytest.raises(AttributionError, match="3-channel"):
        grad_cam(tiny, torch.zeros(1, 1, 32, 32))
    plain = create_model("plain_resnet_tiny", seed=0).eval()
    with pytest.raises(LayerNotUsedError, match="not used by this model's forward pass"):
        grad_cam(plain, x, "layer2.0.shortcut_out")
    assert hook_count(plain) == 0
    assert all(isinstance(e, ResvizError) for e in (AttributionError("x"), LayerNotFoundError("y")))


def test_parse_target():
    names = ["tabby cat", "tiger cat", "goldfish"]
    assert parse_target(None, names, 3) is None and parse_target(" ", names, 3) is None
    assert parse_target("2", names, 3) == 2 and parse_target(1, names, 3) == 1
    assert parse_target("Tiger Cat", names, 3) == 1
    with pytest.raises(AttributionError, match="tabby cat"):
        parse_target("tabby", names, 3)
    with pytest.raises(AttributionError, match="0 to 2"):
        parse_target("3", names, 3)


def test_layer_not_used_is_one_error_with_one_sentence():
    from resviz.analysis import features

    plain = create_model("plain_resnet_tiny", seed=0).eval()
    layer = "layer2.0.shortcut_out"
    with pytest.raises(LayerNotUsedError) as from_cam:
        grad_cam(plain, _inputs(1), layer)
    with pytest.raises(LayerNotUsedError) as from_features:
        features.capture_activations(plain, _inputs(1), [layer])
    assert features.LayerNotUsedError is LayerNotUsedError
    assert str(from_cam.value) == str(from_features.value) == str(LayerNotUsedError.for_layer(layer))
    assert isinstance(from_cam.value, ResvizError)


def test_default_layer_is_the_last_stage_or_the_last_conv(tiny):
    assert default_layer(tiny) == tiny.feature_info[-1].name == "layer4"
    assert default_layer(create_model("resnet20")) == "layer3"
    assert default_layer(HandNet()) == "features"


def test_layer_choices(tiny):
    choices = layer_choices(tiny)
    assert choices[:4] == ["layer1", "layer2", "layer3", "layer4"]
    assert choices[4:6] == ["layer1.0", "layer2.0"]
    assert "layer4.0" in choices and "layer4.0.conv2" in choices
    assert "fc" not in choices and "" not in choices
    plain = create_model("plain_resnet_tiny", seed=0)
    assert not any(n.endswith("shortcut_out") for n in layer_choices(plain))
    x = _inputs(1)
    for model in (tiny, plain):  # every offered layer works, in one pass
        results = grad_cam_layers(model, x, layer_choices(model))
        assert all(r.maps.shape == (1, 32, 32) for r in results.values())


def test_npz_round_trip(tiny):
    import io

    r = grad_cam(tiny, _inputs(2))
    with np.load(io.BytesIO(r.to_npz())) as z:
        np.testing.assert_array_equal(z["maps"], r.maps)
        np.testing.assert_array_equal(z["targets"], r.targets)
        assert str(z["method"]) == "gradcam" and str(z["layer"]) == "layer4"


# --------------------------------------------------------------------------- shared-model safety


def test_no_state_change_and_no_param_grads():
    model = create_model("resnet_tiny", seed=0)
    model.train()  # a model left in train mode must stay so, with its BN statistics untouched
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    x = _inputs(2)
    for method in METHODS:
        attribute(model, x, method, ig_steps=3, occlusion_window=16)
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, stats[k]), k
    assert all(p.grad is None for p in model.parameters())
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("method", ["gradcam", "guided_gradcam"])
def test_two_threads_on_one_model(tiny, method):
    xs = [_inputs(1, seed=10), _inputs(1, seed=11)]
    expected = [attribute(tiny, x, method, layer="layer3").maps for x in xs]
    errors: list[str] = []
    barrier = threading.Barrier(2)

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(20):
            try:
                got = attribute(tiny, xs[i], method, layer="layer3").maps
            except Exception as exc:  # a race shows up as an error as often as a wrong map
                errors.append(f"thread {i}: {exc!r}")
                continue
            if not np.allclose(got, expected[i], atol=1e-5):
                errors.append(f"thread {i} got another thread's map")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert hook_count(tiny) == 0


@pytest.mark.parametrize(
    ("layer", "skip", "error", "words"),
    [
        ("fc", True, AttributionError, "spatial output"),
        ("layer2.0.shortcut_out", False, LayerNotUsedError, "not used by this model's forward pass"),
    ],
)
def test_guided_gradcam_checks_the_layer_first(layer, skip, error, words):
    model = create_model("resnet_tiny", seed=0, skip=skip).eval()
    with pytest.raises(error, match=words):
        attribute(model, _inputs(1), "guided_gradcam", layer=layer)
    assert hook_count(model) == 0


def test_cam_command_guided_gradcam_on_fc_is_one_sentence(tmp_path, capsys):
    from resviz.cli import main

    good = _write_png(tmp_path / "good.png")
    argv = ["cam", str(good), "--model", "resnet8", "--method", "guided_gradcam", "--layer", "fc"]
    rc = main([*argv, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "spatial output" in err and "Traceback" not in err


@pytest.mark.parametrize("method", list(METHODS))
def test_no_hooks_left_after_normal_and_failing_calls(method):
    model = create_model("resnet_tiny", seed=0).eval()
    x = _inputs(1)
    attribute(model, x, method, ig_steps=2, occlusion_window=16)
    assert hook_count(model) == 0

    def boom(_x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("fc exploded")

    model.fc.forward = boom  # fails mid-forward, after every hook is in place
    with pytest.raises(RuntimeError, match="fc exploded"):
        attribute(model, x, method, ig_steps=2, occlusion_window=16)
    assert hook_count(model) == 0
    assert torch.is_grad_enabled() and not model.training
    released = []
    t = threading.Thread(target=lambda: released.append(model_lock(model).acquire(timeout=5)))
    t.start()
    t.join()
    assert released == [True]


# --------------------------------------------------------------------------- plots


def test_overlay_blends_and_colormaps():
    from resviz.plots.attribution import COLORMAPS, colormap_lut, overlay

    img = np.full((4, 4, 3), 100, np.uint8)
    heat = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_array_equal(overlay(img, heat, opacity=0.0), img)
    lut = colormap_lut("Viridis")
    full = overlay(img, heat, opacity=1.0, colormap="Viridis")
    np.testing.assert_array_equal(full[0, 0], lut[0])
    np.testing.assert_array_equal(full[3, 3], lut[255])
    half = overlay(img, heat, opacity=0.5, colormap="Viridis")
    np.testing.assert_allclose(half[3, 3], (100 + lut[255].astype(float)) / 2, atol=1)
    for name in COLORMAPS:
        assert colormap_lut(name).shape == (256, 3)
    with pytest.raises(ValueError, match="colormap"):
        colormap_lut("NoSuchMap")


def test_figures():
    from resviz.plots.attribution import comparison_grid, overlay_figure, png_bytes, top_k_figure

    img = np.zeros((8, 8, 3), np.uint8)
    heat = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    fig = overlay_figure(img, heat, opacity=0.4, colormap="Jet", title="cat")
    assert fig.data[0].type == "image" and fig.data[0].source.startswith("data:image/png;base64,")
    bars = top_k_figure(["a", "b", "c"], [0.6, 0.3, 0.1], target="b")
    assert list(bars.data[0].y) == ["c", "b", "a"] and bars.data[0].marker.color[1] == "#d62728"
    grid = comparison_grid(
        img,
        {("layer3", "Grad-CAM"): heat, ("layer4", "Saliency"): heat},
        ["layer3", "layer4"],
        ["Grad-CAM", "Saliency"],
    )
    assert [t.type for t in grid.data] == ["image", "image", "scatter"]  # + the colour scale
    assert png_bytes(img).startswith(b"\x89PNG")


# --------------------------------------------------------------------------- the cam command


def _write_png(path, size=(40, 36), seed=0):
    from PIL import Image

    rgb = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def test_cam_command_writes_overlay_and_raw_map(tmp_path, capsys):
    from PIL import Image

    from resviz.cli import main

    a = _write_png(tmp_path / "a.png")
    sub = tmp_path / "sub"
    sub.mkdir()
    b = _write_png(sub / "a.png", seed=1)  # same name, another folder: both kept
    out = tmp_path / "out"
    rc = main(
        ["cam", str(a), str(b), "--model", "resnet8", "--layer", "layer2", "--target", "3", "--out", str(out)]
    )
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "a_2_gradcam.npz",
        "a_2_gradcam.png",
        "a_gradcam.npz",
        "a_gradcam.png",
    ]
    with Image.open(out / "a_gradcam.png") as im:
        assert im.size == (32, 32) and im.mode == "RGB"  # CIFAR preprocessing: the network's view
    with np.load(out / "a_gradcam.npz") as z:
        assert z["map"].shape == (32, 32) and int(z["target"]) == 3 and str(z["layer"]) == "layer2"
    assert "explains 'class 3'" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{bad}"], "not an image"),
        (["{missing}"], "No image file"),
        (["{good}", "--target", "10"], "does not exist"),
        (["{good}", "--layer", "layer9"], "no layer named"),
        (["{good}", "--method", "lime"], "Unknown method 'lime'; choose one of gradcam, gradcampp"),
        (["{good}", "--colormap", "Nope"], "Unknown colormap"),
    ],
)
def test_cam_command_errors_are_one_sentence_exit_2(tmp_path, capsys, args, message):
    from resviz.cli import main

    paths = {"bad": tmp_path / "bad.png", "missing": tmp_path / "nope.png", "good": tmp_path / "good.png"}
    paths["bad"].write_text("not an image at all")
    _write_png(paths["good"])
    argv = ["cam", *(a.format(**{k: str(v) for k, v in paths.items()}) for a in args)]
    rc = main([*argv, "--model", "resnet8", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_cam_command_explains_the_good_files_and_reports_the_bad_ones(tmp_path, capsys):
    from resviz.cli import main

    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    _write_png(good)
    bad.write_text("not an image at all")
    out = tmp_path / "out"
    rc = main(["cam", str(good), str(bad), "--model", "resnet8", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 2  # a bad file is still an error for scripts...
    assert "bad.png is not an image" in captured.err and captured.err.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == ["good_gradcam.npz", "good_gradcam.png"]  # ...not a loss


def test_cam_command_output_write_errors_are_one_sentence(tmp_path, capsys):
    from resviz.cli import main

    good = _write_png(tmp_path / "good.png")
    out = tmp_path / "out"
    (out / "good_gradcam.png").mkdir(parents=True)  # a folder where the overlay should go
    rc = main(["cam", str(good), "--model", "resnet8", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "Cannot write" in err and "good_gradcam.png" in err
    assert "Traceback" not in err and err.count("\n") == 1
