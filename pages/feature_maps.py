"""Placeholder until its issue lands; replaced by the real page."""

import streamlit as st

st.title("feature_maps")
st.info("This page is being built.")
