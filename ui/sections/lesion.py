"""Why it works: the lesion section (being built)."""

import streamlit as st


def render() -> None:
    st.info("This section is being built.")
