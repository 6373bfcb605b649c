"""Home: what residual learning is, the two blocks drawn, the variants, and a tour. No torch here."""

from ui.shell import ensure_entry_point

ensure_entry_point()

from pathlib import Path

import streamlit as st

from resviz.analysis.methods import METHOD_TABLE  # the table only: no torch
from resviz.models import list_models
from resviz.plots.architecture import block_figure
from ui.models import WEIGHT_LABELS, current_choice

st.title("resviz: why skip connections work")
st.markdown(
    "A deep network should be at least as good as a shallower one: the extra layers could just "
    "copy their input. Yet plain networks get **worse** as they get deeper, even on the training set "
    "(He et al. 2015, *Deep Residual Learning for Image Recognition*). Residual networks fix this by "
    "letting each block learn only a correction to its input:"
)
st.latex(r"y = \mathcal{F}(x, \{W_i\}) + x")
st.markdown(
    "If the identity is what is needed, the block only has to push $\\mathcal{F}$ to zero, which is "
    "easy; and the gradient flows back through the $+\\,x$ untouched. Every network here also has a "
    "**plain twin**: the same layers with the shortcut removed, so you can see what the $+\\,x$ changes."
)

st.subheader("Start here")
_choice = current_choice()
if _choice.weights == "run" and _choice.run_path:
    _loaded_text = (
        f"The sidebar has a **trained** network loaded: **{_choice.name}** from the saved run "
        f"*{Path(_choice.run_path).name}* (a bundled demo run is trained beside its plain twin on a "
        "small synthetic shapes dataset)."
    )
else:
    _loaded_text = f"The sidebar has **{_choice.name}** with {WEIGHT_LABELS[_choice.weights].lower()}."
st.markdown(
    f"{_loaded_text} Every page uses the sidebar's model. Try first: **Attribution** on a sample "
    "image (where does the network look?), then **Why it works** (what the shortcut changes)."
)

left, right = st.columns(2)
with left:
    st.plotly_chart(block_figure("basic"), key="home_basic", config={"displaylogo": False})
    st.caption("Basic block (ResNet-18/34 and the CIFAR ResNets): two 3x3 convolutions.")
with right:
    st.plotly_chart(block_figure("bottleneck"), key="home_bottleneck", config={"displaylogo": False})
    st.caption("Bottleneck block (ResNet-50/101/152): 1x1 reduces, 3x3 computes, 1x1 restores.")

st.subheader("The model zoo")
families = {  # family: (title, what it holds)
    "imagenet": (
        "ImageNet",
        "ResNet-18/34/50/101/152, Wide ResNet-50-2/101-2, ResNeXt; pretrained weights from "
        "torchvision; pre-activation versions of each.",
    ),
    "cifar": (
        "CIFAR",
        "Section 4.2: ResNet-20/32/44/56/110/1202 with 16/32/64 channels and parameter-free "
        "shortcuts; pre-activation ResNet-164/1001; any 6n+2 depth on demand.",
    ),
    "tiny": ("Tiny", "One block a stage and a few channels; instant on any machine."),
}
cols = st.columns(3)
for col, (family, (title, text)) in zip(cols, families.items()):
    residual = len(list_models(family, plain=False))
    # A count, not a change: st.metric's delta would draw it as a rise with an arrow.
    col.metric(title, f"{residual} networks")
    col.caption(f"**Each with its plain twin ({residual} more).** {text}")

st.subheader("Every page")
TOUR = [
    (
        "pages/architecture.py",
        "Architecture",
        "tables and charts of any variant, its shortcuts drawn, and how it compares with VGG, "
        "GoogLeNet, MobileNet and DenseNet (sizes and published ImageNet accuracy).",
    ),
    (
        "pages/feature_maps.py",
        "Feature Maps",
        "what every layer computes on your image, and at each block the branch F(x), the shortcut x "
        "and their sum.",
    ),
    (
        "pages/gradient_flow.py",
        "Gradient Flow",
        "gradient norms layer by layer, residual against plain, at initialization and while they train.",
    ),
    (
        "pages/attribution.py",
        "Attribution",
        f"Grad-CAM and {len(METHOD_TABLE) - 1} other methods on your photos: where does the network "
        "look, at each depth, with and without shortcuts, and which map can be trusted.",
    ),
    (
        "pages/training_lab.py",
        "Training Lab",
        "train plain and residual nets side by side and watch the degradation problem happen.",
    ),
    (
        "pages/runs.py",
        "Runs",
        "the saved training runs: their curves side by side, rename, delete, download.",
    ),
    (
        "pages/why_it_works.py",
        "Why it works",
        "the arguments for shortcuts, each measured: gradients at depth, shattered gradients, "
        "networks as ensembles of short paths, lesions, the loss landscape.",
    ),
]
for path, label, text in TOUR:
    link, desc = st.columns([1, 4])
    link.page_link(path, label=label)
    desc.markdown(text)

st.subheader("A lecture path")
st.caption("One route through the app for a class, each stop with what to look for.")
LECTURE = [
    (
        "pages/architecture.py",
        "Architecture",
        "a residual block is a plain block plus one addition: compare the parameter counts side by side.",
    ),
    (
        "pages/training_lab.py",
        "Training Lab",
        "train a deep plain net and its residual twin: which one has the higher training error?",
    ),
    (
        "pages/gradient_flow.py",
        "Gradient Flow",
        "each twin's first/last gradient ratio, then the depth sweep: where does the plain net's "
        "gradient go?",
    ),
    (
        "pages/feature_maps.py",
        "Feature Maps",
        "at a block, F(x) next to the shortcut x: how large is the correction each block adds?",
    ),
    (
        "pages/attribution.py",
        "Attribution",
        "where the trained net looks; then the grid against its shortcuts cut (same weights).",
    ),
    (
        "pages/why_it_works.py",
        "Why it works",
        "delete one block from each twin (Lesion): what does each lose? Then the paths view.",
    ),
]
for n, (path, label, text) in enumerate(LECTURE, start=1):
    link, desc = st.columns([1, 4])
    link.page_link(path, label=f"{n}. {label}")
    desc.markdown(text)
st.caption("Pick the model in the sidebar: every page uses it.")
