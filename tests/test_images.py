"""resviz.images: every awkward and every bad file, generated here."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from resviz.errors import ImageError, ResvizError
from resviz.images import (
    MAX_UPLOAD_BYTES,
    LoadedImage,
    decode_image,
    load_file,
    load_sample,
    sample_images,
)


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def rgb_at(loaded: LoadedImage, xy: tuple[int, int]) -> tuple[int, ...]:
    return tuple(loaded.image.getpixel(xy))  # type: ignore[arg-type]


def one_sentence(msg: str) -> bool:
    return msg.endswith(".") and ". " not in msg.rstrip(".") and "\n" not in msg


def png_with_header_size(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width x height`` but carries a tiny image: a decompression-bomb header."""
    data = bytearray(encode(Image.new("L", (8, 8)), "PNG"))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


# --------------------------------------------------------------------------- good files


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"])
def test_every_supported_format_decodes_to_rgb(fmt: str) -> None:
    im = Image.new("RGB", (32, 24), (200, 30, 30))
    loaded = decode_image(encode(im, fmt), f"x.{fmt.lower()}")
    assert loaded.image.mode == "RGB"
    assert loaded.size == (32, 24)
    r, g, b = rgb_at(loaded, (16, 12))
    assert r > 150 and g < 80 and b < 80
    assert len(loaded.digest) == 16


def test_exif_orientation_is_applied() -> None:
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = (255, 0, 0)  # left half red, right half black
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    loaded = decode_image(encode(Image.fromarray(a), "JPEG", exif=exif, quality=95), "phone.jpg")
    assert loaded.size == (20, 40)  # portrait now
    assert rgb_at(loaded, (10, 5))[0] > 200  # the red half is on top after the rotation
    assert rgb_at(loaded, (10, 35))[0] < 50
    assert any("EXIF" in n for n in loaded.notes)


def test_grayscale_becomes_three_equal_channels() -> None:
    loaded = decode_image(encode(Image.new("L", (16, 16), 77), "PNG"), "g.png")
    assert rgb_at(loaded, (3, 3)) == (77, 77, 77)
    assert any("grayscale" in n for n in loaded.notes)


def test_16bit_is_scaled_not_clipped() -> None:
    a = np.zeros((16, 16), np.uint16)
    a[0, 0], a[0, 1], a[0, 2] = 65535, 32896, 1000  # 32896 = 128 * 257
    im = Image.fromarray(a)
    assert im.mode == "I;16"
    loaded = decode_image(encode(im, "PNG"), "deep.png")
    assert rgb_at(loaded, (0, 0)) == (255, 255, 255)
    assert rgb_at(loaded, (1, 0)) == (128, 128, 128)  # convert("RGB") would give 255 here (clipped)
    assert rgb_at(loaded, (2, 0)) == (4, 4, 4)
    assert any("16-bit" in n for n in loaded.notes)


def test_cmyk_is_converted() -> None:
    im = Image.new("CMYK", (16, 16), (255, 0, 0, 0))  # pure cyan ink
    for fmt in ("JPEG", "TIFF"):
        loaded = decode_image(encode(im, fmt), f"print.{fmt.lower()}")
        r, g, b = rgb_at(loaded, (8, 8))
        assert r < 40 and g > 215 and b > 215, fmt
        assert any("CMYK" in n for n in loaded.notes)


def test_rgba_transparency_is_composited_onto_white() -> None:
    a = np.zeros((16, 16, 4), np.uint8)
    a[:, :8] = (0, 0, 0, 0)  # fully transparent (black underneath)
    a[:, 8:] = (0, 0, 0, 128)  # half-transparent black
    loaded = decode_image(encode(Image.fromarray(a, "RGBA"), "PNG"), "alpha.png")
    assert rgb_at(loaded, (2, 2)) == (255, 255, 255)  # not black
    assert all(120 <= v <= 135 for v in rgb_at(loaded, (12, 2)))
    assert any("transparent" in n for n in loaded.notes)


def test_la_transparency_is_composited_onto_white() -> None:
    im = Image.new("LA", (16, 16), (0, 0))
    loaded = decode_image(encode(im, "PNG"), "la.png")
    assert rgb_at(loaded, (4, 4)) == (255, 255, 255)


@pytest.mark.parametrize(("mode", "clear", "kept"), [("RGB", (0, 0, 0), (200, 10, 10)), ("L", 0, 90)])
def test_transparency_colour_of_rgb_and_grayscale_png_is_white_not_black(mode, clear, kept) -> None:
    im = Image.new(mode, (16, 16), clear)
    im.paste(kept, (8, 0, 16, 16))  # right half opaque, left half the transparent colour
    loaded = decode_image(encode(im, "PNG", transparency=clear), f"trns_{mode}.png")
    assert rgb_at(loaded, (2, 2)) == (255, 255, 255)
    right = kept if isinstance(kept, tuple) else (kept,) * 3
    assert rgb_at(loaded, (12, 2)) == right
    assert any("transparent" in n for n in loaded.notes)


def test_palette_with_transparent_index_is_white_not_black() -> None:
    im = Image.new("P", (16, 16), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(1, (8, 0, 16, 16))  # right half red, left half index 0 = transparent black
    for fmt in ("PNG", "GIF"):
        loaded = decode_image(encode(im, fmt, transparency=0), f"pal.{fmt.lower()}")
        assert rgb_at(loaded, (2, 2)) == (255, 255, 255), fmt
        assert rgb_at(loaded, (12, 2)) == (255, 0, 0), fmt
        assert any("palette" in n for n in loaded.notes)


def test_opaque_palette_image() -> None:
    im = Image.new("RGB", (16, 16), (10, 200, 30)).convert("P")
    loaded = decode_image(encode(im, "PNG"), "p.png")
    g = rgb_at(loaded, (3, 3))[1]
    assert g > 180


def test_animated_gif_gives_first_frame_with_a_note() -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    loaded = decode_image(buf.getvalue(), "anim.gif")
    assert rgb_at(loaded, (8, 8)) == (255, 0, 0)
    assert any("first frame" in n and "3 frames" in n for n in loaded.notes)


def test_animated_png_note_says_its_frame_count_once() -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, "PNG", save_all=True, append_images=frames[1:])
    loaded = decode_image(buf.getvalue(), "anim.png")
    assert rgb_at(loaded, (8, 8)) == (255, 0, 0)
    assert loaded.notes == ("first frame of an animated PNG (2 frames)",)


def test_name_does_not_matter_content_does() -> None:
    loaded = decode_image(encode(Image.new("RGB", (16, 16)), "PNG"), "actually_a_png.jpg")
    assert loaded.image.mode == "RGB"


# --------------------------------------------------------------------------- bad files


def refused(data: bytes, name: str, **limits: int) -> str:
    with pytest.raises(ImageError) as info:
        decode_image(data, name, **limits)
    msg = str(info.value)
    assert isinstance(info.value, ResvizError)
    assert one_sentence(msg), msg
    assert name in msg
    return msg


def test_not_an_image_whatever_its_name() -> None:
    assert "not an image" in refused(b"hello, I am text\n" * 10, "notes.png")
    assert "not an image" in refused(b"%PDF-1.4\n" + bytes(200), "doc.jpg")


def test_unsupported_format_is_refused_before_any_plugin_runs() -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n" + b"showpage\n" * 20
    assert "not an image" in refused(eps, "vector.eps")


def test_empty_file() -> None:
    assert "empty" in refused(b"", "empty.png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(fmt: str) -> None:
    rng = np.random.default_rng(0)
    data = encode(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), fmt)
    assert "truncated" in refused(data[: len(data) // 2], f"cut.{fmt.lower()}")


def test_over_our_pixel_limit_is_refused_before_decoding() -> None:
    # The header claims 10000x5000 (50 MP: under Pillow's limit, over ours) but no such pixels follow:
    # had it been decoded, the message would say "truncated".
    msg = refused(png_with_header_size(10_000, 5_000), "big.png")
    assert "megapixels" in msg and "truncated" not in msg


def test_pixel_limit_is_configurable() -> None:
    assert "megapixels" in refused(encode(Image.new("RGB", (100, 100)), "PNG"), "a.png", max_pixels=5000)


def test_decompression_bomb_over_pillows_own_limit() -> None:
    msg = refused(png_with_header_size(20_000, 20_000), "bomb.png")  # 400 MP: Pillow itself refuses
    assert "pixels" in msg


def test_over_the_upload_size_limit() -> None:
    assert "upload limit" in refused(bytes(MAX_UPLOAD_BYTES + 1), "huge.bmp")
    assert "upload limit" in refused(encode(Image.new("RGB", (64, 64)), "BMP"), "b.bmp", max_bytes=1000)


def test_tiny_and_elongated_images() -> None:
    assert "at least" in refused(encode(Image.new("RGB", (4, 4)), "PNG"), "tiny.png")
    assert "elongated" in refused(encode(Image.new("RGB", (2000, 10)), "PNG"), "strip.png")


def test_load_file_checks_like_an_upload(tmp_path) -> None:
    good = tmp_path / "ok.webp"
    good.write_bytes(encode(Image.new("RGB", (16, 16), (0, 0, 255)), "WEBP"))
    assert load_file(good).name == "ok.webp"
    bad = tmp_path / "bad.png"
    bad.write_text("not really")
    cases = ((bad, "not an image"), (tmp_path / "missing.png", "No image file"), (tmp_path, "folder"))
    for path, words in cases:
        with pytest.raises(ImageError, match=words):
            load_file(path)


# --------------------------------------------------------------------------- samples


def test_samples_load_offline_as_rgb() -> None:
    names = sample_images()
    assert "chelsea (cat)" in names and "astronaut" in names
    assert any(n.startswith("synthetic") for n in names)
    digests = set()
    for name in names:
        loaded = load_sample(name)
        assert loaded.image.mode == "RGB" and min(loaded.size) >= 32
        digests.add(loaded.digest)
    assert len(digests) == len(names)


def test_unknown_sample() -> None:
    with pytest.raises(ImageError, match="No sample image named"):
        load_sample("lena")
