"""Feature Maps: what every layer computes for an image, and, at each block, what the skip adds.

One forward pass per (image, model) captures every block's F(x), shortcut and output plus the
depth statistics of the network and its plain twin; it is cached (shared by sessions, arrays
read-only), so switching layers or channels only redraws. Any other module by name costs one more
cached pass.
"""

from __future__ import annotations

from ui.shell import ensure_entry_point

ensure_entry_point()

import io

import streamlit as st

from ui import state


@st.cache_resource(show_spinner="Running the network on the image…", max_entries=6, ttl=3600)
def _base(digest: str, choice: object, _loaded: object, _image: object) -> dict[str, object]:
    """Input view, every block's signals and the twin's depth statistics, for one image and model."""
    from resviz.analysis.features import capture_activations, twin_statistics

    prep = _loaded.preprocessing  # type: ignore[attr-defined]
    model = _loaded.model  # type: ignore[attr-defined]
    x = prep.tensor([_image])
    blocks = model.block_names()
    acts = capture_activations(model, x, ["conv1", *model.stage_names], blocks=blocks, max_bytes=None)
    residual, plain = twin_statistics(model, x)
    return {"view": prep.array([_image])[0], "acts": acts, "residual": residual, "plain": plain}


@st.cache_resource(show_spinner=False, max_entries=16, ttl=3600)
def _module(digest: str, choice: object, name: str, _loaded: object, _image: object) -> object:
    from resviz.analysis.features import capture_activations

    x = _loaded.preprocessing.tensor([_image])  # type: ignore[attr-defined]
    return capture_activations(_loaded.model, x, [name]).maps[name][0]  # type: ignore[attr-defined]


BLOCK_ROWS = 8  # channels in the F(x) / shortcut / output comparison


def _block_rows_caption(rows: int, shown: int) -> str:
    if rows == shown:
        return "The channels shown above, one color scale centered on zero."
    return f"The first {rows} of the {shown} channels shown above, one color scale centered on zero."


def _block_caption(model: object, has_shortcut: bool) -> str:
    """How a block's output is made from F(x) and the shortcut, for this kind of block."""
    preact = bool(getattr(getattr(model, "config", None), "preact", False))
    if has_shortcut:
        if preact:
            return "Pre-activation block: output = F(x) + shortcut, with no ReLU after the sum."
        return "output = ReLU(F(x) + shortcut)."
    if preact:
        return "This block has no shortcut (plain, pre-activation): its output is F(x) alone."
    return "This block has no shortcut (plain): its output is ReLU(F(x)) alone."


def _layer_label(name: str) -> str:
    if name == "conv1":
        return "conv1 (stem)"
    return f"{name} (stage output)" if "." not in name else f"{name} (residual block)"


def _default(key: str, value: object) -> dict[str, object]:
    """``value=`` only for a widget whose key holds nothing yet.

    Streamlit warns when a widget gets a default and its key was also set through session state.
    """
    return {} if key in st.session_state else {"value": value}


def _channels(num: int) -> list[int]:
    """Channel controls (index range or top-k); returns the channels to show, in order."""
    from resviz.analysis.features import channel_range

    mode = st.radio(
        "Channels",
        ["range", "top-k"],
        key=state.FEAT_CHANNEL_MODE,
        horizontal=True,
        format_func={"range": "Index range", "top-k": "Top-k most active"}.__getitem__,
    )
    if mode == "top-k":
        if st.session_state.get(state.FEAT_TOPK, 0) > num:  # the layer changed under the slider
            st.session_state[state.FEAT_TOPK] = num
        k = (
            st.slider("k", 1, num, key=state.FEAT_TOPK, **_default(state.FEAT_TOPK, min(num, 32)))
            if num > 1
            else 1
        )
        return [-k]  # resolved by the caller, which has the maps
    first = (0, min(num, 64) - 1)
    lo, hi = st.session_state.get(state.FEAT_RANGE, first)
    if hi > num - 1 or lo > num - 1:
        st.session_state[state.FEAT_RANGE] = first
    if num > 1:
        lo, hi = st.slider(
            "Channel range", 0, num - 1, key=state.FEAT_RANGE, **_default(state.FEAT_RANGE, first)
        )
    else:
        lo, hi = 0, 0
    return channel_range(num, lo, hi + 1).tolist()


def _clicked_channel(shown: list[int]) -> int | None:
    """The channel of a tile clicked in the grid on the previous run, once per click.

    A click selects one of the grid's invisible tile markers (trace 1, one per shown channel in
    order); the selection persists across reruns, so only a new one overrides the selectbox.
    """
    event = st.session_state.get(state.FEAT_GRID)
    selection = event.get("selection") if hasattr(event, "get") else None
    points = (selection.get("points") if hasattr(selection, "get") else None) or []
    for p in points:
        i = p.get("point_index", p.get("point_number"))
        if p.get("curve_number") == 1 and isinstance(i, int) and 0 <= i < len(shown):
            key = (tuple(shown), i)
            if st.session_state.get(state.FEAT_GRID_CLICK) != key:
                st.session_state[state.FEAT_GRID_CLICK] = key
                return shown[i]
    return None


def _render(loaded, image) -> None:  # LoadedModel, LoadedImage
    import numpy as np

    from resviz.analysis.features import LARGE_BYTES, capture_names, estimate_bytes, top_channels
    from resviz.hooks import resolve_layers
    from resviz.plots.features import (
        block_figure,
        channel_figure,
        depth_figure,
        grid_figure,
        mosaic_png,
        tile_maps,
    )
    from ui.models import current_choice

    model = loaded.model
    choice = current_choice()
    blocks = model.block_names()
    crop = loaded.preprocessing.crop
    shape = (1, loaded.preprocessing.channels, crop, crop)  # a digits or MNIST run sees 1 channel
    need = estimate_bytes(model, capture_names(["conv1"], blocks), shape) or 0
    if need > LARGE_BYTES and not st.session_state.get(state.FEAT_ALLOW_LARGE):
        st.warning(
            f"Capturing every block of {loaded.name} will hold about {need / 2**20:,.0f} MB of memory."
        )
        st.checkbox("Capture anyway", key=state.FEAT_ALLOW_LARGE)
        return
    base = _base(image.digest, choice, loaded, image.image)
    acts = base["acts"]

    left, right = st.columns([1, 2])
    with left:
        st.image(base["view"], caption=f"{image.name}, as the network sees it ({crop}x{crop})", width=260)
    with right:
        options = [
            "conv1",
            *[n for s in model.stage_names for n in (s, *[b for b in blocks if b.startswith(s + ".")])],
        ]
        if st.session_state.get(state.FEAT_LAYER) not in options:
            st.session_state[state.FEAT_LAYER] = blocks[0]
        layer = st.selectbox("Layer", options, key=state.FEAT_LAYER, format_func=_layer_label)
        module = st.text_input(
            "…or any module by dotted name",
            key=state.FEAT_MODULE,
            placeholder="e.g. layer2.0.conv1",
            help="Overrides the layer above; costs one more (cached) forward pass.",
        ).strip()
        if module:
            resolve_layers(model, [module])  # a one-sentence error with close matches
            maps = _module(image.digest, choice, module, loaded, image.image)
            layer = module
        else:
            maps = acts.maps[layer][0]
        if maps.ndim != 3:
            st.error(f"{layer} outputs {maps.ndim}-D features, not channel maps; pick a convolutional layer.")
            return
        shown = _channels(maps.shape[0])
        if len(shown) == 1 and shown[0] < 0:
            shown = top_channels(maps, -shown[0]).tolist()

    c, h, w = maps.shape
    st.subheader(f"{layer}: {len(shown)} of {c} channels, {h}x{w}")
    st.plotly_chart(
        grid_figure(maps, shown),
        key=state.FEAT_GRID,
        on_select="rerun",
        selection_mode="points",
        config={"displayModeBar": False},
    )
    clicked = _clicked_channel(shown)
    if clicked is not None:
        st.session_state[state.FEAT_CHANNEL] = clicked
    if st.session_state.get(state.FEAT_CHANNEL) not in shown:
        st.session_state[state.FEAT_CHANNEL] = shown[0]
    focus = st.selectbox("Channel shown large (or click a tile)", shown, key=state.FEAT_CHANNEL)
    st.plotly_chart(channel_figure(base["view"], maps[focus], focus), key="feat_channel_fig")

    block = layer if layer in blocks else None
    if layer in model.stage_names:
        block = [b for b in blocks if b.startswith(layer + ".")][-1]  # a stage's output is its last block's
    if block is not None and not module:
        bm = acts.block(block)
        few = shown[:BLOCK_ROWS]
        st.subheader(f"{block}: F(x), shortcut and output")
        st.caption(
            f"{_block_rows_caption(len(few), len(shown))} {_block_caption(model, bm.shortcut is not None)}"
        )
        st.plotly_chart(
            block_figure(bm.branch[0], None if bm.shortcut is None else bm.shortcut[0], bm.output[0], few),
            key="feat_block_fig",
        )

    st.subheader("Along the depth: residual vs plain twin")
    st.caption(
        "The plain twin has the same weights with every shortcut removed. "
        "||F(x)|| / ||x|| says how much each block changes its input."
    )
    st.plotly_chart(depth_figure(base["residual"], base["plain"]), key="feat_depth_fig")

    def grid_png() -> bytes:
        return mosaic_png(tile_maps(maps[shown], [str(ch) for ch in shown]))

    def activations_npz() -> bytes:
        buf = io.BytesIO()
        arrays = {"maps": maps[shown], "channels": np.asarray(shown), "input_view": base["view"]}
        if block is not None and not module:
            bm = acts.block(block)
            arrays |= {"branch": bm.branch[0][shown], "output": bm.output[0][shown]}
            if bm.shortcut is not None:
                arrays["shortcut"] = bm.shortcut[0][shown]
        np.savez(buf, **arrays)
        return buf.getvalue()

    stem = f"{loaded.name}_{layer}".replace(".", "-")
    d1, d2 = st.columns(2)
    d1.download_button(
        "Grid as PNG", grid_png, file_name=f"{stem}.png", mime="image/png", key=state.FEAT_DOWNLOAD_PNG
    )
    d2.download_button(
        "Activations as .npz",
        activations_npz,
        file_name=f"{stem}.npz",
        mime="application/octet-stream",
        key=state.FEAT_DOWNLOAD_NPZ,
    )


def main() -> None:
    st.title("Feature maps")
    st.caption(
        "Walk through the network layer by layer. At a residual block, see F(x), the shortcut and "
        "their sum for the same channels."
    )
    from resviz.errors import ResvizError
    from ui.images import image_picker
    from ui.models import current_model, show_model_banner

    with st.expander("Image", expanded=True):
        images = image_picker(state.FEAT_IMAGE_PREFIX, multiple=False)
    if not images:
        st.info("Pick a sample or upload an image.")
        return
    try:
        loaded = current_model()
        show_model_banner(loaded)
        _render(loaded, images[0])
    except ResvizError as exc:
        st.error(str(exc))


main()
