"""resviz: the Streamlit entry point. Page config, navigation, the shared sidebar; nothing else.

Heavy modules (torch, torchvision, captum) are imported by the pages that need them, after their
first text is drawn, so the Home page appears before torch has loaded.
"""

import streamlit as st

from ui.models import render_device_picker, render_model_picker

st.set_page_config(
    page_title="resviz: residual networks, visualized", page_icon=":material/alt_route:", layout="wide"
)

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

page = st.navigation(PAGES)
render_model_picker()
page.run()
render_device_picker()
