"""Faithfulness metrics: deletion/insertion against a linear model's known contributions, the pointing
game by construction, ROAD against pytorch-grad-cam's, the evaluation's hygiene, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from resviz.analysis.deletion import perturbation_curves, pixel_ranks
from resviz.analysis.faithfulness import (
    METRICS,
    REFERENCE,
    FaithfulnessError,
    evaluate,
    forward_passes,
    pointing_hits,
)
from resviz.analysis.faithfulness_report import RELATIVE
from resviz.analysis.road import ALL_PERCENTILES, impute, road
from resviz.cli import main
from resviz.hooks import hook_count
from resviz.models import create_model, make_twin

torch.set_num_threads(1)


def _linear_net(c: int = 3, size: int = 8, seed: int = 0) -> nn.Module:
    """Logit 0 = <W, x>, logit 1 = 0: each pixel adds exactly ``sum_c W[c] x[c]`` to the target's logit."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(c * size * size, 2))
    with torch.no_grad():
        net[1].weight.copy_(
            torch.cat([torch.randn(1, c * size * size, generator=g), torch.zeros(1, c * size * size)])
        )
        net[1].bias.zero_()
    return net.eval()


def _state(model: nn.Module) -> tuple[dict[str, torch.Tensor], list[bool]]:
    return {k: v.clone() for k, v in model.state_dict().items()}, [m.training for m in model.modules()]


def _assert_unchanged(model: nn.Module, before: tuple[dict[str, torch.Tensor], list[bool]]) -> None:
    state, modes = before
    assert hook_count(model) == 0
    assert [m.training for m in model.modules()] == modes
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


# --------------------------------------------------------------------------- deletion / insertion


def test_deletion_auc_of_the_exact_contributions_is_lowest():
    # Deleting a pixel (setting it to zero) removes exactly its contribution W*x from the target's
    # logit, so deleting the largest contributions first gives the lowest logit, hence probability,
    # at every step: no other order can have a smaller area.
    net = _linear_net()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, 8, 8, generator=g) + 0.5
    w = net[1].weight[0].detach().view(3, 8, 8)
    contribution = (w * x).sum(1).numpy()  # (N, H, W)
    rng = np.random.default_rng(0)
    targets = [0] * len(x)

    def auc(maps: np.ndarray) -> np.ndarray:
        dele, _ = perturbation_curves(net, x, maps, targets, steps=16)
        return dele.auc

    exact, inverted = auc(contribution), auc(-contribution)
    randoms = np.stack([auc(rng.random(contribution.shape).astype(np.float32)) for _ in range(3)])
    assert np.all(exact < inverted)
    assert np.all(exact[None] < randoms)
    assert np.all(exact.mean() < randoms.mean(1))


def test_insertion_auc_of_the_exact_contributions_is_highest():
    net = _linear_net(seed=2)
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    from resviz.analysis.deletion import blurred

    w = net[1].weight[0].detach().view(3, 8, 8)
    contribution = (w * (x - blurred(x))).sum(1).numpy()  # what each pixel adds over the blurred canvas
    _, exact = perturbation_curves(net, x, contribution, [0] * 4, steps=16)
    _, inverted = perturbation_curves(net, x, -contribution, [0] * 4, steps=16)
    assert np.all(exact.auc > inverted.auc)
    # The ends of the curve are the blurred canvas and the image itself, whatever the map.
    p_full = torch.softmax(net(x), 1)[:, 0].detach().numpy()
    np.testing.assert_allclose(exact.probs[:, -1], p_full, rtol=1e-5)


def _sigmoid(z: list[float]) -> np.ndarray:
    return 1 / (1 + np.exp(-np.asarray(z, dtype=np.float64)))


def test_deletion_and_insertion_auc_worked_out_by_hand_on_four_pixels():
    # One channel, 2x2 pixels; logit 0 = <w, x>, logit 1 = 0, so p(target) = sigmoid(<w, x>).
    x = torch.tensor([[[[2.0, -1.0], [1.0, -0.5]]]])
    w = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).eval()
    with torch.no_grad():
        net[1].weight.copy_(torch.stack([w.flatten(), torch.zeros(4)]))
        net[1].bias.zero_()
    maps = np.array([[[0.9, 0.1], [0.5, 0.3]]], dtype=np.float32)  # order: (0,0) (1,0) (1,1) (0,1)
    dele, ins = perturbation_curves(net, x, maps, [0], steps=4)
    np.testing.assert_allclose(dele.fractions, [0, 0.25, 0.5, 0.75, 1])

    # Deletion sets a pixel to 0 (the mean colour of normalized input), removing w*x of the logit:
    # contributions (0,0) 2, (0,1) -2, (1,0) -1, (1,1) -0.25; all four give -1.25.
    p_del = _sigmoid([-1.25, -1.25 - 2, -1.25 - 2 + 1, -1.25 - 2 + 1 + 0.25, 0.0])
    np.testing.assert_allclose(dele.probs[0], p_del, rtol=1e-5)
    # The area over the fraction deleted, [0, 1], by the trapezoid rule (steps of a quarter).
    auc_del = 0.25 * (p_del[0] / 2 + p_del[1:4].sum() + p_del[4] / 2)
    np.testing.assert_allclose(dele.auc, [auc_del], rtol=1e-5)
    assert 0 < dele.auc[0] < 1

    # Insertion starts from the blur: a 3x3 Gaussian of sigma 1 with reflected borders, which on two
    # pixels is (b * self + 2a * other) along each axis, with (a, b, a) the normalized kernel.
    g = np.exp(-0.5 * np.array([1.0, 0.0, 1.0]))
    a, b = g[0] / g.sum(), g[1] / g.sum()
    m = np.array([[b, 2 * a], [2 * a, b]])
    canvas = m @ x[0, 0].double().numpy() @ m.T
    wx, wc = w.double().numpy() * x[0, 0].double().numpy(), w.double().numpy() * canvas
    logits = [wc.sum()]
    for r, c in [(0, 0), (1, 0), (1, 1), (0, 1)]:
        logits.append(logits[-1] + wx[r, c] - wc[r, c])  # the original pixel back in place of the blur
    p_ins = _sigmoid(logits)
    np.testing.assert_allclose(ins.probs[0], p_ins, rtol=1e-5)
    auc_ins = 0.25 * (p_ins[0] / 2 + p_ins[1:4].sum() + p_ins[4] / 2)
    np.testing.assert_allclose(ins.auc, [auc_ins], rtol=1e-5)


def test_pixel_ranks_order_most_relevant_first_and_break_ties_row_major():
    maps = np.array([[[0.1, 0.9], [0.5, 0.9]]], dtype=np.float32)
    np.testing.assert_array_equal(pixel_ranks(maps), [[3, 0, 2, 1]])


# --------------------------------------------------------------------------- pointing game


def test_pointing_game_of_a_map_that_peaks_inside_the_mask_is_one():
    masks = np.zeros((3, 8, 8), dtype=bool)
    masks[:, 2:5, 3:6] = True
    maps = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32) * 0.5
    maps[0, 3, 4], maps[1, 2, 3], maps[2, 4, 5] = 1.0, 0.9, 0.8  # peaks inside, at the centre and corners
    assert pointing_hits(maps, masks).mean() == 1.0
    maps[:, 7, 7] = 2.0  # now the peak is outside
    assert pointing_hits(maps, masks).mean() == 0.0
    assert not pointing_hits(np.zeros((1, 8, 8), np.float32), masks[:1]).any()  # no evidence: a miss


def test_pointing_game_ties_go_to_the_first_maximum_in_row_major_order():
    # Two equal peaks at (0, 1) and (1, 0): row-major order meets (0, 1) first, column-major (1, 0).
    maps = np.zeros((2, 3, 3), dtype=np.float32)
    maps[:, 0, 1] = maps[:, 1, 0] = 1.0
    masks = np.zeros((2, 3, 3), dtype=bool)
    masks[0, 0, 1] = True  # the first peak is inside: a hit
    masks[1, 1, 0] = True  # only the second peak is inside: a miss
    np.testing.assert_array_equal(pointing_hits(maps, masks), [True, False])
    # The same with a plateau of four equal maxima: the top-left one of them decides.
    plateau = np.zeros((1, 4, 4), dtype=np.float32)
    plateau[0, 1:3, 1:3] = 0.5
    inside = np.zeros((1, 4, 4), dtype=bool)
    inside[0, 1, 1] = True
    assert pointing_hits(plateau, inside).all() and not pointing_hits(plateau, ~inside).any()


# --------------------------------------------------------------------------- ROAD against pytorch-grad-cam


@pytest.fixture(scope="module")
def gradcam_road():
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.metrics import road as ref

    return ref


def test_imputation_equals_pytorch_grad_cams(gradcam_road):
    rng = np.random.default_rng(0)
    img = rng.standard_normal((3, 9, 7)).astype(np.float32)
    for share in (0.1, 0.5, 0.9):
        keep = rng.random((9, 7)) > share  # removed pixels on the border and in the corners too
        expected = gradcam_road.NoisyLinearImputer(noise=0.0)(
            torch.from_numpy(img), torch.from_numpy(keep.astype(np.float32))
        )
        got = impute(img[None], keep[None], noise=0.0)[0]
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)


def test_road_equals_pytorch_grad_cams(gradcam_road, monkeypatch):
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model = create_model("resnet8", seed=0).eval()
    x = torch.randn(3, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    cams = np.random.default_rng(1).random((3, 12, 12)).astype(np.float32)
    targets = [1, 4, 7]
    scored = [ClassifierOutputSoftmaxTarget(t) for t in targets]

    def reference(remove, p):
        metric = PerturbationConfidenceMetric(remove(p, gradcam_road.NoisyLinearImputer(noise=0.0)))
        with torch.no_grad():
            return metric(x, cams, scored, model)

    mine = road(model, x, cams, targets, percentiles=ALL_PERCENTILES, noise=0.0)
    for k, p in enumerate(ALL_PERCENTILES):
        np.testing.assert_allclose(mine.morf[:, k], reference(RemoveMostRelevantFirst, p), atol=1e-5)
        np.testing.assert_allclose(mine.lerf[:, k], reference(RemoveLeastRelevantFirst, p), atol=1e-5)

    # ROADCombined builds its own imputers (noise 0.01): take the noise out to compare exactly.
    class Noiseless(gradcam_road.NoisyLinearImputer):
        def __init__(self) -> None:
            super().__init__(noise=0.0)

    monkeypatch.setattr(gradcam_road, "NoisyLinearImputer", Noiseless)
    combined = gradcam_road.ROADCombined(percentiles=list(ALL_PERCENTILES))(x, cams, scored, model)
    np.testing.assert_allclose(mine.combined, combined, atol=1e-5)


def test_road_equals_pytorch_grad_cams_on_a_map_with_ties(gradcam_road):
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    # Ten levels, ten pixels each, scattered: every pixel ties with nine others, and every threshold
    # of 10, 20, ... 90 % falls between two levels, where the reference's rule is well defined.
    rng = np.random.default_rng(2)
    cams = np.stack([rng.permutation(np.repeat(np.arange(10) / 9, 10)).reshape(10, 10) for _ in range(3)])
    cams = cams.astype(np.float32)
    model = create_model("resnet8", seed=0).eval()
    x = torch.randn(3, 3, 10, 10, generator=torch.Generator().manual_seed(4))
    targets = [2, 5, 8]
    scored = [ClassifierOutputSoftmaxTarget(t) for t in targets]
    mine = road(model, x, cams, targets, percentiles=ALL_PERCENTILES, noise=0.0)
    for k, p in enumerate(ALL_PERCENTILES):
        for remove, got in ((RemoveMostRelevantFirst, mine.morf), (RemoveLeastRelevantFirst, mine.lerf)):
            metric = PerturbationConfidenceMetric(remove(p, gradcam_road.NoisyLinearImputer(noise=0.0)))
            with torch.no_grad():
                np.testing.assert_allclose(got[:, k], metric(x, cams, scored, model), atol=1e-5)


def test_road_on_ties_across_the_threshold_keeps_the_reference_s_pixels_and_the_asked_share():
    # A 4x4 CAM upsampled to 12x12 (nearest): every value nine times, so most thresholds cut through
    # a tie. The reference then keeps only the pixels strictly below the tied value (too few; none
    # at all on a map that is mostly zero); keep_masks keeps those plus part of the tie, the share asked.
    from pytorch_grad_cam.metrics.perturbation_confidence import RemoveMostRelevantFirst

    from resviz.analysis.road import keep_masks

    cam = np.random.default_rng(5).permutation(16).reshape(4, 4).astype(np.float32) / 15
    cam = np.kron(cam, np.ones((3, 3), dtype=np.float32))[None]
    seen, cut = [], 0

    def spy(_img, mask):
        seen.append(mask.numpy().astype(bool))

    for p in ALL_PERCENTILES:
        RemoveMostRelevantFirst(p, spy)(torch.zeros(3, 12, 12), torch.from_numpy(cam[0]))
        theirs, (mine,) = seen[-1], keep_masks(cam, p, most_relevant_first=True)
        threshold = np.percentile(cam[0], p)
        assert mine.sum() == int(np.ceil(p * 143 / 100)), p
        assert (mine | ~theirs).all(), p  # every pixel the reference keeps is kept
        assert np.all(cam[0][mine & ~theirs] == cam[0][cam[0] >= threshold].min()), p  # the rest: the tie
        cut += int((mine & ~theirs).any())
    assert cut >= 5  # most thresholds did cut through a tie


def test_road_noise_is_seeded_and_of_the_asked_size():
    rng = np.random.default_rng(0)
    img = rng.standard_normal((2, 3, 10, 10)).astype(np.float32)
    keep = rng.random((2, 10, 10)) > 0.5
    a, b = impute(img, keep, noise=0.05, seed=3), impute(img, keep, noise=0.05, seed=3)
    np.testing.assert_array_equal(a, b)
    diff = (a - impute(img, keep, noise=0.0)).transpose(1, 0, 2, 3)[:, ~keep]
    assert 0.04 < diff.std() < 0.06
    np.testing.assert_array_equal(a.transpose(1, 0, 2, 3)[:, keep], img.transpose(1, 0, 2, 3)[:, keep])


# --------------------------------------------------------------------------- the evaluation


@pytest.fixture(scope="module")
def pair() -> list[tuple[str, nn.Module]]:
    model = create_model("resnet8", seed=0).eval()
    return [("resnet8", model), ("plain8", make_twin(model).eval())]


def _images(n: int = 4, size: int = 12) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_evaluate_scores_every_method_and_leaves_the_models_as_they_were(pair):
    x = _images()
    masks = np.zeros((4, 12, 12), dtype=bool)
    masks[:, 3:9, 3:9] = True
    pair[1][1].layer1.train()  # a module in train mode must stay so
    before = [_state(m) for _, m in pair]
    seen = []
    report = evaluate(
        pair,
        x,
        targets=[0, 1, 2, 3],
        masks=masks,
        methods=["gradcam", "saliency", REFERENCE],
        steps=4,
        percentiles=(30, 70),
        progress=lambda d, n, s: seen.append((d, n)),
    )
    for (_, m), b in zip(pair, before):
        _assert_unchanged(m, b)
    pair[1][1].layer1.eval()
    assert seen[-1] == (6, 6) and report.complete
    assert report.scores.shape == (2, 3, len(METRICS), 4)
    assert report.table().shape == (2, 3, len(METRICS)) and not np.isnan(report.table()).any()
    assert report.deletion.shape == report.insertion.shape == (2, 3, 4, 5)
    np.testing.assert_array_equal(report.targets, [[0, 1, 2, 3]] * 2)
    # Every curve starts (deletion) and ends (insertion) at the unperturbed image's probability.
    np.testing.assert_allclose(report.deletion[..., 0], report.insertion[..., -1], atol=1e-5)
    rows = report.rows()
    intervals = {f"{k}_{part}" for k in METRICS for part in ("ci95", "n")}
    assert len(rows) == 6 and set(rows[0]) == {"net", "method", *METRICS, *intervals, *RELATIVE, "seconds"}
    # Each mean's 95% interval: mean +- 1.96 standard errors over the 4 images (Wilson for pointing).
    k = list(METRICS).index("deletion_auc")
    v = report.scores[1, 2, k]
    half = 1.959964 * v.std(ddof=1) / np.sqrt(len(v))
    assert rows[5]["deletion_auc_ci95"] == pytest.approx([v.mean() - half, v.mean() + half], abs=1e-4)
    assert rows[5]["deletion_auc_n"] == 4
    # Relative to the starting probability: each image's AUC over its deletion curve's first point.
    k = list(METRICS).index("deletion_auc")
    by_hand = (report.scores[1, 2, k] / report.deletion[1, 2, :, 0]).mean()
    assert report.relative()[1, 2, 0] == pytest.approx(by_hand, rel=1e-4)
    assert rows[5]["deletion_rel"] == pytest.approx(by_hand, rel=1e-3)
    assert report.to_csv().count("\n") == 7
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["nets"] == ["resnet8", "plain8"] and len(doc["deletion_mean"][0][0]) == 5
    assert set(np.load(__import__("io").BytesIO(report.to_npz()))) >= {"scores", "deletion", "road_morf"}


def test_evaluate_without_masks_has_no_pointing_game(pair):
    report = evaluate(pair[:1], _images(2), methods=[REFERENCE], steps=2, percentiles=(50,))
    assert "pointing" not in report.metrics and report.table().shape == (1, 1, len(METRICS) - 1)


def test_a_failure_halfway_leaves_the_models_as_they_were(pair):
    before = [_state(m) for _, m in pair]

    def boom(done: int, total: int, text: str) -> None:
        raise RuntimeError("halfway")

    with pytest.raises(RuntimeError, match="halfway"):
        evaluate(pair, _images(2), methods=["gradcam", REFERENCE], steps=2, percentiles=(50,), progress=boom)
    for (_, m), b in zip(pair, before):
        _assert_unchanged(m, b)


def test_stopping_returns_what_was_done(pair):
    calls = iter(range(1000))
    report = evaluate(
        pair,
        _images(2),
        methods=[REFERENCE, "saliency"],
        steps=2,
        percentiles=(50,),
        should_stop=lambda: next(calls) >= 2,  # the random reference's two checks pass, then stop
    )
    assert not report.complete
    assert not np.isnan(report.table()[0, 0]).any() and np.isnan(report.table()[0, 1]).all()
    assert np.isnan(report.table()[1]).all()


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"methods": ["nope"]}, "Unknown method"),
        ({"targets": [0]}, "one per image"),
        ({"masks": np.zeros((2, 5, 5), bool)}, "do not fit"),
        ({"steps": 0}, "at least one step"),
        ({"percentiles": (0, 50)}, "between 0 and 100"),
    ],
)
def test_bad_settings_are_one_sentence(pair, kwargs, words):
    with pytest.raises(FaithfulnessError, match=words):
        evaluate(pair, _images(2), **kwargs)


def test_forward_passes_count_the_perturbed_images():
    # Per image and method: 1 unperturbed + 2 x 11 curve points + 2 x 4 ROAD images, plus 3 for Grad-CAM.
    assert (
        forward_passes(["gradcam", REFERENCE], 10, steps=10, percentiles=(20, 40, 60, 80))
        == 10 * (31 + 3) + 10 * 31
    )


# --------------------------------------------------------------------------- the command


def test_cli_json(capsys):
    rc = main(
        [
            "faithfulness",
            "--model",
            "resnet8",
            "--n",
            "3",
            "--methods",
            "gradcam,random",
            "--steps",
            "2",
            "--road-percentiles",
            "50",
            "--json",
        ]
    )
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["nets"] == ["resnet8", "plain8"] and doc["images"] == 3
    assert [r["method"] for r in doc["rows"]] == ["gradcam", "random"] * 2
    assert "pointing" in doc["metrics"]  # shapes has masks


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--methods", "gradcam,nope"], "Unknown method"),
        (["--n", "0"], "--n must be at least 1"),
        (["--road-percentiles", "a,b"], "comma-separated"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--model", "resnet8", "--data", "digits"], "channel"),
    ],
)
def test_cli_bad_input_is_one_sentence_and_exit_2(capsys, argv, words):
    rc = main(["faithfulness", "--model", "resnet8", "--n", "2", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and words in err and err.count("\n") == 1


# --------------------------------------------------------------------------- figures


def test_figures_draw_every_method_and_net(pair):
    from resviz.plots.faithfulness import curves_figure, metrics_figure

    report = evaluate(pair, _images(2), methods=["saliency", REFERENCE], steps=2, percentiles=(40, 60))
    fig = metrics_figure(report)
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == len(report.metrics) * 2  # a bar trace per metric and method, a bar per net
    assert list(bars[0].x) == ["resnet8", "plain8"]
    np.testing.assert_allclose(bars[0].y, report.table()[:, 0, 0], rtol=1e-6)
    assert "lower is better" in fig.layout.annotations[0].text
    curves = curves_figure(report)
    assert len(curves.data) == 4 * 2 * 2  # 4 panels x 2 nets x 2 methods
    dashes = {t.name: t.line.dash for t in curves.data}
    assert dashes["resnet8: saliency"] == "solid" and dashes["plain8: saliency"] == "dash"
    np.testing.assert_allclose(curves.data[0].x, report.fractions)


def test_plots_do_not_import_torch():
    import subprocess
    import sys

    code = "import sys, resviz.plots.faithfulness; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_targets_beyond_the_models_classes_are_refused(pair):
    with pytest.raises(FaithfulnessError, match="classes 0 to 9"):
        evaluate(pair, _images(2), targets=[0, 10], methods=[REFERENCE])


def test_the_estimate_grows_with_the_work(pair):
    from resviz.analysis.faithfulness import estimate_seconds

    model = pair[0][1]
    one = estimate_seconds(model, _images(1), ["saliency"])
    assert 0 < one < estimate_seconds(model, _images(1), ["saliency", "integrated_gradients"])
    assert hook_count(model) == 0


def test_road_removes_the_share_it_says_when_the_map_has_ties():
    from resviz.analysis.road import keep_masks

    maps = np.zeros((2, 10, 10), dtype=np.float32)
    maps[:, :3] = np.linspace(0.1, 1, 30, dtype=np.float32).reshape(3, 10)  # 70 % of the map is zero
    for p in (20, 50, 80):
        kept = keep_masks(maps, p, most_relevant_first=True)
        assert np.all(kept.sum((1, 2)) == int(np.ceil(p * 99 / 100)))  # not every tied zero removed
        assert not kept[:, :3].any() or p > 70  # the non-zero pixels go first
    model = create_model("resnet8", seed=0).eval()
    x = torch.randn(2, 3, 10, 10, generator=torch.Generator().manual_seed(0))
    scores = road(model, x, maps, [0, 1], percentiles=(20, 80))
    assert np.isfinite(scores.morf).all() and np.isfinite(scores.lerf).all()


@pytest.mark.slow
def test_on_the_bundled_resnet20_saliency_beats_a_random_map():
    from resviz.analysis.pairs import held_out, model_pair
    from resviz.models.weights import load_model
    from resviz.runs import BUNDLED_DIR

    loaded = load_model("resnet20", str(BUNDLED_DIR / "demo-shapes-resnet20"))
    data, pair = held_out(loaded, 32), model_pair(loaded)
    report = evaluate(
        [(pair.residual.name, pair.residual.model)],
        data.normalize(data.x_test),
        targets=data.y_test,
        masks=data.masks_test.numpy(),
        methods=["saliency", REFERENCE],
    )
    table = dict(zip(report.metrics, report.table()[0].T))
    assert table["deletion_auc"][0] < table["deletion_auc"][1]
    assert table["insertion_auc"][0] > table["insertion_auc"][1]
    assert table["road_combined"][0] > table["road_combined"][1]
    assert table["pointing"][0] > table["pointing"][1] + 0.2
