"""resviz: see why skip connections work and what a ResNet looks at.

The package never imports streamlit, and importing it does not import torch: the app lists models
before torch is loaded. Analyses live in :mod:`resviz.analysis`, figures in :mod:`resviz.plots`.
"""

__version__ = "0.1.0"
