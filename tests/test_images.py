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
    KEEP_MIN_SIDE,
    KEEP_PIXELS,
    MAX_ASPECT,
    MAX_UPLOAD_BYTES,
    LoadedImage,
    decode_image,
    kept_size,
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


# --------------------------------------------------------------------------- downscaling on decode


def scene(width: int, height: int) -> np.ndarray:
    """``(H, W, 3)`` uint8: gradients, sharp edges and fine stripes, the hard cases for a resize."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 255 * x / width
    g = 255 * (np.sin(x / 7.0) * np.cos(y / 11.0) > 0)  # edges every few pixels
    b = 255 * ((x // (width // 8) + y // (height // 6)) % 2)  # big blocks
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def full_decode(data: bytes, name: str = "ref") -> LoadedImage:
    """Every pixel kept: the decode before this change, the reference for the downscaled one."""
    import resviz.images

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(resviz.images, "KEEP_PIXELS", 10**12)
        mp.setattr(resviz.images, "KEEP_MIN_SIDE", 10**6)
        return decode_image(data, name)


def reference(data: bytes, size: tuple[int, int], mode: str = "RGB") -> np.ndarray:
    """Pillow's own Lanczos resize of the full-size decode: what the downscaled pixels should be."""
    full = full_decode(data).image
    return np.asarray(full.resize(size, Image.Resampling.LANCZOS), dtype=np.float64)


def close_to(loaded: LoadedImage, ref: np.ndarray, mean: float, worst: float) -> None:
    diff = np.abs(np.asarray(loaded.image, dtype=np.float64) - ref)
    assert diff.mean() <= mean and np.percentile(diff, 99.9) <= worst, (diff.mean(), diff.max())


def test_kept_size_keeps_about_a_megapixel_and_a_usable_shorter_side() -> None:
    assert kept_size(1000, 1000) is None  # under the budget: every pixel kept
    assert kept_size(8000, 5000) == (1295, 810)
    worst = 0
    for w, h in [(8000, 5000), (6324, 6324), (35_000, 1_100), (1_100, 35_000), (4000, 600), (2000, 700)]:
        size = kept_size(w, h)
        assert size is not None
        assert abs(size[0] / size[1] - w / h) < 0.01 * w / h  # aspect ratio kept
        assert min(size) >= min(KEEP_MIN_SIDE, min(w, h)) - 1
        assert size[0] * size[1] <= max(KEEP_PIXELS, KEEP_MIN_SIDE**2 * MAX_ASPECT) * 1.01
        worst = max(worst, size[0] * size[1] * 3)
    assert worst <= 26 * 2**20  # the cache's per-entry bound: 512 x 16384 RGB


def test_large_png_is_downscaled_like_pillows_own_resize() -> None:
    data = encode(Image.fromarray(scene(3000, 2000)), "PNG")
    loaded = decode_image(data, "big.png")
    assert loaded.size == kept_size(3000, 2000) == (1254, 836)
    assert "downscaled from 3000 x 2000 to 1254 x 836 pixels" in loaded.notes
    close_to(loaded, reference(data, loaded.size), mean=0.3, worst=4)


def test_large_jpeg_is_decoded_at_a_reduced_scale() -> None:
    data = encode(Image.fromarray(scene(3000, 2200)), "JPEG", quality=95)
    loaded = decode_image(data, "big.jpg")
    assert loaded.size == kept_size(3000, 2200)
    # DCT-domain scaling is not a Lanczos filter: on this scene's 1-pixel edges (the worst case)
    # it is a few levels off on average, more on the sharpest edges.
    close_to(loaded, reference(data, loaded.size), mean=4.0, worst=40)


def test_downscaled_phone_photo_is_still_rotated_upright() -> None:
    a = scene(3000, 1800)
    a[:, :1500] = (255, 0, 0)  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = encode(Image.fromarray(a), "JPEG", exif=exif, quality=90)
    loaded = decode_image(data, "phone.jpg")
    w, h = kept_size(3000, 1800)  # type: ignore[misc]
    assert loaded.size == (h, w)  # portrait
    assert rgb_at(loaded, (h // 2, 10))[0] > 200 and rgb_at(loaded, (h // 2, 10))[1] < 60  # red on top
    assert f"downscaled from 1800 x 3000 to {h} x {w} pixels" in loaded.notes
    assert "rotated upright from its EXIF orientation" in loaded.notes
    upright = Image.fromarray(a).transpose(Image.Transpose.ROTATE_270)
    ref = np.asarray(upright.resize((h, w), Image.Resampling.LANCZOS), dtype=np.float64)
    close_to(loaded, ref, mean=3.0, worst=60)


def test_large_transparent_png_is_composited_then_downscaled() -> None:
    a = np.dstack([scene(2400, 1600), np.full((1600, 2400), 255, np.uint8)])
    a[:800, :, 3] = 0  # top half fully transparent
    data = encode(Image.fromarray(a, "RGBA"), "PNG")
    loaded = decode_image(data, "alpha.png")
    assert "transparent areas composited onto white" in loaded.notes
    assert rgb_at(loaded, (50, 50)) == (255, 255, 255)
    close_to(loaded, reference(data, loaded.size), mean=0.5, worst=6)


@pytest.mark.parametrize("mode", ["P", "I;16"])
def test_modes_converted_before_the_resize_match_the_reference(mode: str) -> None:
    rgb = Image.fromarray(scene(2400, 1600))
    red16 = np.asarray(rgb)[..., 0].astype(np.uint16) * 257
    im = rgb.quantize(64) if mode == "P" else Image.fromarray(red16)
    data = encode(im, "PNG")
    loaded = decode_image(data, "x.png")
    assert loaded.size == kept_size(2400, 1600)
    close_to(loaded, reference(data, loaded.size), mean=0.01, worst=0)  # the same resize of the same RGB


def test_small_images_keep_every_pixel() -> None:
    a = scene(900, 700)
    loaded = decode_image(encode(Image.fromarray(a), "PNG"), "small.png")
    assert loaded.size == (900, 700) and not loaded.notes
    assert np.array_equal(np.asarray(loaded.image), a)
    big = full_decode(encode(Image.fromarray(scene(1800, 1200)), "PNG"))
    assert big.size == (1800, 1200) and not big.notes


def test_at_most_two_full_size_decodes_at_once(monkeypatch) -> None:
    import threading
    import time

    import resviz.images as images

    inside, most, guard = [0], [0], threading.Lock()
    real = images._load_pixels

    def counting(im, name):
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.05)
        try:
            return real(im, name)
        finally:
            with guard:
                inside[0] -= 1

    monkeypatch.setattr(images, "_load_pixels", counting)
    data = encode(Image.new("RGB", (2100, 2100), (9, 99, 199)), "PNG")
    threads = [threading.Thread(target=decode_image, args=(data, f"{i}.png")) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 2


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
