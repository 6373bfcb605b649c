"""Axis settings shared by the figure builders: log axes whose every tick label is a whole number.

Left to itself, plotly labels a log axis spanning a decade or two with bare digits between the
powers of ten ("2 3 4 5 ... 9" in a smaller font), which reads as noise. :func:`log_axis` picks the
ticks from the data instead: powers of ten when the data span several decades, else 1-2-5 (or
every digit) times a power of ten, else plain evenly spaced values; every tick gets its full value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

MAX_TICKS = 8


def log_axis(
    values: Iterable[float | None] | np.ndarray,
    *,
    fmt: Callable[[float], str] | None = None,
    max_ticks: int = MAX_TICKS,
) -> dict[str, object]:
    """Properties for ``fig.update_yaxes(**...)`` (or ``xaxes``): a log axis with labelled ticks.

    Args:
        values: the numbers the axis shows; None, NaN, infinities and values <= 0 are ignored.
        fmt: tick label of a value (default: :func:`tick_label`).
        max_ticks: at most this many ticks.

    Returns:
        ``{"type": "log"}`` plus ``tickvals`` and ``ticktext`` when there is something to show.
    """
    arr = np.asarray([np.nan if v is None else v for v in np.ravel(np.asarray(values, dtype=object))], float)
    arr = arr[np.isfinite(arr) & (arr > 0)]
    if arr.size == 0:
        return {"type": "log"}
    ticks = log_ticks(float(arr.min()), float(arr.max()), max_ticks=max_ticks)
    if fmt is not None:
        text = [fmt(t) for t in ticks]
    else:  # one notation per axis: powers of ten throughout if any tick needs one
        power = any(not _plain(t) for t in ticks)
        text = [tick_label(t, power=power) for t in ticks]
    return {"type": "log", "tickmode": "array", "tickvals": ticks, "ticktext": text}


def log_ticks(lo: float, hi: float, *, max_ticks: int = MAX_TICKS) -> list[float]:
    """Tick values for a log axis over ``[lo, hi]`` (both > 0): at least two, at most ``max_ticks``.

    The first of powers of ten, 1-2-5, 1-2-3-5 and every digit that puts three ticks on the data
    and leaves neither end bare (over a quarter of the span without a tick) wins; else evenly
    spaced round values.
    """
    lo, hi = min(lo, hi), max(lo, hi)
    # The visible range is a little wider than the data (plotly pads it): ticks just outside count.
    a, b = lo / 1.15, hi * 1.15
    span = math.log10(b / a)
    first, last = math.floor(math.log10(a)), math.ceil(math.log10(b))
    for mantissas in ((1,), (1, 2, 5), (1, 2, 3, 5), tuple(range(1, 10))):
        ticks = [_round(m * 10.0**e) for e in range(first, last + 1) for m in mantissas]
        ticks = [t for t in ticks if a <= t <= b]
        if mantissas == (1,) and len(ticks) > max_ticks:  # many decades: every k-th power of ten
            return ticks[:: math.ceil(len(ticks) / max_ticks)]
        if len(ticks) < 3 or len(ticks) > max_ticks:
            continue
        if max(math.log10(ticks[0] / lo), math.log10(hi / ticks[-1])) <= 0.25 * span:
            return ticks
    return _linear_ticks(lo, hi)


def _linear_ticks(lo: float, hi: float) -> list[float]:
    """About four evenly spaced round values within ``[lo, hi]`` (a range narrower than 1 to 2)."""
    if hi <= lo:
        return [_round(lo)]
    raw = (hi - lo) / 4
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    return [_round(start + i * step) for i in range(int((hi - start) / step + 1e-9) + 1)]


def _round(v: float) -> float:
    """``v`` to 12 significant digits: 3 * 0.1 is 0.3, not 0.30000000000000004."""
    return float(f"{v:.12g}")


def _exponent(v: float) -> int:
    return math.floor(math.log10(abs(v)) + 1e-9)


def _plain(v: float) -> bool:
    """Whether ``v`` reads well written out: ``0.002`` to ``50000``."""
    return v == 0 or -3 <= _exponent(v) <= 4


def tick_label(v: float, *, power: bool | None = None) -> str:
    """A number as people write it: ``0.02``, ``500``, ``2×10⁻⁵`` (plotly renders ``<sup>``).

    Args:
        power: write ``m×10^e`` (1 and 10 stay as they are); default: only where ``v`` is not plain.
    """
    if power is None:
        power = not _plain(v)
    e = _exponent(v) if v else 0
    if not power or e in (0, 1):
        return f"{v:.4g}"
    m = _round(v / 10.0**e)
    exp = f"10<sup>{e}</sup>"
    return exp if m == 1 else f"{m:g}×{exp}"


def si_label(v: float) -> str:
    """A count with an SI suffix and at most three significant digits: ``11.7M``, ``1.81G``, ``50``."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.3g}"
