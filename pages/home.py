"""Home: what residual learning is, the two blocks drawn, the variants, and a tour. No torch here."""

from ui.shell import ensure_entry_point

ensure_entry_point()

import streamlit as st

from resviz.models import list_models
from resviz.plots.architecture import block_figure

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

st.subheader("A short tour")
tour = [
    (
        "pages/architecture.py",
        "Architecture",
        "tables and charts of any variant, its shortcuts drawn, "
        "and how it compares with VGG, GoogLeNet, MobileNet and DenseNet.",
    ),
    (
        "pages/feature_maps.py",
        "Feature Maps",
        "what every layer computes on your image, and at each "
        "block the branch F(x), the shortcut x and their sum.",
    ),
    (
        "pages/gradient_flow.py",
        "Gradient Flow",
        "gradient norms layer by layer, residual against plain, at initialization and while they train.",
    ),
    (
        "pages/attribution.py",
        "Attribution",
        "Grad-CAM and friends on your photos: where does the "
        "network look, at each depth, with and without shortcuts?",
    ),
    (
        "pages/training_lab.py",
        "Training Lab",
        "train plain and residual nets side by side and watch the degradation problem happen.",
    ),
]
for path, label, text in tour:
    link, desc = st.columns([1, 4])
    link.page_link(path, label=label)
    desc.markdown(text)
st.caption("Pick the model in the sidebar: every page uses it.")
