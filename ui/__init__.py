"""Streamlit glue shared by the pages: session-state keys, cached models, shared widgets.

The only code besides ``pages/`` and ``app.py`` that imports streamlit. Analysis lives in resviz.
"""
