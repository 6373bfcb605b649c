"""Why it works: the explanations of skip connections that later papers measured, on our own models.

Each tab is a section module under :mod:`ui.sections`: the common story against the measurement,
the lesion study and paths (Veit et al. 2016), the loss landscape (Li et al. 2018), shattered
gradients (Balduzzi et al. 2017) and the effective receptive field (Luo et al. 2016).
"""

from ui.shell import ensure_entry_point

ensure_entry_point()

import streamlit as st

from ui.sections import erf, landscape, lesion, paths, shattered, story

SECTIONS = {
    "The story and the measurement": story,
    "Lesion study": lesion,
    "Paths": paths,
    "Loss landscape": landscape,
    "Shattered gradients": shattered,
    "Receptive field": erf,
}

st.title("Why it works")
st.caption(
    "Skip connections make very deep networks trainable. Why? Later papers tested the explanations; "
    "each tab repeats one of their measurements on the sidebar's model and its plain twin."
)
from contextlib import suppress

from resviz.errors import ResvizError
from ui.models import current_model, show_twin_warning

with suppress(ResvizError):  # each tab says what is wrong with the model where it uses it
    show_twin_warning(current_model())  # every tab compares the model with its twin
for tab, section in zip(st.tabs(list(SECTIONS)), SECTIONS.values()):
    with tab:
        section.render()
