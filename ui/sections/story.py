"""Why it works: the story section (being built)."""

import streamlit as st


def render() -> None:
    st.info("This section is being built.")
