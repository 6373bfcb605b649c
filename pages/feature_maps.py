"""Feature Maps: what every layer computes for an image, and, at each block, what the skip adds.

One forward pass per (image, model) captures every block's F(x), shortcut and output plus the
depth statistics of the network and of its shortcuts cut (same weights); it is cached (shared by
sessions, arrays read-only), so switching layers or channels only redraws. Any other module by
name costs one more cached pass. A run whose twin was trained beside it can be compared with that
plain twin (trained) instead.
"""

from __future__ import annotations

from ui.shell import ensure_entry_point

ensure_entry_point()

import streamlit as st

from resviz.text import markdown_text  # user and file text: shown, never markup
from ui import state


@st.cache_resource(show_spinner="Running the network on the image…", max_entries=6, ttl=3600)
def _base(digest: str, choice: object, _loaded: object, _image: object) -> dict[str, object]:
    """Input view, every block's signals and the twin's depth statistics, for one image and model."""
    from resviz.analysis.features import capture_activations, layer_options, twin_statistics

    prep = _loaded.preprocessing  # type: ignore[attr-defined]
    model = _loaded.model  # type: ignore[attr-defined]
    x = prep.tensor([_image])
    options = layer_options(model)
    acts = capture_activations(model, x, options.layers, blocks=options.blocks, max_bytes=None)
    residual, plain = twin_statistics(model, x)
    return {"view": prep.array([_image])[0], "acts": acts, "residual": residual, "plain": plain}


@st.cache_resource(show_spinner=False, max_entries=16, ttl=3600)
def _module(digest: str, choice: object, name: str, _loaded: object, _image: object) -> object:
    """The activations of one module chosen by name (one more forward pass, cached)."""
    from resviz.analysis.features import capture_activations

    x = _loaded.preprocessing.tensor([_image])  # type: ignore[attr-defined]
    return capture_activations(_loaded.model, x, [name])  # type: ignore[attr-defined]


@st.cache_resource(show_spinner=False, max_entries=48, ttl=3600)
def _figure(kind: str, key: tuple, _build):
    """A figure built once per ``(kind, key)`` and shared read-only: returning to a layer, a
    channel click or another session's same view redraws without rebuilding it (plotly's figure
    building is most of a rerun's server time)."""
    return _build()


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
    # A new layer or model changes the sliders' bounds, which makes each a new widget that would
    # start at its own default (k = 1; the range 0..all: 2048 tiles on ResNet-50). So the value is
    # put into session state on every run: the user's own if it still applies, else the default
    # for this many channels (the first 64; the top 32).
    before = st.session_state.get(state.FEAT_CHANNEL_COUNT)
    st.session_state[state.FEAT_CHANNEL_COUNT] = num
    if mode == "top-k":
        k = st.session_state.get(state.FEAT_TOPK)
        own = k is not None and before is not None and k != min(before, 32)
        st.session_state[state.FEAT_TOPK] = min(k, num) if own else min(num, 32)
        return [-(st.slider("k", 1, num, key=state.FEAT_TOPK) if num > 1 else 1)]  # resolved by the caller
    first = (0, min(num, 64) - 1)
    chosen = st.session_state.get(state.FEAT_RANGE)
    own = chosen is not None and before is not None and tuple(chosen) != (0, min(before, 64) - 1)
    st.session_state[state.FEAT_RANGE] = tuple(chosen) if own and chosen[1] < num else first
    lo, hi = st.slider("Channel range", 0, num - 1, key=state.FEAT_RANGE) if num > 1 else (0, 0)
    return channel_range(num, lo, hi + 1).tolist()


def _shown_channels(maps) -> list[int]:
    """The channels of ``maps`` ``(C, H, W)`` the channel controls ask for, in order."""
    from resviz.analysis.features import top_channels

    shown = _channels(maps.shape[0])
    if len(shown) == 1 and shown[0] < 0:
        shown = top_channels(maps, -shown[0]).tolist()
    return shown


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


def _capture_refused(loaded, options) -> bool:
    """Warn and offer a checkbox when capturing every block would hold a lot of memory."""
    from resviz.analysis.features import LARGE_BYTES, capture_names, estimate_bytes

    crop = loaded.preprocessing.crop
    shape = (1, loaded.preprocessing.channels, crop, crop)  # a digits or MNIST run sees 1 channel
    need = estimate_bytes(loaded.model, capture_names([options.stem], options.blocks), shape) or 0
    if need <= LARGE_BYTES or st.session_state.get(state.FEAT_ALLOW_LARGE):
        return False
    st.warning(f"Capturing every block of {loaded.name} will hold about {need / 2**20:,.0f} MB of memory.")
    st.checkbox("Capture anyway", key=state.FEAT_ALLOW_LARGE)
    return True


def _pick_layer(options, acts, loaded, image, choice):
    """Layer selectbox and module-name box; returns ``(layer, its activations, typed by name)``."""
    from resviz.hooks import resolve_layers

    if st.session_state.get(state.FEAT_LAYER) not in options.names:
        st.session_state[state.FEAT_LAYER] = options.default
    layer = st.selectbox("Layer", options.names, key=state.FEAT_LAYER, format_func=options.label)
    module = st.text_input(
        "…or any module by dotted name",
        key=state.FEAT_MODULE,
        placeholder="e.g. layer2.0.conv1",
        help="Overrides the layer above; costs one more (cached) forward pass.",
    ).strip()
    if not module:
        return layer, acts, False
    resolve_layers(loaded.model, [module])  # a one-sentence error with close matches
    return module, _module(image.digest, choice, module, loaded, image.image), True


def _draw_grid(layer: str, maps, shown: list[int], view, key: tuple) -> None:
    """The clickable grid of the shown channels and one channel drawn large over the input."""
    from resviz.plots.features import channel_figure, grid_figure

    c, h, w = maps.shape
    st.subheader(f"{layer}: {len(shown)} of {c} channels, {h}x{w}")
    st.plotly_chart(
        _figure("grid", key, lambda: grid_figure(maps, shown)),
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
    figure = _figure("channel", (*key, focus), lambda: channel_figure(view, maps[focus], focus))
    st.plotly_chart(figure, key="feat_channel_fig")


def _draw_block(model, acts, block: str, shown: list[int], key: tuple) -> None:
    """F(x), the shortcut and the output of one block for the first shown channels."""
    from resviz.plots.features import block_figure

    bm = acts.block(block)
    few = shown[:BLOCK_ROWS]
    parts = "F(x), shortcut and output" if bm.shortcut is not None else "F(x) and output (no shortcut)"
    st.subheader(f"{block}: {parts}")
    st.caption(
        f"{_block_rows_caption(len(few), len(shown))} {_block_caption(model, bm.shortcut is not None)}"
    )
    shortcut = None if bm.shortcut is None else bm.shortcut[0]
    figure = _figure("block", (*key, block), lambda: block_figure(bm.branch[0], shortcut, bm.output[0], few))
    st.plotly_chart(figure, key="feat_block_fig")


@st.cache_resource(show_spinner="Loading the plain twin trained beside this run…", max_entries=2)
def _trained_twin(path: str, name: str):
    """The twin trained in the same session as the sidebar's run (read-only, shared)."""
    from resviz.models import twin_name
    from resviz.models.weights import load_model

    return load_model(twin_name(name), path)


@st.cache_resource(show_spinner="Running the trained twin on the image…", max_entries=6, ttl=3600)
def _trained_depth(digest: str, choice: object, path: str, _loaded: object, _image: object):
    """Depth statistics of the sidebar's run and of its trained twin, for one image."""
    from resviz.analysis.features import twin_statistics

    twin = _trained_twin(path, _loaded.name)  # type: ignore[attr-defined]
    x = _loaded.preprocessing.tensor([_image])  # type: ignore[attr-defined]
    return twin_statistics(_loaded.model, x, twin=twin.model)  # type: ignore[attr-defined]


def _draw_depth(digest: str, choice, base: dict[str, object], loaded, image) -> None:
    """Depth statistics of the network against a counterpart: its own weights with the shortcuts
    cut, or (for a run whose twin was trained beside it) that trained twin, as the user picks."""
    from resviz.analysis.pairs import counterpart_caption, counterpart_name, twin_run_path
    from resviz.plots.features import depth_figure

    residual = bool(loaded.config.skip)
    path = twin_run_path(loaded)
    kind = "cut"
    if path is not None:
        kind = st.radio(
            "Compare with",
            ["cut", "trained"],
            key=state.FEAT_TWIN,
            horizontal=True,
            format_func=lambda k: counterpart_name(residual, k == "trained"),
            help="The same weights with the shortcuts cut show what the shortcuts do inside this "
            "network; the twin trained without them shows what training found instead.",
        )
    trained = kind == "trained"
    st.subheader(f"Along the depth: this network vs {counterpart_name(residual, trained)}")
    st.caption(
        counterpart_caption(residual, trained)
        + " ||F(x)|| / ||x|| says how much each block changes its input."
    )
    if trained:
        pair = _trained_depth(digest, choice, path, loaded, image.image)
        figure = _figure("depth_trained", (digest, choice, path), lambda: depth_figure(*pair))
    else:
        figure = _figure("depth", (digest, choice), lambda: depth_figure(base["residual"], base["plain"]))
    st.plotly_chart(figure, key="feat_depth_fig")


def _downloads(name: str, layer: str, acts, shown: list[int], block: str | None, view) -> None:
    """The grid as PNG and the shown channels (and block signals) as .npz, built on click."""
    from resviz.plots.features import mosaic_png, tile_maps

    maps = acts.maps[layer][0]
    stem = f"{name}_{layer}".replace(".", "-")
    d1, d2 = st.columns(2)
    d1.download_button(
        "Grid as PNG",
        lambda: mosaic_png(tile_maps(maps[shown], [str(ch) for ch in shown])),
        file_name=f"{stem}.png",
        mime="image/png",
        key=state.FEAT_DOWNLOAD_PNG,
    )
    d2.download_button(
        "Activations as .npz",
        lambda: acts.to_npz(layer, shown, block=block, input_view=view),
        file_name=f"{stem}.npz",
        mime="application/octet-stream",
        key=state.FEAT_DOWNLOAD_NPZ,
    )


def _render(loaded, image) -> None:  # LoadedModel, LoadedImage
    from resviz.analysis.features import layer_options
    from ui.models import current_choice

    options = layer_options(loaded.model)
    if _capture_refused(loaded, options):
        return
    choice = current_choice()
    base = _base(image.digest, choice, loaded, image.image)
    _layer_view(loaded, image, choice, options, base)
    _draw_depth(image.digest, choice, base, loaded, image)


@st.fragment
def _layer_view(loaded, image, choice, options, base) -> None:
    """Everything a layer or channel change redraws; such a change reruns this part alone."""
    from ui.timing import script_timer

    with script_timer("Feature Maps", fragment=True):  # a no-op unless the browser benchmark asks
        _layer_view_body(loaded, image, choice, options, base)


def _layer_view_body(loaded, image, choice, options, base) -> None:
    from resviz.errors import ResvizError

    crop = loaded.preprocessing.crop
    left, right = st.columns([1, 2])
    with left:
        st.image(
            base["view"],
            caption=f"{markdown_text(image.name)}, as the network sees it ({crop}x{crop})",
            width=260,
        )
    with right:
        try:
            layer, acts, by_name = _pick_layer(options, base["acts"], loaded, image, choice)
        except ResvizError as exc:  # a module typed by name that does not exist
            st.error(markdown_text(exc))
            return
        maps = acts.maps[layer][0]
        if maps.ndim != 3:
            st.error(f"{layer} outputs {maps.ndim}-D features, not channel maps; pick a convolutional layer.")
            return
        shown = _shown_channels(maps)
    key = (image.digest, choice, layer, tuple(shown))
    _draw_grid(layer, maps, shown, base["view"], key)
    # A stage's output is its last block's, so a stage shows that block; a module typed by name none.
    block = None if by_name else options.block_of.get(layer)
    if block is not None:
        _draw_block(loaded.model, acts, block, shown, key)
    _downloads(loaded.name, layer, acts, shown, block, base["view"])


def main() -> None:
    st.title("Feature maps")
    st.caption(
        "Walk through the network layer by layer. At a residual block, see F(x), the shortcut and "
        "their sum for the same channels."
    )
    from resviz.errors import ResvizError
    from ui.images import image_picker
    from ui.models import current_model, show_model_banner, show_photo_notice

    with st.expander("Image", expanded=True):
        images = image_picker(state.FEAT_IMAGE_PREFIX, multiple=False)
    if not images:
        st.info("Pick a sample or upload an image.")
        return
    try:
        loaded = current_model()
        show_model_banner(loaded)
        show_photo_notice(loaded, images)
        _render(loaded, images[0])
    except ResvizError as exc:
        st.error(markdown_text(exc))


main()
