"""Intervals against textbook values and against scipy/statsmodels-free references worked out here."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from resviz.analysis.chance import learned_from_run, vacuous_comparison
from resviz.stats import paired_difference, rate, wilson


def test_wilson_matches_the_closed_form_and_known_values():
    # Brown, Cai & DasGupta (2001): 0 of 10 gives [0, 0.2775]; 5 of 10 gives [0.2366, 0.7634].
    assert wilson(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-4)
    assert wilson(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-4)
    # The score interval inverts the score test: at each end the z statistic is exactly 1.96.
    lo, hi = wilson(37, 250)
    for p in (lo, hi):
        z = abs(37 / 250 - p) / math.sqrt(p * (1 - p) / 250)
        assert z == pytest.approx(sps.norm.ppf(0.975), rel=1e-9)
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_a_rate_carries_its_sample_size():
    r = rate(3, 500)
    assert r.value == pytest.approx(0.006) and r.n == 500 and r.low < 0.006 < r.high
    assert r.to_dict()["n"] == 500 and "n=500" in str(r)


def test_paired_difference_against_a_direct_bootstrap():
    rng = np.random.default_rng(1)
    a = rng.random(400) < 0.1
    b = a.copy()
    b[rng.choice(400, 30, replace=False)] = True  # B errs on 30 more images (some already wrong)
    d = paired_difference(a, b)
    assert d.difference == pytest.approx(b.mean() - a.mean())
    # A naive bootstrap over resampled image indices gives the same interval (to Monte-Carlo error).
    idx = rng.integers(0, 400, (4000, 400))
    naive = b[idx].mean(1) - a[idx].mean(1)
    assert (d.low, d.high) == pytest.approx(tuple(np.quantile(naive, [0.025, 0.975])), abs=0.006)
    assert not d.includes_zero
    same = paired_difference(a, a)
    assert same.difference == 0 and same.includes_zero


def test_a_model_at_chance_is_named_and_a_trained_one_is_not():
    six = [f"c{i}" for i in range(6)]
    stuck = learned_from_run(
        {"name": "plain56", "class_names": six, "final_train_error": 0.79}, {"loss": [1.77] * 30}, 0.818
    )
    trained = learned_from_run(
        {"name": "plain20", "class_names": six, "final_train_error": 0.05}, {"loss": [0.2] * 30}, 0.818
    )
    assert stuck.at_chance and not trained.at_chance
    words = vacuous_comparison(trained, stuck)
    assert words is not None and "plain56 has not learned anything yet" in words and "plain20" not in words
    assert vacuous_comparison(trained) is None
    # The error rule alone: a loss that fell, an error still at the majority class's.
    assert learned_from_run(
        {"name": "x", "class_names": six, "final_train_error": 0.81}, {"loss": [1.0]}, 0.818
    ).at_chance
