"""Placeholder until its issue lands; replaced by the real page."""

import streamlit as st

st.title("training_lab")
st.info("This page is being built.")
