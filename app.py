"""resviz: the Streamlit entry point. Page config, navigation, the shared sidebar; nothing else.

Heavy modules (torch, torchvision, captum) are imported by the pages that need them, after their
first text is drawn, so the Home page appears before torch has loaded.
"""

import faulthandler
import signal
from pathlib import Path

import streamlit as st

from ui import warmup
from ui.models import render_device_picker, render_model_picker
from ui.timing import script_timer

# A file served by the app itself: a ":material/...:" page icon makes every browser fetch it from
# fonts.gstatic.com (a failed request on each load offline). The st.Page icons below are fine:
# Streamlit bundles the Material Symbols font it draws the navigation with.
ICON = Path(__file__).parent / "ui" / "assets" / "favicon.png"

st.set_page_config(page_title="resviz: residual networks, visualized", page_icon=str(ICON), layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/architecture.py", title="Architecture", icon=":material/account_tree:"),
    st.Page("pages/feature_maps.py", title="Feature Maps", icon=":material/grid_view:"),
    st.Page("pages/gradient_flow.py", title="Gradient Flow", icon=":material/show_chart:"),
    st.Page("pages/attribution.py", title="Attribution", icon=":material/center_focus_strong:"),
    st.Page("pages/training_lab.py", title="Training Lab", icon=":material/model_training:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/history:"),
    st.Page("pages/why_it_works.py", title="Why it works", icon=":material/lightbulb:"),
]

# `kill -USR1 <server pid>` writes every thread's stack to the server's stderr (its log): what a
# browser test or benchmark step that times out prints, so that a hang can be read, not guessed.
# Registering again (each script run) replaces the same handler.
if hasattr(signal, "SIGUSR1"):
    faulthandler.register(signal.SIGUSR1, all_threads=True)

page = st.navigation(PAGES)
with script_timer(page.title):  # a no-op unless the browser benchmark asks for it
    render_model_picker()
    if page.title != "Home":  # Home imports no torch: it must appear before torch has loaded
        warmup.wait_for_imports()
    page.run()
    render_device_picker()
# Once per process, after the first page is drawn (its import of torch would slow that page down):
# torch, the default model and the first figures of each page, in the background.
warmup.start()
