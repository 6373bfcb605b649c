"""Where tensors live: CUDA when present, else Apple MPS, else the CPU; the user can override."""

from __future__ import annotations

import ctypes
import os
import platform
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


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without parameters)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def describe_device(device: torch.device | str) -> str:
    """A label for people: ``"NVIDIA H100 80GB HBM3 (cuda:0)"``, ``"CPU (2 threads)"``."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"{torch.cuda.get_device_name(index)} (cuda:{index})"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'' if threads == 1 else 's'})"


# glibc's mallopt parameters (malloc.h) and the values tune_cpu_allocator sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest: blocks up to this size come from the heap
_TRIM_THRESHOLD = 128 * 1024 * 1024  # freed memory kept for reuse before it goes back to the OS
_allocator_tuned: bool | None = None


def tune_cpu_allocator() -> bool:
    """Let glibc's malloc keep freed activation memory for the next pass instead of returning it.

    By default glibc hands large freed blocks back to the OS, so every pass that keeps activations
    alive a little longer (hooks capturing a layer, gradients asked of intermediate tensors) pays
    for fresh, zero-filled pages. Keeping them makes hooked passes cost close to a bare forward
    (bench/bench_features.py prints both ways; the README quotes the figures). The price: up to
    128 MB of freed memory stays with the process.

    Linux with glibc only (elsewhere, or with ``RESVIZ_MALLOC_TUNING=0``, nothing changes). Called
    once per process by :func:`configure_cpu_threads`; returns whether the settings are in force.
    """
    global _allocator_tuned
    if _allocator_tuned is not None:
        return _allocator_tuned
    _allocator_tuned = False
    if os.environ.get("RESVIZ_MALLOC_TUNING", "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success. The mmap threshold first: a fixed trim threshold alone turns off
    # glibc's adaptive mmap threshold and sends every large block to a fresh mapping (slower).
    _allocator_tuned = bool(
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )
    return _allocator_tuned


def configure_cpu_threads(threads: int | None = None) -> int:
    """Use the cores this process may run on (cgroup/affinity aware), unless told otherwise.

    Also tunes the C allocator for repeated passes (:func:`tune_cpu_allocator`).
    """
    tune_cpu_allocator()
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


REPLICA_MAX_BYTES = 64 * 2**20  # parameters + buffers; ResNet-18 (45 MB) is copied, ResNet-50 (98 MB) not
REPLICAS_ENV = "RESVIZ_REPLICAS"


def replica_count(model: torch.nn.Module) -> int:
    """How many copies of a shared ``model`` (:class:`resviz.hooks.ReplicaPool`) to keep: 1 unless
    ``RESVIZ_REPLICAS=n`` asks for more.

    Off by default: measured with 8 sessions on 2 cores (bench/bench_sessions.py), the copies
    gained nothing, since what serializes the sessions is Python (plotly figures, Streamlit's own
    work) under the GIL, not the model's lock. (An earlier hazard is gone: summaries and Score-CAM's
    conv-BN folding used torch.fx, whose tracer patches ``nn.Module.__call__`` process-wide.)
    Even when asked for, one model (no copy) on an accelerator, which runs one stream at a time,
    and for a large model, whose operations keep every core busy through torch's intra-op threads
    and whose copies would cost memory.
    """
    asked = int(os.environ.get(REPLICAS_ENV) or 1)
    if asked <= 1 or model_device(model).type != "cpu":
        return 1
    size = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    return 1 if size > REPLICA_MAX_BYTES else min(asked, 8)


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
