"""Analyses: each returns frozen dataclasses of CPU numpy arrays (no figures, no streamlit)."""
