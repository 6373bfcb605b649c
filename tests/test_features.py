"""Feature capture, depth statistics, their figures and ``python -m resviz features``."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from resviz.analysis.features import (
    CaptureTooLargeError,
    LayerNotUsedError,
    capture_activations,
    capture_names,
    channel_range,
    depth_statistics,
    estimate_bytes,
    layer_options,
    top_channels,
    twin_statistics,
)
from resviz.cli import main as cli
from resviz.errors import LayerNotFoundError, ResvizError
from resviz.hooks import hook_count
from resviz.models import create_model
from resviz.plots.features import (
    block_figure,
    depth_figure,
    grid_figure,
    mosaic_figure,
    mosaic_png,
    tile_maps,
)


def _blocks(model) -> list[str]:
    return [name for name, _ in model.named_blocks()]


@pytest.fixture(scope="module")
def tiny():
    return create_model("resnet_tiny", seed=0).eval()


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))


def test_block_signals_add_up(tiny, x):
    acts = capture_activations(tiny, x, ["conv1"], blocks=_blocks(tiny))
    for name in _blocks(tiny):
        b = acts.block(name)
        assert b.branch.shape == b.output.shape and b.branch.dtype == np.float32
        np.testing.assert_allclose(np.maximum(b.branch + b.shortcut, 0), b.output, atol=1e-5)
    assert acts.maps["conv1"].shape == (2, 8, 24, 24)
    assert not acts.maps["conv1"].flags.writeable  # shared between sessions through the cache


def test_plain_block_has_no_shortcut(x):
    plain = create_model("resnet_tiny", seed=0, skip=False).eval()
    b = capture_activations(plain, x, blocks=["layer2.0"]).block("layer2.0")
    assert b.shortcut is None
    np.testing.assert_allclose(np.maximum(b.branch, 0), b.output, atol=1e-6)


def test_a_module_that_never_runs_is_a_sentence_not_a_missing_key(x):
    plain = create_model("resnet_tiny", seed=0, skip=False).eval()
    with pytest.raises(LayerNotUsedError, match="not used by this model's forward pass"):
        capture_activations(plain, x, ["layer2.0.shortcut_out"])
    assert hook_count(plain) == 0


def test_capture_matches_a_plain_forward(tiny, x):
    acts = capture_activations(tiny, x, ["layer4", "fc"])
    with torch.no_grad():
        feats = tiny.forward_features(x)
        logits = tiny(x)
    np.testing.assert_allclose(acts.maps["layer4"], feats.numpy(), atol=1e-6)
    np.testing.assert_allclose(acts.maps["fc"], logits.numpy(), atol=1e-6)


def test_memory_estimate_is_exact_and_checked_first(tiny, x):
    names = capture_names(["conv1"], _blocks(tiny))
    acts = capture_activations(tiny, x, ["conv1"], blocks=_blocks(tiny))
    assert estimate_bytes(tiny, names, tuple(x.shape)) == acts.nbytes
    with pytest.raises(CaptureTooLargeError, match="MB"):
        capture_activations(tiny, x, ["conv1"], max_bytes=1000)
    assert hook_count(tiny) == 0


def test_estimate_for_the_largest_models_costs_no_memory():
    from resviz.models import get_config

    for name, shape in (("resnet152", (1, 3, 224, 224)), ("resnet1202", (1, 3, 32, 32))):
        with torch.device("meta"):
            model = create_model(get_config(name))
        need = estimate_bytes(model, capture_names(blocks=_blocks(model)), shape)
        assert 10 * 2**20 < need < 512 * 2**20, (name, need)  # under the default limit, known in advance


def test_hooks_are_removed_after_normal_and_failing_calls(tiny, x):
    capture_activations(tiny, x, ["layer1"], blocks=["layer2.0"])
    depth_statistics(tiny, x)
    assert hook_count(tiny) == 0
    bad = torch.randn(1, 5, 32, 32)  # wrong channel count: the forward raises inside the hooks
    with pytest.raises(RuntimeError):
        capture_activations(tiny, bad, ["layer1"], blocks=["layer2.0"])
    with pytest.raises(RuntimeError):
        depth_statistics(tiny, bad)
    with pytest.raises(LayerNotFoundError, match=r"layer2\.0\.conv1"):
        capture_activations(tiny, x, ["layer2.0.conv"])
    assert hook_count(tiny) == 0


def test_model_modes_and_bn_statistics_are_untouched(x):
    model = create_model("resnet_tiny", seed=0)
    model.train()
    model.layer2.eval()  # a mixed state must come back exactly
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    capture_activations(model, x, ["layer1"], blocks=["layer3.0"])
    twin_statistics(model, x)
    assert [m.training for m in model.modules()] == modes
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_two_threads_on_one_shared_model_get_their_own_results(tiny):
    inputs = [torch.randn(1, 3, 40, 40, generator=torch.Generator().manual_seed(s)) for s in range(2)]
    blocks = _blocks(tiny)
    expected = [capture_activations(tiny, xi, blocks=blocks) for xi in inputs]
    expected_stats = [depth_statistics(tiny, xi).mean for xi in inputs]
    failures: list[str] = []
    barrier = threading.Barrier(2)

    def worker(i: int) -> None:
        barrier.wait()
        for _ in range(10):
            got = capture_activations(tiny, inputs[i], blocks=blocks)
            for name, arr in expected[i].maps.items():
                if not np.array_equal(got.maps[name], arr):
                    failures.append(f"thread {i}: {name}")
            if not np.array_equal(depth_statistics(tiny, inputs[i]).mean, expected_stats[i]):
                failures.append(f"thread {i}: stats")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:5]
    assert hook_count(tiny) == 0


def test_depth_statistics_by_hand(x):
    # zero_init_residual: every branch ends in a BN with gamma 0 (beta 0), so F(x) = 0 exactly.
    model = create_model("resnet_tiny", seed=0, zero_init_residual=True).eval()
    stats = depth_statistics(model, x)
    assert stats.blocks == tuple(_blocks(model))
    np.testing.assert_array_equal(stats.branch_ratio, 0.0)
    acts = capture_activations(model, x, blocks=_blocks(model))
    for i, name in enumerate(stats.blocks):
        out = acts.block(name).output
        assert stats.mean[i] == pytest.approx(out.mean(), rel=1e-5)
        assert stats.std[i] == pytest.approx(out.std(ddof=1), rel=1e-4)
        assert stats.zero_fraction[i] == pytest.approx((out <= 0).mean())
        dead = (out <= 0).all(axis=(0, 2, 3)).mean()
        assert stats.dead_channels[i] == pytest.approx(dead)


def test_twin_statistics_residual_and_plain(tiny, x):
    residual, plain = twin_statistics(tiny, x)
    assert not residual.plain and plain.plain
    assert residual.blocks == plain.blocks
    # The first block sees the same input and has the same weights: same branch, so same ratio.
    assert residual.branch_ratio[0] == pytest.approx(plain.branch_ratio[0], rel=1e-5)
    assert not np.allclose(residual.mean, plain.mean)


def test_layer_options_follow_feature_info():
    model = create_model("resnet20")  # three stages of three blocks
    opts = layer_options(model)
    assert opts.names[:6] == ("conv1", "layer1", "layer1.0", "layer1.1", "layer1.2", "layer2")
    assert len(opts.names) == 1 + 3 + 9 and opts.stages == ("layer1", "layer2", "layer3")
    assert opts.blocks == tuple(_blocks(model)) and opts.default == "layer1.0"
    assert opts.layers == ("conv1", "layer1", "layer2", "layer3")
    assert opts.block_of["layer2"] == "layer2.2" and opts.block_of["layer2.1"] == "layer2.1"
    assert "conv1" not in opts.block_of
    assert [opts.label(n) for n in ("conv1", "layer3", "layer3.0")] == [
        "conv1 (stem)",
        "layer3 (stage output)",
        "layer3.0 (residual block)",
    ]


def test_a_stage_output_is_its_last_blocks_output(tiny, x):
    opts = layer_options(tiny)
    acts = capture_activations(tiny, x, opts.layers, blocks=opts.blocks)
    for stage in opts.stages:
        np.testing.assert_array_equal(acts.maps[stage], acts.block(opts.block_of[stage]).output)


def test_npz_round_trip(tiny, x):
    acts = capture_activations(tiny, x, ["layer2"], blocks=["layer2.0"])
    view = np.zeros((48, 48, 3), np.float32)
    data = np.load(io.BytesIO(acts.to_npz("layer2", [3, 1], image=1, block="layer2.0", input_view=view)))
    assert list(data) == ["maps", "channels", "input_view", "branch", "output", "shortcut"]
    np.testing.assert_array_equal(data["maps"], acts.maps["layer2"][1][[3, 1]])
    np.testing.assert_array_equal(data["channels"], [3, 1])
    np.testing.assert_array_equal(data["input_view"], view)
    bm = acts.block("layer2.0")
    for key in ("branch", "output", "shortcut"):
        np.testing.assert_array_equal(data[key], getattr(bm, key)[1][[3, 1]])
    plain = create_model("resnet_tiny", seed=0, skip=False).eval()
    plain_acts = capture_activations(plain, x, blocks=["layer2.0"])
    assert "shortcut" not in np.load(io.BytesIO(plain_acts.to_npz("layer2.0", [0], block="layer2.0")))
    assert list(np.load(io.BytesIO(acts.to_npz("layer2", [0])))) == ["maps", "channels"]
    with pytest.raises(ResvizError, match="not captured"):
        acts.to_npz("layer3", [0])


def test_channel_choice():
    maps = np.zeros((6, 4, 4), np.float32)
    maps[[4, 1, 5]] += np.array([3.0, 2.0, 1.0])[:, None, None]
    assert top_channels(maps, 3).tolist() == [4, 1, 5]
    assert top_channels(maps, 100).shape == (6,)
    assert channel_range(6, 2, 4).tolist() == [2, 3]
    assert channel_range(6, 9, 20).tolist() == [5]


# --------------------------------------------------------------------------- figures


def test_mosaic_tiles_and_shared_scale():
    maps = np.stack([np.full((3, 4), v, np.float32) for v in (0.0, 1.0, 2.0)])
    m = tile_maps(maps, ["7", "8", "9"], cols=2, pad=1)
    assert m.z.dtype == np.uint8 and m.z.shape == (2 * 4 - 1, 2 * 5 - 1)
    assert m.z[0, 0] == 0 and m.z[0, 5] == 127 and m.z[4, 0] == 254  # one scale over all tiles
    assert m.z[3, 0] == 255 and m.z[4, 5] == 255  # padding row, empty fourth tile
    assert m.labels == ("7", "8", "9", "")


def test_grid_figure_is_one_heatmap_with_channel_hover():
    maps = np.random.default_rng(0).random((64, 56, 56), dtype=np.float32)
    fig = grid_figure(maps, range(10, 42))
    heat, tiles, labels = fig.data
    assert heat.type == "heatmap" and heat.z.dtype == np.uint8
    assert tiles.text[0] == "channel 10" and "%{text}" in tiles.hovertemplate
    # Clickable: plotly selects scatter points on click, never heatmap cells. One invisible
    # marker per tile centre, in the order of the channels, so a point index is a channel.
    assert tiles.type == "scatter" and tiles.mode == "markers" and tiles.marker.opacity == 0
    assert len(tiles.x) == 32 and tiles.text[31] == "channel 41"
    h = 56 + 1  # tile plus padding
    assert (tiles.x[0], tiles.y[0]) == (27.5, 27.5) and tiles.x[1] == 27.5 + h
    assert list(labels.text) == [str(c) for c in range(10, 42)]
    assert len(fig.to_json()) < 400_000  # one mosaic, not 32 subplots


def test_block_figure_marks_a_missing_shortcut():
    a = np.random.default_rng(1).standard_normal((4, 5, 5)).astype(np.float32)
    fig = block_figure(a, None, np.maximum(a, 0), [0, 2])
    titles = [ann.text for ann in fig.layout.annotations]
    assert titles == ["F(x) (branch)", "no shortcut (plain block)", "output"]
    z = fig.data[0].z
    assert (z[:5, 6:11] == 255).all()  # the shortcut column is blank...
    missing = next(t for t in fig.data if t.name == "missing")
    assert len(missing.text) == 2 and "no shortcut" in missing.text[0]  # ...and says why, on each row
    assert missing.x[0] == 6 + 2 and list(missing.y) == [2, 8]  # the middle tile's centre, rows 0 and 1
    # One label point per drawn tile (F(x) and output): the channel goes on each row's first.
    labels = next(t for t in fig.data if t.name == "labels")
    assert list(labels.text) == ["ch 0", "", "ch 2", ""]


def test_block_figure_column_titles_sit_above_the_plot_where_plotly_draws_them():
    a = np.random.default_rng(1).standard_normal((4, 5, 5)).astype(np.float32)
    fig = block_figure(a, a, a + a, [1])
    titles = fig.layout.annotations
    assert [t.text for t in titles] == ["F(x) (branch)", "shortcut x", "output"]
    # plotly skips an annotation whose data y lies outside the axis range (the bug: y = -1 was):
    # paper y = 1 is the top edge of the plot area, whatever the range.
    assert all(t.yref == "paper" and t.y == 1 and t.yanchor == "bottom" for t in titles)
    assert [t.x for t in titles] == [2, 8, 14]  # the centre of each 5-pixel column (pad 1)
    assert fig.layout.margin.t >= 30


def test_tile_labels_are_black_on_light_tiles_and_white_on_dark_ones():
    # RdBu_r centred on zero: -1 is dark blue, 0 white, +1 dark red (plotly's own colorscale).
    maps = np.stack([np.full((6, 6), v, np.float32) for v in (-1.0, 0.0, 1.0, 0.05)])
    fig = mosaic_figure(tile_maps(maps, cols=4, symmetric=True), colorscale="RdBu_r")
    labels = next(t for t in fig.data if t.name == "labels")
    assert list(labels.textfont.color) == ["white", "black", "white", "black"]
    # Viridis: its low end is dark purple, its top yellow.
    fig = mosaic_figure(tile_maps(np.stack([maps[0], maps[2]])), colorscale="Viridis")
    labels = next(t for t in fig.data if t.name == "labels")
    assert list(labels.textfont.color) == ["white", "black"]


def test_depth_figure_overlays_residual_and_plain(tiny, x):
    fig = depth_figure(*twin_statistics(tiny, x))
    assert len(fig.data) == 8
    assert {t.name for t in fig.data} == {"with shortcuts", "shortcuts cut (same weights)"}


def test_mosaic_png_decodes():
    m = tile_maps(np.random.default_rng(2).random((5, 8, 8), dtype=np.float32))
    im = Image.open(io.BytesIO(mosaic_png(m)))
    assert im.format == "PNG" and im.mode == "RGB" and im.width >= 3 * 64


# --------------------------------------------------------------------------- command line


def _image_file(tmp_path, name="cat.png"):
    path = tmp_path / name
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)
    return path


def test_cli_writes_grid_and_npz(tmp_path, capsys):
    img = _image_file(tmp_path)
    out, npz = tmp_path / "grid.png", tmp_path / "acts.npz"
    args = [str(img), "--model", "resnet8", "--layer", "layer2.0", "--top-k", "5", "--out", str(out)]
    assert cli(["features", *args, "--npz", str(npz)]) == 0
    assert Image.open(out).format == "PNG"
    with np.load(npz) as data:
        assert data["layer2.0"].shape == (32, 16, 16)
        assert len(data["channels"]) == 5
        assert "layer2.0.branch_out" in data.files
    assert "32 channels" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--model", "resnet8", "--layer", "layer9"], "no layer named"),
        (["--model", "resnet9999x"], "Unknown model"),
        (["--model", "resnet8", "--layer", "fc"], "not channel maps"),
        (["--model", "resnet8", "--top-k", "0"], "--top-k"),
        (["--model", "plain8", "--layer", "layer2.0.shortcut_out"], "not used by this model"),
    ],
)
def test_cli_errors_are_one_sentence_exit_2(tmp_path, capsys, args, words):
    img = _image_file(tmp_path)
    assert cli(["features", str(img), "--out", str(tmp_path / "g.png"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and words in err and "\n" not in err


def test_cli_output_errors_are_one_sentence_exit_2(tmp_path, capsys):
    img = _image_file(tmp_path)
    assert cli(["features", str(img), "--model", "resnet8", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "is a folder" in err and "\n" not in err
    blocker = tmp_path / "file"
    blocker.write_text("")
    args = ["features", str(img), "--model", "resnet8", "--out", str(tmp_path / "g.png")]
    assert cli([*args, "--npz", str(blocker / "acts.npz")]) == 2  # its folder is a file
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Cannot write") and "\n" not in err


def test_cli_npz_is_written_under_exactly_the_name_given(tmp_path):
    img = _image_file(tmp_path)
    npz = tmp_path / "acts.bin"
    args = [str(img), "--model", "resnet8", "--out", str(tmp_path / "g.png"), "--npz", str(npz)]
    assert cli(["features", *args]) == 0
    assert npz.is_file() and not (tmp_path / "acts.bin.npz").exists()
    with np.load(npz) as data:
        assert "layer1.0" in data.files


def test_cli_refuses_bad_images(tmp_path, capsys):
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"not a jpeg")
    assert cli(["features", str(bad), "--model", "resnet8", "--out", str(tmp_path / "g.png")]) == 2
    assert "not an image" in capsys.readouterr().err
    assert not (tmp_path / "g.png").exists()
