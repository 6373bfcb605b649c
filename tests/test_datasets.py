"""The training lab's datasets: deterministic shapes with masks, digits, absent/offline sets, folders."""

from __future__ import annotations

import time
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from resviz.datasets import SHAPE_CLASSES, DatasetError, load_dataset, make_shapes


def test_shapes_are_deterministic_by_seed():
    a = make_shapes(64, size=16, seed=3)
    b = make_shapes(64, size=16, seed=3)
    c = make_shapes(64, size=16, seed=4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_shapes_shapes_dtypes_and_classes():
    images, labels, masks = make_shapes(300, size=32, seed=0)
    assert images.shape == (300, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (300,) and set(labels.tolist()) == set(range(len(SHAPE_CLASSES)))
    assert masks.shape == (300, 32, 32) and masks.dtype == bool


def test_every_shape_has_a_mask_that_marks_the_object():
    images, _, masks = make_shapes(200, size=16, seed=1)
    area = masks.reshape(200, -1).mean(1)
    assert (area > 0.03).all() and (area < 0.7).all()
    # The object is drawn in a colour far from the background: the masked pixels differ.
    img = images.astype(float)
    inside = (img * masks[..., None]).sum((1, 2)) / masks.sum((1, 2))[:, None]
    outside = (img * ~masks[..., None]).sum((1, 2)) / (~masks).sum((1, 2))[:, None]
    assert (np.linalg.norm(inside - outside, axis=1) > 40).mean() > 0.9


def test_shapes_dataset_split_and_preprocessing():
    data = load_dataset("shapes", n_train=40, n_test=10, size=16, seed=0)
    assert data.x_train.shape == (40, 3, 16, 16) and data.x_train.dtype == torch.uint8
    assert data.masks_test is not None and data.masks_test.shape == (10, 16, 16)
    assert data.class_names == SHAPE_CLASSES
    assert data.preprocessing.crop == 16 and data.preprocessing.channels == 3
    x = data.normalize(data.x_train[:4])
    assert x.dtype == torch.float32 and x.shape == (4, 3, 16, 16)
    # train and held-out come from different streams
    assert not torch.equal(data.x_train[:10], data.x_test)


def test_digits():
    data = load_dataset("digits", n_train=1000)
    assert data.x_train.shape == (1000, 1, 8, 8)
    assert len(data.y_test) == 1797 - 1000
    assert data.preprocessing.channels == 1 and data.num_classes == 10
    assert int(data.x_train.max()) == 255
    assert data.masks_test is None


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(DatasetError, match="shapes"):
        load_dataset("imagenet")


def test_cifar10_absent_says_so_without_downloading(tmp_path):
    start = time.perf_counter()
    with pytest.raises(DatasetError, match="not on disk"):
        load_dataset("cifar10", root=tmp_path)
    assert time.perf_counter() - start < 30  # importing torchvision, never a network wait


def test_offline_download_is_one_sentence_not_a_hang(tmp_path, monkeypatch):
    import socket

    import resviz.datasets as ds

    asked = []

    def offline(url, timeout=None):
        asked.append((url, timeout, socket.getdefaulttimeout()))
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(ds.urllib.request, "urlopen", offline)
    with pytest.raises(DatasetError, match="could not be downloaded"):
        load_dataset("mnist", root=tmp_path, download=True)
    # The timeout goes to the request itself; the process-wide default (every session's) is untouched.
    assert asked and all(t == 10.0 and default is None for _, t, default in asked)
    assert len(asked) == 2  # both mirrors of the first archive, then it gives up
    assert not list((tmp_path / "MNIST" / "raw").glob(".part-*"))  # nothing half-written left


def test_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for cls, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        for i in range(5):
            arr = np.clip(np.array(colour) + rng.integers(-20, 20, (20, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "blue" / "broken.png").write_bytes(b"not an image")
    data = load_dataset("folder", root=tmp_path, size=16)
    assert data.class_names == ("blue", "red")
    assert len(data.y_train) + len(data.y_test) == 10  # the broken file was skipped
    assert data.x_train.shape[1:] == (3, 16, 16)


def test_image_folder_needs_classes(tmp_path):
    with pytest.raises(DatasetError):
        load_dataset("folder", root=tmp_path / "missing")
    with pytest.raises(DatasetError):
        load_dataset("folder", root=tmp_path)


def test_a_shapes_set_is_a_prefix_of_every_larger_one():
    """ "Held-out image k" is one picture whatever n a page asks for (chunks of a fixed stream)."""
    small = make_shapes(100, size=16, seed=1)
    large = make_shapes(700, size=16, seed=1)
    for a, b in zip(small, large):
        assert np.array_equal(a, b[:100])
    data = load_dataset("shapes", n_train=40, n_test=300, size=16, seed=0)
    fewer = load_dataset("shapes", n_train=40, n_test=20, size=16, seed=0)
    assert torch.equal(fewer.x_test, data.x_test[:20]) and torch.equal(fewer.y_test, data.y_test[:20])
