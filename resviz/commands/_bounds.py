"""Every number and path on the command line has a bound, checked before any work starts.

argparse ``type=`` callables that raise :class:`BoundError`, a :class:`~resviz.errors.ResvizError`
that argparse does not catch: it leaves ``parse_args`` and the CLI prints its one sentence and exits
2, before a model is loaded or a dataset read. Each maximum is stated in the refusal, so a user
knows what would be accepted. (``cli`` skips modules whose name starts with ``_``: this one is not
a subcommand.)
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from pathlib import Path

from resviz.errors import ResvizError

# Stated maxima, each far above what the analyses need and far below what takes the machine down.
MAX_IMAGES = 10_000  # held-out images an analysis evaluates
MAX_GRID = 201  # landscape points a side: 40,401 evaluations
MAX_DRAWS = 1_000  # random draws (lesion), sampled paths (paths)
MAX_STEPS = 1_000  # deletion / insertion steps (faithfulness)
MAX_BATCH = 4_096  # images per forward pass (training's global batch: MAX_TRAIN_BATCH)
MAX_TRAIN_BATCH = 65_536
MAX_TRAIN_STEPS = 10_000_000
MAX_THREADS = 1_024
MAX_SIDE = 4_096  # pixels of an input's side
MAX_MB = 1_048_576.0  # 1 TB: a memory budget above this is a typo


class BoundError(ResvizError):
    """A command-line value outside its bound. Not a ValueError: argparse must not swallow it."""


def count(what: str, lo: int = 1, hi: int = MAX_IMAGES) -> Callable[[str], int]:
    """A whole number in ``[lo, hi]``; ``1e9`` is read as the number it writes, then bounded."""

    def parse(text: str) -> int:
        try:
            value = float(text)
        except ValueError:
            raise BoundError(f"{what} must be a whole number, not {text!r}.") from None
        if not math.isfinite(value) or value != int(value):
            raise BoundError(f"{what} must be a whole number, not {text!r}.")
        if value < lo:
            raise BoundError(f"{what} must be at least {lo:,}, not {text}.")
        if value > hi:
            raise BoundError(f"{what} must be at most {hi:,}, not {text}.")
        return int(value)

    return parse


def real(what: str, lo: float, hi: float, *, above_lo: bool = False) -> Callable[[str], float]:
    """A finite number in ``[lo, hi]`` (or ``(lo, hi]`` with ``above_lo``); nan and inf are refused."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise BoundError(f"{what} must be a number, not {text!r}.") from None
        low_ok = value > lo if above_lo else value >= lo
        if not math.isfinite(value) or not low_ok or value > hi:
            side = "above" if above_lo else "at least"
            raise BoundError(f"{what} must be {side} {_num(lo)} and at most {_num(hi)}, not {text}.")
        return value

    return parse


def _num(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:g}"


def output_file(
    suffix: str | None = None, *, stdout: bool = False, parents: bool = False
) -> Callable[[str], str]:
    """A file this process can create or overwrite, probed now rather than after the work.

    Args:
        suffix: appended when missing (``np.savez`` would add ``.npz`` itself, and the message
            would then name a file that was not written).
        stdout: ``-`` means standard output.
        parents: the command creates missing folders itself: check the nearest one that exists.
    """

    def parse(text: str) -> str:
        if stdout and text == "-":
            return text
        path = Path(text).expanduser()
        if path.is_dir():  # before the suffix: "--npz DIR" once wrote DIR.npz while saying DIR
            raise BoundError(f"Cannot write {path}: it is a folder; give a file name.")
        if suffix and path.suffix != suffix:
            path = path.with_name(path.name + suffix)
        check_writable_file(path, parents=parents)
        return str(path)

    return parse


def check_writable_file(path: Path, *, parents: bool = False) -> None:
    """Raise BoundError unless ``path`` is a file that can be written (tried, then undone)."""
    if path.is_dir():
        raise BoundError(f"Cannot write {path}: it is a folder; give a file name.")
    if parents and not path.parent.exists():
        folder = next(p for p in path.parents if p.exists())
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise BoundError(f"Cannot write {path}: {folder} is not a folder it may create in.")
        return
    existed = path.exists()
    try:
        # Open for append: creates a missing file, never truncates an existing one. /proc, a
        # read-only mount or a missing folder fail here, as the real write would later.
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise BoundError(f"Cannot write {path}: {exc.strerror or exc}.") from None
    if not existed:
        path.unlink(missing_ok=True)


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def name(what: str) -> Callable[[str], str]:
    """A plain name (letters, digits, ``_ . -``), never a path: it becomes part of a folder name."""

    def parse(text: str) -> str:
        if not _NAME.fullmatch(text) or ".." in text:
            raise BoundError(
                f"{what} is a name of up to 64 letters, digits, '_', '.' or '-' (not a path), not {text!r}."
            )
        return text

    return parse


def seed_pair(text: str) -> tuple[int, int]:
    """Two different whole numbers like ``0,1``: two equal seeds give the same direction twice."""
    try:
        a, b = (int(s) for s in text.split(","))
    except ValueError:
        raise BoundError(f"--seeds takes two whole numbers like 0,1, not {text!r}.") from None
    if a == b:
        raise BoundError(f"The two --seeds must differ (both are {a}: the same direction twice).")
    return a, b


def threads(text: str) -> int:
    """CPU threads: at least 1, at most :data:`MAX_THREADS`."""
    return count("--threads", 1, MAX_THREADS)(text)


def available_bytes() -> int | None:
    """Memory the machine can still give (``MemAvailable``), or None where that is unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(need: int, what: str) -> None:
    """Refuse, in one sentence, work whose estimated memory ``need`` exceeds what the machine has.

    Raises:
        resviz.errors.ResvizError: the estimate is over the available memory.
    """
    from resviz.errors import ResvizError

    have = available_bytes()
    if have is not None and need > have:
        raise ResvizError(
            f"{what} needs about {need / 2**30:.1f} GiB of memory and this machine has "
            f"{have / 2**30:.1f} GiB free; ask for less."
        )
