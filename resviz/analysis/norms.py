"""Norms of many tensors at once, safe against float32 overflow and underflow.

Gradient norms of deep plain nets span 1e-30 to 1e30 (see the Gradient Flow page): a float32 sum of
squares loses them, while a float64 pass is slow on GPUs and missing on Apple's MPS.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def tensor_norms(tensors: Sequence[Tensor | None]) -> np.ndarray:
    """L2 norm of each tensor (NaN for None), ``(len,)`` float64, with one device-to-host copy in
    the usual case.

    Computed in float32 on the tensors' device (Apple's MPS has no float64) in one pass. Where that
    pass may have overflowed or underflowed while squaring (an infinite, zero or extreme result),
    the norm is taken again with each tensor divided by its largest magnitude first, the scale
    multiplied back in float64 on the CPU.
    """
    if not tensors:
        return np.zeros(0)
    present = [t.detach().float() for t in tensors if t is not None]
    values = np.zeros(0)
    if present:
        direct = torch.stack([torch.linalg.vector_norm(t) for t in present]).cpu().numpy()
        values = direct.astype(np.float64)
        redo = np.flatnonzero(~np.isfinite(direct) | (direct < _NORM_SAFE[0]) | (direct > _NORM_SAFE[1]))
        if redo.size:
            values[redo] = _scaled_norms([present[i] for i in redo])
    out = np.full(len(tensors), np.nan)
    out[[i for i, t in enumerate(tensors) if t is not None]] = values
    return out


# Outside this range a float32 sum of squares may have lost digits to overflow or underflow
# (squares under 1.2e-38 are subnormal: a billion of them stay under 1e-9 of a 1e-10 norm squared).
_NORM_SAFE = (1e-10, 1e15)


def _scaled_norms(tensors: Sequence[Tensor]) -> np.ndarray:
    """Overflow- and underflow-safe norms: ``max|t| * ||t / max|t|||``, the product in float64."""
    scales = torch.stack([t.abs().amax() if t.numel() else t.new_zeros(()) for t in tensors])
    tiny = torch.finfo(torch.float32).tiny
    unit = torch.stack([torch.linalg.vector_norm(t / s.clamp_min(tiny)) for t, s in zip(tensors, scales)])
    scale, unit_norm = torch.stack([scales, unit]).cpu().numpy().astype(np.float64)
    # An infinite or NaN entry makes the norm infinite or NaN: keep the scale as it is there.
    return np.where(np.isfinite(scale), scale * unit_norm, scale)
