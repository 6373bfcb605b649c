"""Images in: untrusted upload bytes decoded safely into RGB, and the built-in sample images.

Every page that takes images goes through :func:`decode_image`. It refuses, with one sentence each,
what cannot be used (empty, too big, not an image whatever its name, truncated, over the pixel
limit) and quietly fixes what is merely awkward, saying so in ``notes``: EXIF rotation, grayscale,
16-bit (scaled to 8 bits, not clipped), CMYK, palette, transparency (composited onto white), and
animations or multi-page files (first frame).

Large images are downscaled while they are decoded (:data:`KEEP_PIXELS`), because the analyses see
a few hundred pixels a side and one 40-megapixel upload would otherwise hold 120 MB of RGB per
copy: a JPEG is decoded at 1/2, 1/4 or 1/8 scale straight from its DCT coefficients
(``Image.draft``), other formats are decoded once and shrunk (integer ``reduce`` then Lanczos)
before their colour conversion, so the full-size pixels live only for that step, and at most two
such full-size decodes run at once in the process (the memory of many sessions uploading at once).

Pillow's own limit (about 179 megapixels refused, 89 warned) is far above what a page needs, so
ours (:data:`MAX_PIXELS`) is checked from the header, before a single pixel is decoded: a
decompression bomb never reaches the decoder. Only the formats in :data:`FORMATS` are tried, so a
file cannot reach Pillow's rarer plugins (EPS, for one, shells out to Ghostscript).

Sample images are scikit-image's photographs (``skimage.data``), read from the files inside the
installed wheel (nothing is downloaded), plus a few small synthetic ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from resviz.errors import ImageError

if TYPE_CHECKING:
    from resviz.datasets import ImageDataset

MAX_PIXELS = 40_000_000  # width x height; Pillow's own bomb limit is 179 MP (89 MP only warns)
MAX_UPLOAD_MB = 25  # per file; the page's uploader uses the same number
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
MIN_SIDE = 8  # pixels; smaller images hold nothing a network can see
MAX_ASPECT = 32  # a 1x10000 strip would become a 2.5-gigapixel resize before the crop
# Decoded images keep about a megapixel (3 MB of RGB): the largest network view is a 256-pixel
# resize and a 224 crop (ImageNet), so 1024 x 1024 keeps a 4x margin for a sharp overlay. The
# shorter side never drops below KEEP_MIN_SIDE (2x that resize), so an elongated panorama is not
# starved; the largest decoded image is then 512 x 16384 (25 MB), at MAX_ASPECT.
KEEP_PIXELS = 1024 * 1024
KEEP_MIN_SIDE = 512
# Full-size decodes of large images running at once, in the whole process: each holds up to
# 160 MB (a 40-megapixel RGBA) for a second, and with two cores more at once only add memory.
_FULL_SIZE_SLOTS = threading.BoundedSemaphore(2)
_RESIZABLE = ("L", "LA", "RGB", "RGBA", "CMYK")  # modes Pillow resamples with a real filter
# EXIF orientation -> the transposition that puts the image upright (as ImageOps.exif_transpose)
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "DIB", "GIF", "TIFF")  # JPEG covers phone MPO files too
UPLOAD_TYPES = ("png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff")  # for st.file_uploader
_FORMAT_LIST = "PNG, JPEG, WebP, BMP, GIF or TIFF"


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image, ready for :class:`resviz.preprocessing.Preprocessing`.

    Attributes:
        name: file name or sample name, for people.
        image: the pixels, mode ``RGB``, size ``(W, H)``. Treat it as read-only: samples are cached.
        notes: what was done to make it usable, e.g. ``"first frame of an animated GIF (12 frames)"``.
        digest: short hash of the source bytes (or sample name): a cache key for results.
    """

    name: str
    image: Image.Image = field(compare=False, repr=False)
    notes: tuple[str, ...] = ()
    digest: str = ""
    true_class: str | None = None  # a held-out dataset image's label; None for photos and uploads

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def digest_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def decode_image(
    data: bytes,
    name: str = "image",
    *,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_UPLOAD_BYTES,
) -> LoadedImage:
    """Decode untrusted bytes into an RGB :class:`LoadedImage`, downscaled to :data:`KEEP_PIXELS`.

    A downscaled image says so in its notes (``"downscaled from 8000 x 5000 to 1295 x 810 pixels"``).

    Args:
        data: the file's bytes, as uploaded.
        name: the file name, used in messages only (the format is sniffed from the bytes).
        max_pixels: refuse images with more pixels than this, before decoding them.
        max_bytes: refuse files larger than this.

    Raises:
        ImageError: one sentence saying what is wrong with the file.
    """
    _check_file_size(data, name, max_bytes)
    try:
        return _decode(data, name, max_pixels)
    except ImageError:
        raise
    except Exception as exc:  # Pillow's plugins raise anything on damaged data: IndexError, struct.error...
        raise ImageError(
            f"{name} could not be decoded; the file looks damaged ({type(exc).__name__})."
        ) from exc


def _decode(data: bytes, name: str, max_pixels: int) -> LoadedImage:
    """:func:`decode_image` after the size check; any error but ImageError is a damaged file."""
    notes: list[str] = []
    with warnings.catch_warnings():
        # Our own pixel limit is checked below; Pillow's warning would only be noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im = _open_header(data, name)
        _check_dimensions(im, name, max_pixels)
        _seek_first_frame(im, name, notes)
        full = im.size
        target = kept_size(*full)
        if target is not None and im.format == "JPEG":
            im.draft(im.mode, target)  # decodes at the smallest DCT scale still >= target
        # Only a full-size decode of a large image needs one of the few slots (see _FULL_SIZE_SLOTS).
        big = target is not None and im.size[0] * im.size[1] > 4 * KEEP_PIXELS
        with _FULL_SIZE_SLOTS if big else contextlib.nullcontext():
            rgb, orientation = _decode_rgb(im, name, target, notes)
    rgb = _upright(rgb, orientation, notes)
    if target is not None:
        w, h = (full[1], full[0]) if orientation in (5, 6, 7, 8) else full
        notes.append(f"downscaled from {w} x {h} to {rgb.size[0]} x {rgb.size[1]} pixels")
    return LoadedImage(name=name, image=rgb, notes=tuple(notes), digest=digest_bytes(data))


def _decode_rgb(
    im: Image.Image, name: str, target: tuple[int, int] | None, notes: list[str]
) -> tuple[Image.Image, int | None]:
    """Decode, shrink to ``target`` (None: keep the size) and convert to RGB; also the EXIF orientation."""
    _load_pixels(im, name)
    orientation = _orientation(im)  # read now: the shrunk copies below no longer carry the EXIF
    if target is not None:
        im = _shrink(im, target)  # before the colour conversion: one full-size copy at a time
    try:
        rgb = _to_rgb(im, notes)
    except Exception as exc:
        raise ImageError(f"{name} uses colour mode {im.mode}, which cannot be converted to RGB.") from exc
    if target is not None:
        rgb = _shrink(rgb, target)  # the modes _shrink left alone (palette, 16-bit, colour key)
    return rgb, orientation


def kept_size(width: int, height: int) -> tuple[int, int] | None:
    """The size a ``width x height`` image is decoded to, or None when it is kept whole.

    About :data:`KEEP_PIXELS` pixels with the aspect ratio kept, but never a shorter side below
    :data:`KEEP_MIN_SIDE` (nor above the original).
    """
    scale = max(math.sqrt(KEEP_PIXELS / (width * height)), KEEP_MIN_SIDE / min(width, height))
    if scale >= 1.0:
        return None
    return max(1, round(width * scale)), max(1, round(height * scale))


def _shrink(im: Image.Image, target: tuple[int, int]) -> Image.Image:
    """Resize to ``target`` with Lanczos (after an integer box ``reduce``), if the mode allows it.

    Palette, bilevel and 16/32-bit modes, and images with a transparent colour key, are left to
    the second call, after their conversion to RGB: resampling would blend palette indices or the
    key colour.
    """
    if im.size == target or im.mode not in _RESIZABLE or "transparency" in im.info:
        return im
    # reducing_gap=3: a box reduce down to 3x the target, then Lanczos; within 1 level of a pure
    # Lanczos resize (tests/test_images.py) at a fraction of its time on a 40-megapixel image.
    return im.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _check_file_size(data: bytes, name: str, max_bytes: int) -> None:
    """Refuse an empty file or one over the upload limit, before Pillow sees it."""
    if not data:
        raise ImageError(f"{name} is empty (0 bytes).")
    if len(data) > max_bytes:
        raise ImageError(
            f"{name} is {len(data) / 2**20:.1f} MB, over the {max_bytes / 2**20:.0f} MB upload limit."
        )


def _open_header(data: bytes, name: str) -> Image.Image:
    """Open lazily (the header only), trying just :data:`FORMATS`."""
    try:
        return Image.open(io.BytesIO(data), formats=list(FORMATS))  # lazy: reads the header only
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name} has too many pixels to be decoded safely.") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name} is not an image in a supported format ({_FORMAT_LIST}).") from exc
    except Exception as exc:  # broken headers raise all sorts (SyntaxError, struct.error...)
        raise ImageError(f"{name} could not be read as an image; the file looks damaged.") from exc


def _check_dimensions(im: Image.Image, name: str, max_pixels: int) -> None:
    """Refuse, from the header's size alone, images too large, too small or too elongated."""
    w, h = im.size
    if w * h > max_pixels:
        raise ImageError(
            f"{name} is {w}x{h} = {w * h / 1e6:.0f} megapixels, over the limit of "
            f"{max_pixels / 1e6:.0f} megapixels; downscale it first."
        )
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"{name} is {w}x{h} pixels; images need at least {MIN_SIDE} pixels a side.")
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise ImageError(
            f"{name} is {w}x{h} pixels, too elongated (more than {MAX_ASPECT}:1) to center-crop."
        )


def _seek_first_frame(im: Image.Image, name: str, notes: list[str]) -> None:
    """Keep the first frame of an animation or multi-page file, and say so."""
    try:
        # Counting frames walks the whole file: a cut multi-page TIFF fails here, not at open.
        frames = int(getattr(im, "n_frames", 1))
        if frames > 1:
            im.seek(0)
    except Exception as exc:
        raise ImageError(f"{name} is truncated or corrupt: its frames could not be read.") from exc
    if frames > 1:
        animated = {"GIF": "an animated GIF", "WEBP": "an animated WebP", "PNG": "an animated PNG"}
        what = animated.get(im.format or "", f"a multi-page {im.format} file")
        notes.append(f"first frame of {what} ({frames} frames)")


def _load_pixels(im: Image.Image, name: str) -> None:
    """Decode the pixels; truncated data fails here, at decode time, not at open."""
    try:
        im.load()
    except Exception as exc:
        raise ImageError(f"{name} is truncated or corrupt and could not be decoded.") from exc


def _orientation(im: Image.Image) -> int | None:
    """The EXIF orientation (1-8), None when absent; a malformed EXIF block counts as absent."""
    with contextlib.suppress(Exception):  # a malformed EXIF block is no reason to refuse the pixels
        value = im.getexif().get(0x0112)
        return int(value) if value is not None else None
    return None


def _upright(im: Image.Image, orientation: int | None, notes: list[str]) -> Image.Image:
    """Apply the EXIF orientation, if any; a value outside 1-8 only earns a note."""
    if orientation in (None, 1):
        return im
    method = _UPRIGHT.get(orientation)  # type: ignore[arg-type]
    if method is None:
        notes.append("its EXIF orientation could not be applied")
        return im
    notes.append("rotated upright from its EXIF orientation")
    return im.transpose(method)


def _to_rgb(im: Image.Image, notes: list[str]) -> Image.Image:
    """Any Pillow mode to 8-bit RGB, scaling high bit depths and compositing alpha onto white."""
    mode = im.mode
    if mode in ("1", "L", "RGB") and "transparency" in im.info:  # a tRNS colour: that value is clear
        return _composite_onto_white(im, notes)
    if mode == "RGB":
        return im
    if mode.startswith("I") or mode == "F":
        return _scale_to_8bit(im, notes).convert("RGB")
    if mode == "P":
        has_alpha = "transparency" in im.info or (im.palette is not None and im.palette.mode == "RGBA")
        notes.append("palette image converted to RGB")
        if not has_alpha:
            return im.convert("RGB")
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("1", "L"):
        notes.append("grayscale image repeated over 3 channels")
        return im.convert("RGB")
    if mode == "CMYK":
        notes.append("converted from CMYK")
        return im.convert("RGB")
    if mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        return _composite_onto_white(im, notes)
    notes.append(f"converted from {mode} to RGB")
    return im.convert("RGB")


def _composite_onto_white(im: Image.Image, notes: list[str]) -> Image.Image:
    rgba = im.convert("RGBA")  # also turns a "transparency" colour (PNG tRNS) into alpha
    if rgba.getextrema()[3][0] < 255:  # only say so when something was actually transparent
        notes.append("transparent areas composited onto white")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _scale_to_8bit(im: Image.Image, notes: list[str]) -> Image.Image:
    """16/32-bit integer or float grayscale to 8 bits by scaling (``convert("L")`` would clip)."""
    a = np.asarray(im)
    if a.dtype.kind in "ui":
        lo, hi = int(a.min()), int(a.max())
        if lo >= 0 and hi <= 65535 and (im.mode.startswith("I;16") or hi > 255):
            out = a.astype(np.float64) * (255.0 / 65535.0)  # full 16-bit range onto 0..255
            notes.append("16-bit image scaled to 8 bits")
        elif lo >= 0 and hi <= 255:
            out = a.astype(np.float64)
        else:
            out = (a - lo) * (255.0 / max(hi - lo, 1))
            notes.append("32-bit image rescaled from its value range to 8 bits")
    else:
        a = np.nan_to_num(a.astype(np.float64))
        lo, hi = float(a.min()), float(a.max())
        if lo >= 0.0 and hi <= 1.0:
            out = a * 255.0
        else:
            out = (a - lo) * (255.0 / max(hi - lo, 1e-12))
        notes.append("floating-point image rescaled to 8 bits")
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "L")


def load_file(path: str | Path, **limits: int) -> LoadedImage:
    """Decode an image file from disk with the same checks as an upload (the CLI's entry point)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        limit = limits.get("max_bytes", MAX_UPLOAD_BYTES)
        if size > limit:  # do not even read a huge file into memory
            raise ImageError(f"{path.name} is {size / 2**20:.1f} MB, over the {limit / 2**20:.0f} MB limit.")
        data = path.read_bytes()
    except IsADirectoryError as exc:
        raise ImageError(f"{path} is a folder, not an image file.") from exc
    except FileNotFoundError as exc:
        raise ImageError(f"No image file at {path}.") from exc
    except OSError as exc:
        raise ImageError(f"Cannot read {path}: {exc.strerror}.") from exc
    return decode_image(data, path.name, **limits)


# --------------------------------------------------------------------------- samples

# name -> file inside skimage/data (all shipped in the wheel; the pooch-fetched ones are left out)
_SKIMAGE_FILES = {
    "chelsea (cat)": "chelsea.png",
    "coffee": "coffee.png",
    "astronaut": "astronaut.png",
    "rocket": "rocket.jpg",
    "motorcycle": "motorcycle_left.png",
    "camera (grayscale)": "camera.png",
    "hubble deep field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png",
    "coins (grayscale)": "coins.png",
}


def _skimage_dir() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("skimage")  # locate the wheel without importing scikit-image
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _checkerboard() -> Image.Image:
    y, x = np.mgrid[0:128, 0:128]
    a = (((x // 16) + (y // 16)) % 2 * 255).astype(np.uint8)
    return Image.fromarray(a, "L").convert("RGB")


def _gradient() -> Image.Image:
    y, x = np.mgrid[0:128, 0:128].astype(np.float32) / 127.0
    a = np.stack([x, y, 1.0 - x], axis=-1)
    return Image.fromarray((a * 255).astype(np.uint8), "RGB")


def _circles() -> Image.Image:
    y, x = np.mgrid[-64:64, -64:64].astype(np.float32)
    r = np.hypot(x, y)
    ring = (np.sin(r / 3.0) > 0).astype(np.float32)
    a = np.stack([ring, 0.5 * ring, 1.0 - ring], axis=-1)
    return Image.fromarray((a * 255).astype(np.uint8), "RGB")


_SYNTHETIC: dict[str, Callable[[], Image.Image]] = {
    "synthetic: checkerboard": _checkerboard,
    "synthetic: color gradient": _gradient,
    "synthetic: rings": _circles,
}


def sample_images() -> list[str]:
    """Names of the built-in samples: skimage photographs present offline, then synthetic ones."""
    root = _skimage_dir()
    photos = [n for n, f in _SKIMAGE_FILES.items() if root is not None and (root / f).is_file()]
    return [*photos, *_SYNTHETIC]


@lru_cache(maxsize=16)
def load_sample(name: str) -> LoadedImage:
    """A built-in sample by name (decoded once per process, through :func:`decode_image`).

    Raises:
        ImageError: the name is not one of :func:`sample_images`.
    """
    if name in _SYNTHETIC:
        return LoadedImage(name, _SYNTHETIC[name](), (), digest_bytes(f"sample:{name}".encode()))
    root = _skimage_dir()
    if name not in _SKIMAGE_FILES or root is None or not (root / _SKIMAGE_FILES[name]).is_file():
        raise ImageError(f"No sample image named {name!r}; choose one of {', '.join(sample_images())}.")
    path = root / _SKIMAGE_FILES[name]
    loaded = decode_image(path.read_bytes(), name)
    return LoadedImage(name, loaded.image, loaded.notes, loaded.digest)


def dataset_samples(data: ImageDataset, n: int = 12) -> list[LoadedImage]:
    """The first ``n`` held-out images of ``data`` as pickable samples, with their true class.

    Named ``"held-out 3: circle"``; grayscale sets become RGB here and grayscale again in preprocessing.
    """
    out = []
    for i in range(min(n, len(data.y_test))):
        pixels = data.x_test[i].permute(1, 2, 0).numpy()  # (H, W, C) uint8
        image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).convert("RGB")
        label = data.class_names[int(data.y_test[i])]
        name = f"held-out {i}: {label}"
        digest = digest_bytes(f"{data.name}:{data.description}:{i}:".encode() + pixels.tobytes())
        out.append(LoadedImage(name, image, (), digest, true_class=label))
    return out
