"""Why it works: the landscape section (being built)."""

import streamlit as st


def render() -> None:
    st.info("This section is being built.")
