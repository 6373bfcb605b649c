"""ui.images' decoded-upload cache: bounded by the pixels' bytes, least recently used goes first."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from resviz.errors import ImageError
from resviz.images import LoadedImage, decode_image
from ui.images import ByteLRU, Upload, decoded, image_bytes


def image(side: int) -> LoadedImage:
    return LoadedImage(f"{side}", Image.new("RGB", (side, side)))


def test_evicts_least_recently_used_by_bytes() -> None:
    cache = ByteLRU(budget=3 * 100 * 100 * 3)  # three 100 x 100 RGB images
    for key in "abc":
        cache.get((key, ""), lambda: image(100))
    assert len(cache) == 3 and cache.nbytes == 90_000
    cache.get(("a", ""), lambda: pytest.fail("a hit must not decode"))  # a is now the newest
    cache.get(("d", ""), lambda: image(100))  # over budget: b, the least recently used, goes
    made = []
    cache.get(("b", ""), lambda: made.append(1) or image(100))
    assert made == [1]  # b was evicted and decoded again; c went to make room
    assert cache.nbytes <= cache.budget
    cache.get(("big", ""), lambda: image(300))  # alone over budget: kept, everything else goes
    assert len(cache) == 1 and cache.nbytes == image_bytes(image(300)) == 270_000


def test_a_bad_file_is_not_cached() -> None:
    cache = ByteLRU(budget=10**6)
    with pytest.raises(ImageError):
        cache.get(("x", "x.png"), lambda: decode_image(b"not an image", "x.png"))
    assert len(cache) == 0


def test_an_upload_is_decoded_downscaled_and_shared() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (2400, 1600), (10, 200, 30)).save(buf, "PNG")
    up = Upload("big.png", "digest-of-big", buf.getvalue())
    first = decoded(up)
    assert first.size == (1254, 836) and "downscaled from 2400 x 1600" in first.notes[0]
    assert decoded(up) is first  # a rerun decodes nothing
