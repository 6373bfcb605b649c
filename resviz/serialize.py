"""Analysis results to JSON and back: the bundled demo's precomputed figures (no pickle).

Every analysis returns a frozen dataclass of numpy arrays, numbers, strings and other such
dataclasses; :func:`dumps` writes one as JSON with its class named, :func:`loads` rebuilds it. Only
classes under ``resviz.`` are rebuilt, and only through their constructors, so a file can describe
data but never run code.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
from typing import Any

import numpy as np

from resviz.errors import ResvizError


class SerializeError(ResvizError, ValueError):
    """A file that does not describe a resviz result."""


def encode(obj: Any) -> Any:
    """``obj`` as JSON-ready data (dataclasses, arrays, tuples, NaN and infinities kept)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        cls = type(obj)
        fields = {f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        return {"__dataclass__": f"{cls.__module__}:{cls.__qualname__}", **fields}
    if isinstance(obj, np.ndarray):
        return {
            "__ndarray__": [_number(v) for v in obj.ravel().tolist()],
            "dtype": str(obj.dtype),
            "shape": obj.shape,
        }
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v) for v in obj]}
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): encode(v) for k, v in obj.items()}
    if isinstance(obj, np.generic):
        return encode(obj.item())
    if isinstance(obj, float):
        return _number(obj)
    return obj


def _number(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return {"__float__": repr(v)}  # nan, inf, -inf
    return v


def decode(data: Any) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if "__float__" in data:
        return float(data["__float__"])
    if "__tuple__" in data:
        return tuple(decode(v) for v in data["__tuple__"])
    if "__ndarray__" in data:
        values = [decode(v) for v in data["__ndarray__"]]
        return np.array(values, dtype=data["dtype"]).reshape(data["shape"])
    if "__dataclass__" in data:
        cls = _resviz_class(str(data["__dataclass__"]))
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        return cls(**{k: decode(v) for k, v in data.items() if k in names})
    return {k: decode(v) for k, v in data.items()}


def _resviz_class(path: str) -> type:
    module, _, name = path.partition(":")
    if not module.startswith("resviz.") or not name or "." in name:
        raise SerializeError(f"{path!r} is not a resviz result class.")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise SerializeError(f"{path!r} is not a resviz result class.") from exc
    if not dataclasses.is_dataclass(cls):
        raise SerializeError(f"{path!r} is not a resviz result class.")
    return cls


def dumps(obj: Any) -> str:
    return json.dumps(encode(obj), separators=(",", ":"))


def loads(text: str) -> Any:
    try:
        return decode(json.loads(text))
    except (ValueError, TypeError, KeyError) as exc:
        raise SerializeError(f"Not a resviz result ({exc}).") from exc
