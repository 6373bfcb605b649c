"""Sections of the "Why it works" page: one module per explanation, each with a ``render()``.

A section draws its explanation, its widgets (keys under its own prefix in :mod:`ui.state`), a
``resviz`` call, its figures and their downloads. The page (``pages/why_it_works.py``) only lays them
out in tabs.
"""
