"""Damaged images: every mutation of a valid file is decoded or refused with one ImageError.

Random byte mutations of valid files once gave seven crash classes out of Pillow (TypeError
"Missing dimensions", IndexError, struct.error, ...), and a multi-page TIFF cut to two thirds of its
length failed in the frame count. The fuzz is seeded, so a failure here reproduces exactly.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image, features

from resviz.errors import ImageError
from resviz.images import LoadedImage, decode_image, load_file

MUTATIONS_PER_FORMAT = 100
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on the damage it skips


def _frames(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(7)
    return [Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8), "RGB") for _ in range(n)]


def _encode(fmt: str) -> bytes:
    buf = io.BytesIO()
    frames = _frames(3)
    if fmt in ("GIF", "TIFF", "WEBP"):  # animated / multi-page: the frame count walks the file
        frames[0].save(buf, fmt, save_all=True, append_images=frames[1:])
    else:
        frames[0].save(buf, fmt)
    return buf.getvalue()


FORMATS = ["PNG", "JPEG", "GIF", "TIFF", "BMP"] + (["WEBP"] if features.check("webp") else [])


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One of: flipped bytes, a cut, a repeated or deleted run, a random overwrite of the header."""
    b = bytearray(data)
    kind = rng.integers(5)
    if kind == 0:
        for i in rng.integers(0, len(b), size=int(rng.integers(1, 9))):
            b[i] ^= 1 << int(rng.integers(8))
    elif kind == 1:
        b = b[: int(rng.integers(1, len(b)))]
    elif kind == 2:
        i, n = int(rng.integers(len(b))), int(rng.integers(1, 64))
        b[i:i] = b[i : i + n]
    elif kind == 3:
        i, n = int(rng.integers(len(b))), int(rng.integers(1, 64))
        del b[i : i + n]
    else:
        i = int(rng.integers(0, min(len(b), 64)))
        b[i : i + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
    return bytes(b)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_mutation_is_decoded_or_refused_in_one_sentence(fmt):
    valid = _encode(fmt)
    assert isinstance(decode_image(valid, f"ok.{fmt.lower()}"), LoadedImage)
    rng = np.random.default_rng(sum(map(ord, fmt)))
    start, refused = time.perf_counter(), 0
    for i in range(MUTATIONS_PER_FORMAT):
        name = f"fuzz-{i}.{fmt.lower()}"
        try:
            out = decode_image(_mutate(valid, rng), name)
        except ImageError as exc:  # anything else fails the test with its own traceback
            refused += 1
            assert str(exc).startswith(name) and str(exc).endswith(".") and "\n" not in str(exc)
        else:
            assert out.image.mode == "RGB" and min(out.image.size) >= 1
    assert refused > 0  # the mutations did reach the decoder's refusals
    assert time.perf_counter() - start < 10


def test_a_multi_page_tiff_cut_to_two_thirds_is_refused_naming_the_file(tmp_path):
    data = _encode("TIFF")
    path = tmp_path / "pages.tif"
    path.write_bytes(data[: 2 * len(data) // 3])
    for _ in range(2):  # the same answer on every rerun, never an exception
        with pytest.raises(ImageError, match=r"^pages\.tif "):
            load_file(path)
