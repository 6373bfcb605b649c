"""Exceptions a person can act on.

Every error resviz raises on bad input is a :class:`ResvizError` whose message is one sentence
that says what was wrong and what to do. Pages show it with ``st.error``; the CLI prints it and
exits with status 2. Anything else escaping resviz is a bug.
"""

from __future__ import annotations


class ResvizError(Exception):
    """Base class: bad input or an unavailable resource, explained in one sentence."""


class UnknownModelError(ResvizError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(ResvizError, ValueError):
    """An impossible combination of architecture knobs."""


class LayerNotFoundError(ResvizError, KeyError):
    """A dotted layer name that the model does not have."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class LayerNotUsedError(ResvizError, ValueError):
    """A layer the model has but never calls in its forward pass (a plain block's shortcut tap)."""

    @classmethod
    def for_layer(cls, name: str) -> LayerNotUsedError:
        """The error for layer ``name``, with the one sentence every analysis uses."""
        return cls(
            f"Layer {name!r} is not used by this model's forward pass "
            "(a plain block has no shortcut, for example); choose another layer."
        )


class ImageError(ResvizError, ValueError):
    """An image file that cannot be used (not an image, truncated, too large...)."""


class CheckpointError(ResvizError, ValueError):
    """A checkpoint that cannot be loaded into the chosen model."""


class WeightsUnavailableError(ResvizError):
    """Pretrained weights that are neither cached nor downloadable right now."""


class DeviceError(ResvizError, RuntimeError):
    """A device that is not available, or ran out of memory."""
