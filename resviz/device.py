"""Where tensors live: CUDA when present, else Apple MPS, else the CPU; the user can override."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from resviz.errors import DeviceError

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def available_devices() -> list[str]:
    """Device kinds usable here, best first (always ends with ``"cpu"``)."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return [*found, "cpu"]


def resolve_device(preference: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` picks the best available device; a named one is checked to exist here."""
    pref = str(preference or "auto").lower()
    kind = pref.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise DeviceError(f"Unknown device {pref!r}; choose one of {', '.join(DEVICE_CHOICES)}.")
    available = available_devices()
    if kind == "auto":
        return torch.device(available[0])
    if kind not in available:
        raise DeviceError(
            f"The {kind.upper()} device is not available on this machine; available: {', '.join(available)}."
        )
    return torch.device(pref)


def describe_device(device: torch.device | str) -> str:
    """A label for people: ``"NVIDIA H100 80GB HBM3 (cuda:0)"``, ``"CPU (2 threads)"``."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"{torch.cuda.get_device_name(index)} (cuda:{index})"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({torch.get_num_threads()} threads)"


def configure_cpu_threads(threads: int | None = None) -> int:
    """Use the cores this process may run on (cgroup/affinity aware), unless told otherwise."""
    if threads is None:
        env = os.environ.get("RESVIZ_THREADS")
        if env:
            threads = int(env)
        else:
            try:
                threads = len(os.sched_getaffinity(0))
            except AttributeError:  # macOS, Windows
                threads = os.cpu_count() or 1
    threads = max(1, threads)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


_OOM = re.compile(r"out of memory", re.IGNORECASE)


@contextmanager
def oom_guard(what: str = "This computation") -> Iterator[None]:
    """Turn an accelerator out-of-memory error into a :class:`DeviceError` a person can act on."""
    try:
        yield
    except torch.OutOfMemoryError as exc:
        _free_cache()
        raise DeviceError(
            f"{what} ran out of GPU memory; try a smaller batch, a smaller input size or model, or the CPU."
        ) from exc
    except RuntimeError as exc:
        if not _OOM.search(str(exc)):
            raise
        _free_cache()
        raise DeviceError(
            f"{what} ran out of device memory; try a smaller batch, a smaller input size or model."
        ) from exc


def _free_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if getattr(torch, "mps", None) is not None and torch.backends.mps.is_available():
        torch.mps.empty_cache()
