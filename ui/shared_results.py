"""Results every session shares (``st.cache_*``) that a page and the warm-up both ask for.

They live here rather than in the page scripts because a page script cannot be imported: the
warm-up (:mod:`ui.warmup`) fills these very caches while the first visitor reads Home, and a page
that asks for a result still being computed waits for it instead of computing it twice.
"""

from __future__ import annotations

import streamlit as st

REFERENCE_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
PEER_MIN_SIZE = 64  # AlexNet and GoogLeNet cannot run on a smaller input


def default_input_size(config, meta=None) -> int:
    """Architecture's first input size: a run's own image size (its metadata's crop), else the
    size the variant was designed for."""
    crop = ((meta or {}).get("preprocessing") or {}).get("crop")
    if crop:
        return int(crop)
    return 224 if config.stem == "imagenet" else 32


def run_twin(config, name: str):
    """A training run's counterpart as Architecture compares it: ``(its configuration, its label)``."""
    from resviz.models import twin_name

    twin = config.replace(skip=not config.skip, no_skip_blocks=frozenset())
    return twin, f"{twin_name(name)}, as in this run"


@st.cache_data(show_spinner="Counting parameters and multiply-accumulates…", max_entries=64)
def summary_of(config, input_size: int, label: str):
    """:func:`resviz.analysis.summary.summarize` of one configuration at one input size."""
    from resviz.analysis.summary import summarize

    return summarize(config, input_size, label=label)


@st.cache_data(show_spinner="Measuring the other architectures…", max_entries=8)
def reference_summaries(input_size: int):
    """The ImageNet ResNets and their peers (VGG, GoogLeNet, ...), counted at one input size."""
    from resviz.analysis.summary import COMPARISON_MODELS, summarize, summarize_torchvision

    ours = [summarize(name, input_size) for name in REFERENCE_RESNETS]
    return ours + [summarize_torchvision(name, input_size) for name in COMPARISON_MODELS]


@st.cache_data(show_spinner=False, max_entries=64)
def twin_gradient_profile(twins, batch, device: str, split: bool):
    """Gradient Flow's profile of two seed-built twins on one batch."""
    from resviz.analysis.gradients import twin_profile
    from resviz.device import configure_cpu_threads

    configure_cpu_threads()
    return twin_profile(twins, batch, device=device, split=split)
