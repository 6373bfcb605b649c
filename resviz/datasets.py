"""Small image datasets for the training lab, held in memory as uint8 tensors.

* ``shapes``: procedurally generated, no download. Circles, rings, squares, frames, triangles and
  crosses at random position, scale, rotation and colour on noisy, low-contrast textured
  backgrounds; deterministic by seed; every image keeps its object mask, so an attribution can be
  scored (does the Grad-CAM peak fall on the object?).
* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download).
* ``cifar10`` / ``mnist``: torchvision's, read from disk; downloaded only when asked, with a short
  timeout, so an offline machine gets a one-sentence error instead of a hang.
* ``folder``: a user's own images, one sub-folder per class (torchvision's ``ImageFolder`` layout).

Images are stored as ``uint8`` ``(N, C, H, W)`` and normalized per batch, which keeps CIFAR-10 at
150 MB instead of 600 MB of floats.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from resviz.errors import ResvizError
from resviz.preprocessing import Preprocessing


class DatasetError(ResvizError, ValueError):
    """A dataset that is unknown, absent from disk, or cannot be read."""


DATASETS: dict[str, str] = {
    "shapes": "Shapes: 6 procedurally generated classes with object masks (built in, no download)",
    "digits": "Digits: scikit-learn's 8x8 handwritten digits, 10 classes (built in, no download)",
    "cifar10": "CIFAR-10: 32x32 colour photos, 10 classes (torchvision; needs the files or a download)",
    "mnist": "MNIST: 28x28 handwritten digits, 10 classes (torchvision; needs the files or a download)",
    "folder": "My images: one sub-folder per class (ImageFolder layout)",
}
SHAPE_CLASSES: tuple[str, ...] = ("circle", "ring", "square", "frame", "triangle", "cross")
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
MAX_FOLDER_IMAGES = 20_000  # an ImageFolder is decoded into memory: refuse a whole photo library


@dataclass(frozen=True)
class ImageDataset:
    """A train/held-out split in memory.

    Attributes:
        x_train: ``(N, C, H, W)`` uint8 images.
        y_train: ``(N,)`` int64 labels.
        x_test: ``(M, C, H, W)`` uint8 held-out images.
        y_test: ``(M,)`` int64 labels.
        masks_test: ``(M, H, W)`` bool object masks (shapes only), else None.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    masks_train: torch.Tensor | None = None
    masks_test: torch.Tensor | None = None
    description: str = ""

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def size(self) -> int:
        return int(self.x_train.shape[-1])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def preprocessing(self) -> Preprocessing:
        """How a user's image becomes an input of a model trained on this set."""
        return Preprocessing(self.size, self.size, self.mean, self.std, channels=self.channels)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, C, H, W)`` -> normalized float32 on ``x``'s device."""
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x.float().div_(255.0) - mean) / std

    def summary(self) -> str:
        return (
            f"{self.name}: {len(self.y_train)} training and {len(self.y_test)} held-out images, "
            f"{self.channels}x{self.size}x{self.size}, {self.num_classes} classes"
        )


# --------------------------------------------------------------------------- shapes


SHAPES_CHUNK = 256  # images drawn from one random stream: the unit that makes a set prefix-stable


def make_shapes(
    n: int, *, size: int = 16, seed: int = 0, classes: tuple[str, ...] = SHAPE_CLASSES
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate ``n`` shape images with their labels and object masks.

    Each image is one object of a random class at a random position, scale and rotation, in a colour
    far enough from a noisy, faintly striped background that the class is always recognisable. The
    same ``(n, size, seed)`` gives the same arrays on every machine (numpy's PCG64 is portable), and a
    set is a prefix of every larger one: ``make_shapes(100)`` is the first 100 images of
    ``make_shapes(500)``. Images come in chunks of :data:`SHAPES_CHUNK`, each from its own stream
    seeded by ``(seed, chunk)``, so "held-out image 3" is the same picture whatever ``n`` is asked.

    Returns:
        images ``(n, size, size, 3)`` uint8, labels ``(n,)`` int64, masks ``(n, size, size)`` bool.
    """
    unknown = sorted(set(classes) - set(SHAPE_CLASSES))
    if unknown:
        raise DatasetError(f"Unknown shape class(es) {unknown}; choose from {list(SHAPE_CLASSES)}.")
    if size < 8:
        raise DatasetError(f"Shapes need at least 8x8 pixels; got {size}.")
    chunks = [
        _shapes_chunk(np.random.default_rng([seed, c]), SHAPES_CHUNK, size, classes)
        for c in range(-(-n // SHAPES_CHUNK))
    ]
    if not chunks:
        return (
            np.zeros((0, size, size, 3), np.uint8),
            np.zeros(0, np.int64),
            np.zeros((0, size, size), bool),
        )
    images, labels, masks = (np.concatenate(parts)[:n] for parts in zip(*chunks))
    return images, labels, masks


def _shapes_chunk(
    rng: np.random.Generator, n: int, size: int, classes: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` shape images from one random stream (see :func:`make_shapes`)."""
    labels = rng.integers(0, len(classes), n)
    # Object: radius 28-45% of the image, centre kept inside so that most of it is visible.
    radius = rng.uniform(0.28, 0.45, n) * size
    cx = rng.uniform(radius, size - radius)
    cy = rng.uniform(radius, size - radius)
    angle = rng.uniform(0, 2 * math.pi, n)

    # 2x supersampling gives anti-aliased edges; the mask is the pixels at least half covered.
    ss = 2
    grid = (np.arange(size * ss) + 0.5) / ss
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    dx = (gx[None] - cx[:, None, None]) / radius[:, None, None]
    dy = (gy[None] - cy[:, None, None]) / radius[:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    cover = np.zeros_like(u, dtype=bool)
    for k, name in enumerate(classes):
        sel = labels == k
        if sel.any():
            cover[sel] = _shape(name, u[sel], v[sel])
    alpha = cover.reshape(n, size, ss, size, ss).mean(axis=(2, 4))
    masks = alpha >= 0.5

    # Background: a base colour, smooth noise, and faint stripes at a random angle (texture that a
    # classifier must learn to ignore).
    base = rng.uniform(0.15, 0.85, (n, 1, 1, 3))
    noise = rng.normal(0.0, 1.0, (n, size + 2, size + 2, 3))
    noise = (noise[:, :-2, :-2] + noise[:, 1:-1, 1:-1] + noise[:, 2:, 2:] + noise[:, 1:-1, :-2]) / 4
    yy, xx = np.mgrid[0:size, 0:size]
    phase = rng.uniform(0, 2 * math.pi, n)[:, None, None]
    theta = rng.uniform(0, math.pi, n)[:, None, None]
    stripes = np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * (2 * math.pi / 4) + phase)
    background = base + 0.08 * noise + 0.05 * stripes[..., None]

    # Object colour: a random direction away from the background, at least 0.45 away in RGB.
    direction = rng.normal(0.0, 1.0, (n, 1, 1, 3))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True) + 1e-9
    colour = np.clip(base + direction * rng.uniform(0.45, 0.7, (n, 1, 1, 1)), 0.0, 1.0)
    shade = colour + 0.04 * rng.normal(0.0, 1.0, (n, size, size, 3))
    image = alpha[..., None] * shade + (1 - alpha[..., None]) * background
    image = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    return image, labels.astype(np.int64), masks


def _shape(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of shape ``name`` in its own unit frame (radius 1, rotated)."""
    r = np.hypot(u, v)
    box = np.maximum(np.abs(u), np.abs(v))
    if name == "circle":
        return r <= 1.0
    if name == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if name == "square":
        return box <= 0.78
    if name == "frame":
        return (box <= 0.85) & (box >= 0.5)
    if name == "triangle":  # equilateral, inscribed in the unit circle: three half-planes
        inside = np.ones_like(u, dtype=bool)
        for a in (math.pi / 2, math.pi * 7 / 6, math.pi * 11 / 6):
            inside &= -(u * math.cos(a) + v * math.sin(a)) <= 0.5
        return inside
    if name == "cross":
        arm, length = 0.3, 0.95
        return ((np.abs(u) <= arm) & (np.abs(v) <= length)) | ((np.abs(v) <= arm) & (np.abs(u) <= length))
    raise DatasetError(f"Unknown shape {name!r}.")


def shapes(n_train: int = 2000, n_test: int = 500, *, size: int = 16, seed: int = 0) -> ImageDataset:
    """The shapes dataset: train and held-out sets from disjoint random streams of one seed."""
    x_tr, y_tr, m_tr = make_shapes(n_train, size=size, seed=seed * 2 + 0)
    x_te, y_te, m_te = make_shapes(n_test, size=size, seed=seed * 2 + 1)
    return ImageDataset(
        name="shapes",
        x_train=_nchw(x_tr),
        y_train=torch.from_numpy(y_tr),
        x_test=_nchw(x_te),
        y_test=torch.from_numpy(y_te),
        class_names=SHAPE_CLASSES,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        masks_train=torch.from_numpy(m_tr),
        masks_test=torch.from_numpy(m_te),
        description=DATASETS["shapes"],
    )


# --------------------------------------------------------------------------- digits


def digits(n_train: int = 1500, *, seed: int = 0) -> ImageDataset:
    """scikit-learn's 8x8 digits (bundled with scikit-learn), split at random by ``seed``."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.round(data.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # values 0..16
    labels = data.target.astype(np.int64)
    if not 0 < n_train < len(labels):
        raise DatasetError(
            f"digits has {len(labels)} images; n_train must be between 1 and {len(labels) - 1}."
        )
    perm = np.random.default_rng(seed).permutation(len(labels))
    tr, te = perm[:n_train], perm[n_train:]
    return ImageDataset(
        name="digits",
        x_train=torch.from_numpy(images[tr]),
        y_train=torch.from_numpy(labels[tr]),
        x_test=torch.from_numpy(images[te]),
        y_test=torch.from_numpy(labels[te]),
        class_names=tuple(str(d) for d in range(10)),
        mean=(0.3,),
        std=(0.4,),
        description=DATASETS["digits"],
    )


# --------------------------------------------------------------------------- torchvision sets


def default_data_root() -> Path:
    """``$RESVIZ_DATA_DIR``, else ``~/.cache/resviz/data``."""
    env = os.environ.get("RESVIZ_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "resviz" / "data"


def _torchvision_set(name: str, root: Path, download: bool, timeout: float):
    from torchvision import datasets as tvd

    cls = {"cifar10": tvd.CIFAR10, "mnist": tvd.MNIST}[name]
    try:
        return cls(str(root), train=True), cls(str(root), train=False)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted. You can use download=True"
        if not download:
            raise DatasetError(
                f"{name} is not on disk under {root}; allow the download or place the files there."
            ) from exc
    try:
        # Fetch the archives ourselves, with a timeout on this request only (socket's process-wide
        # default would change every session's sockets); torchvision then finds them, checks their
        # MD5 and extracts them without going to the network.
        for url, dest, md5 in _archives(cls, root):
            _fetch(url, dest, md5, timeout)
        return cls(str(root), train=True, download=True), cls(str(root), train=False, download=True)
    except Exception as exc:  # URLError, timeouts, a half-written archive: all mean "not available"
        raise DatasetError(
            f"{name} could not be downloaded ({type(exc).__name__}); check the internet connection "
            f"or place the files under {root}."
        ) from exc


def _archives(cls, root: Path) -> list[tuple[list[str], Path, str]]:
    """(candidate URLs, destination, MD5) of each archive torchvision's ``cls`` downloads."""
    if hasattr(cls, "tgz_md5"):  # CIFAR-10: one archive in the root
        return [([cls.url], root / cls.filename, cls.tgz_md5)]
    raw = root / cls.__name__ / "raw"  # MNIST: four archives, with mirrors
    return [([m + f for m in cls.mirrors], raw / f, md5) for f, md5 in cls.resources]


def _fetch(urls: list[str], dest: Path, md5: str, timeout: float) -> None:
    """Download the first URL that answers to ``dest`` (atomically), unless a good copy is there."""
    if dest.is_file() and _md5(dest) == md5:
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    error: Exception | None = None
    for url in urls:
        fd, tmp = tempfile.mkstemp(prefix=".part-", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                shutil.copyfileobj(response, out)
            if _md5(Path(tmp)) != md5:
                raise DatasetError(f"{dest.name} arrived damaged (checksum mismatch).")
            os.replace(tmp, dest)
            return
        except Exception as exc:  # try the next mirror
            error = exc
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    assert error is not None
    raise error


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def torchvision_dataset(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    timeout: float = 10.0,
    n_train: int | None = None,
    n_test: int | None = None,
) -> ImageDataset:
    """CIFAR-10 or MNIST from ``root`` (downloaded there first only if ``download``)."""
    root = Path(root).expanduser() if root else default_data_root()
    train, test = _torchvision_set(name, root, download, timeout)

    def arrays(ds, n):
        x = np.asarray(ds.data)[:n]  # CIFAR: (N, 32, 32, 3) uint8; MNIST: (N, 28, 28) uint8 tensor
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.as_tensor(np.asarray(ds.targets)[:n])

    x_tr, y_tr = arrays(train, n_train)
    x_te, y_te = arrays(test, n_test)
    if name == "cifar10":
        mean, std, classes = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), CIFAR10_CLASSES
    else:
        mean, std, classes = (0.1307,), (0.3081,), tuple(str(d) for d in range(10))
    return ImageDataset(
        name, x_tr, y_tr.long(), x_te, y_te.long(), classes, mean, std, description=DATASETS[name]
    )


# --------------------------------------------------------------------------- a folder of images


FOLDER_SCAN_SECONDS = 120.0  # a folder that takes longer to read is refused (a whole disk, a slow mount)
FOLDER_SCAN_ENTRIES = 10 * MAX_FOLDER_IMAGES  # directory entries looked at, images or not
_FOLDER_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def check_inside(root: str | os.PathLike[str], allowed: str | os.PathLike[str]) -> Path:
    """``root`` resolved (symlinks followed), refused unless it lies inside ``allowed``.

    The refusal is the same sentence whether ``root`` exists or not, so the field cannot be used
    to probe the server's file system.

    Raises:
        DatasetError: ``root`` is outside ``allowed`` once resolved.
    """
    base = Path(allowed).expanduser().resolve()
    path = Path(root).expanduser()
    if not path.is_absolute():
        path = base / path
    path = path.resolve()
    if not path.is_relative_to(base):
        raise DatasetError(f"Training folders must be inside {base}; give a sub-folder of it.")
    return path


def image_folder(
    root: str | os.PathLike[str],
    *,
    size: int = 32,
    test_fraction: float = 0.2,
    seed: int = 0,
    allowed: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
    max_images: int = MAX_FOLDER_IMAGES,
    max_seconds: float = FOLDER_SCAN_SECONDS,
) -> ImageDataset:
    """A user's images, one sub-folder per class, resized and centre-cropped to ``size``.

    Every file is decoded by :func:`resviz.images.load_file`, with an upload's rules (pixel limit,
    damaged files refused in a sentence); files it refuses are skipped and counted. The scan is
    bounded: at most ``max_images`` images and :data:`FOLDER_SCAN_ENTRIES` directory entries,
    ``max_seconds`` in all, and ``stop`` is asked between files.

    Args:
        allowed: when given, ``root`` must resolve (after symlinks) inside it, and so must each class.
        progress: called with (files done, files found) while decoding.
        stop: returns True to abandon the load (raises DatasetError).

    Raises:
        DatasetError: not a folder, outside ``allowed``, too many files, too slow, stopped, or too few images.
    """
    import time

    from resviz.errors import ImageError
    from resviz.images import load_file

    path = check_inside(root, allowed) if allowed is not None else Path(root).expanduser().resolve()
    if not path.is_dir():
        raise DatasetError(f"{path} is not a folder; give a folder with one sub-folder per class.")
    deadline = time.monotonic() + max_seconds
    stop = stop or (lambda: False)
    entries = 0

    def check(where: Path) -> None:
        if stop():
            raise DatasetError("Stopped while reading the image folder.")
        if entries > FOLDER_SCAN_ENTRIES or time.monotonic() > deadline:
            raise DatasetError(
                f"{path} is too large to scan (over {FOLDER_SCAN_ENTRIES:,} entries or "
                f"{max_seconds:.0f} s, at {where}); give a folder of at most {max_images:,} images."
            )

    classes, files = [], []
    try:
        subdirs = sorted(
            (d for d in os.scandir(path) if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name
        )
    except OSError as exc:
        raise DatasetError(f"{path} cannot be read ({exc.strerror or exc}).") from exc
    for sub in subdirs:
        sub_path = Path(sub.path).resolve()
        if not sub_path.is_relative_to(path):  # a symlinked class folder pointing elsewhere
            continue
        label, before = len(classes), len(files)
        for dirpath, dirnames, filenames in os.walk(sub_path):  # os.walk does not follow links
            dirnames.sort()
            entries += len(dirnames) + len(filenames)
            check(Path(dirpath))
            for name in sorted(filenames):
                if name.lower().endswith(_FOLDER_SUFFIXES):
                    files.append((Path(dirpath) / name, label))
            if len(files) > max_images:
                raise DatasetError(
                    f"{path} holds over {max_images:,} images, more than the training lab takes."
                )
        if len(files) > before:  # a class is a sub-folder with images in it
            classes.append(sub.name)
    if len(classes) < 2:
        raise DatasetError(f"{path} needs at least two class sub-folders with images; found {len(classes)}.")
    view = Preprocessing(size, size, (0.5,) * 3, (0.25,) * 3)
    images, labels, skipped = [], [], []
    for done, (file, label) in enumerate(files):
        check(file)
        if progress is not None:
            progress(done, len(files))
        try:
            if file.is_symlink() and not file.resolve().is_relative_to(path):
                raise ImageError(f"{file.name} links outside the folder.")
            images.append(view.array([load_file(file).image])[0])
        except ImageError as exc:
            skipped.append(str(exc))
            continue  # unusable files are skipped (and counted) rather than failing the whole folder
        labels.append(label)
    if len(images) < 4:
        why = f" ({skipped[0]})" if skipped else ""
        raise DatasetError(f"{path} has fewer than 4 readable images{why}.")
    x = torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy())
    y = torch.tensor(labels, dtype=torch.int64)
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(y)))
    n_test = max(1, round(len(y) * test_fraction))
    te, tr = perm[:n_test], perm[n_test:]
    mean = tuple(float(m) for m in x.float().div(255).mean((0, 2, 3)))
    std = tuple(max(float(s), 1e-3) for s in x.float().div(255).std((0, 2, 3)))
    note = f"; {len(skipped)} file(s) skipped, e.g. {skipped[0]}" if skipped else ""
    return ImageDataset(
        "folder",
        x[tr],
        y[tr],
        x[te],
        y[te],
        tuple(classes),
        mean,
        std,
        description=f"images from {path}{note}",
    )


# --------------------------------------------------------------------------- one entry point


def load_dataset(
    name: str,
    *,
    seed: int = 0,
    size: int | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> ImageDataset:
    """Load dataset ``name`` (one of :data:`DATASETS`).

    Args:
        name: ``shapes``, ``digits``, ``cifar10``, ``mnist`` or ``folder`` (with ``root``).
        seed: the shapes' generator seed and the digits/folder split.
        size: image side for ``shapes`` (16 by default) and ``folder`` (32).
        n_train: training images (shapes: 2000; digits: 1500; torchvision sets: all).
        n_test: held-out images (shapes: 500; torchvision sets: all).
        root: the folder for ``folder``, the data root for ``cifar10``/``mnist``.
        download: let torchvision download CIFAR-10/MNIST when absent (short timeout).

    Raises:
        DatasetError: an unknown name, or a dataset that is not available here.
    """
    if name == "shapes":
        return shapes(n_train or 2000, n_test or 500, size=size or 16, seed=seed)
    if name == "digits":
        return digits(n_train or 1500, seed=seed)
    if name in ("cifar10", "mnist"):
        return torchvision_dataset(name, root=root, download=download, n_train=n_train, n_test=n_test)
    if name == "folder":
        if root is None:
            raise DatasetError("Give the folder of images (one sub-folder per class).")
        return image_folder(root, size=size or 32, seed=seed)
    raise DatasetError(f"Unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.")


def _nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
