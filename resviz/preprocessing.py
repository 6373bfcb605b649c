"""How an image becomes a network input: resize, center crop, normalize, following the model.

ImageNet models use their torchvision weights' own transforms (resize 256 or 232, crop 224); the
CIFAR family sees 32x32 with CIFAR-10 statistics. :meth:`Preprocessing.view` returns the image
exactly as the network sees it (before normalization), so pages can show that and not the upload.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

    from resviz.models.config import ResNetConfig


@dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side to ``resize``, center-crop ``crop``, normalize by ``mean``/``std``."""

    resize: int
    crop: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: int = 3  # 1: the image is converted to grayscale first

    def view(self, image: Image.Image) -> Image.Image:
        """The image as the network sees it: resized, cropped, in RGB or L mode."""
        image = image.convert("RGB" if self.channels == 3 else "L")
        w, h = image.size
        scale = self.resize / min(w, h)
        size = (max(self.crop, round(w * scale)), max(self.crop, round(h * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=None)
        left = (size[0] - self.crop) // 2
        top = (size[1] - self.crop) // 2
        return image.crop((left, top, left + self.crop, top + self.crop))

    def array(self, images: Sequence[Image.Image]) -> np.ndarray:
        """``(N, H, W, C)`` uint8 views of ``images``."""
        return np.stack([_hwc(np.asarray(self.view(im))) for im in images])

    def tensor(self, images: Sequence[Image.Image] | Image.Image) -> torch.Tensor:
        """A normalized batch ``(N, C, crop, crop)`` float32, on the CPU."""
        import torch

        if isinstance(images, Image.Image):
            images = [images]
        x = torch.from_numpy(self.array(images)).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (x - mean) / std

    def to_dict(self) -> dict[str, object]:
        return {
            "resize": self.resize,
            "crop": self.crop,
            "mean": list(self.mean),
            "std": list(self.std),
            "channels": self.channels,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Preprocessing:
        return cls(
            int(d["resize"]),
            int(d["crop"]),
            tuple(d["mean"]),
            tuple(d["std"]),  # type: ignore[arg-type]
            int(d.get("channels", 3)),
        )  # type: ignore[call-overload]


def _hwc(a: np.ndarray) -> np.ndarray:
    return a[:, :, None] if a.ndim == 2 else a


IMAGENET = Preprocessing(256, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CIFAR = Preprocessing(32, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def for_config(config: ResNetConfig) -> Preprocessing:
    """The default input pipeline for an untrained model of this config."""
    base = IMAGENET if config.stem == "imagenet" else CIFAR
    if config.in_channels == 3:
        return base
    return Preprocessing(
        base.resize,
        base.crop,
        (0.5,) * config.in_channels,
        (0.25,) * config.in_channels,
        channels=config.in_channels,
    )


def from_torchvision(weights: object) -> Preprocessing:
    """The preprocessing a torchvision ``WeightsEnum`` member was trained with."""
    t = weights.transforms()  # type: ignore[attr-defined]
    return Preprocessing(int(t.resize_size[0]), int(t.crop_size[0]), tuple(t.mean), tuple(t.std))
