"""Attribution: what the network looks at, for the class it predicts or any class, at any layer.

Thin page: widgets -> cached resviz attribution -> figures. Attribution results are cached by image
digests, model choice, method, layer, target and options, so opacity and colormap only recompose
the overlay from the cached maps.
"""

from __future__ import annotations

import streamlit as st

from ui import state
from ui.shell import ensure_entry_point

ensure_entry_point()  # a deep link runs inside app.py's shell (sidebar model picker included)

K = state.ATTR_PREFIX
PREDICTED = -1  # the target selectbox's "predicted class" (None would read as "nothing selected")
UNTRAINED = "This network is untrained: its attributions show structure, not knowledge."


def _use_imagenet() -> None:
    st.session_state[state.MODEL_WEIGHTS] = "imagenet"


@st.cache_data(show_spinner=False, max_entries=64)
def _attribution(
    model_key: str,
    digests: tuple[str, ...],
    method: str,
    layer: str | None,
    target: int | None,
    options: tuple,
    _loaded,
    _images,
):
    """One batched attribution of all picked images (cached; the leading args are the key)."""
    from resviz.analysis.attribution import attribute_images

    return attribute_images(_loaded, _images, method, layer=layer, target=target, **dict(options))


@st.cache_data(show_spinner=False, max_entries=64)
def _view(digest: str, preprocessing_key: str, _preprocessing, _image):
    """``(H, W, 3)`` uint8: one image as the network sees it (resize + crop of a big photo costs
    up to ~0.2 s, so an opacity or colormap change must not redo it)."""
    return _preprocessing.array([_image])[0]


@st.cache_resource(show_spinner="Building the plain twin…", max_entries=2)
def _twin(model_key: str, _model):
    """The residual<->plain twin of the cached model, sharing its weights."""
    from resviz.hooks import model_lock
    from resviz.models import make_twin

    with model_lock(_model):  # state_dict() of a shared model, read while nobody hooks it
        return make_twin(_model).eval()


@st.cache_data(show_spinner=False, max_entries=32)
def _grid(
    model_key: str,
    digest: str,
    mode: str,
    layers: tuple[str, ...],
    methods: tuple[str, ...],
    target: int,
    options: tuple,
    _loaded,
    _image,
    _twin_model,
):
    """``{(layer, column): (H, W) map}`` for one image: layers x methods, or residual vs plain."""
    from resviz.analysis.attribution import LAYER_METHODS, METHODS, attribute, grad_cam_layers

    x = _loaded.preprocessing.tensor([_image])
    cells = {}
    if mode == "twin":
        for model in (_loaded.model, _twin_model):
            label = "with shortcuts" if model.config.skip else "without shortcuts"
            for layer, r in grad_cam_layers(model, x, list(layers), target=target).items():
                cells[(layer, label)] = r.maps[0]
        return cells
    opts = {**dict(options), "preprocessing": _loaded.preprocessing}
    for method in methods:
        col = METHODS[method]
        if method == "gradcam":  # every layer from the same single forward + backward
            for layer, r in grad_cam_layers(_loaded.model, x, list(layers), target=target).items():
                cells[(layer, col)] = r.maps[0]
        elif method in LAYER_METHODS:
            for layer in layers:
                cells[(layer, col)] = attribute(
                    _loaded.model, x, method, layer=layer, target=target, **opts
                ).maps[0]
        else:  # input-level: independent of the layer, computed once and shown in the first row
            cells[(layers[0], f"{col} (input)")] = attribute(
                _loaded.model, x, method, target=target, **opts
            ).maps[0]
    return cells


def _method_options(method: str, size: int) -> tuple:
    """Widgets for the chosen method's options; a hashable tuple for the cache key."""
    from resviz.analysis.attribution import BASELINES, occlusion_plan

    if method == "integrated_gradients":
        with st.expander("Integrated Gradients options", expanded=False):
            c1, c2, c3, c4 = st.columns(4)
            baseline = c1.selectbox(
                "Baseline",
                list(BASELINES),
                key=state.ATTR_BASELINE,
                format_func=lambda b: f"{b}: {BASELINES[b]}",
            )
            steps = c2.slider("Steps", 4, 64, 16, step=4, key=state.ATTR_IG_STEPS)
            tunnel = c3.toggle("Noise tunnel (SmoothGrad)", key=state.ATTR_NOISE_TUNNEL)
            samples = c4.slider("Noisy samples", 2, 16, 4, key=state.ATTR_NT_SAMPLES, disabled=not tunnel)
        return (
            ("baseline", baseline),
            ("ig_steps", steps),
            ("noise_tunnel", tunnel),
            ("nt_samples", samples),
        )
    if method == "occlusion":
        with st.expander("Occlusion options", expanded=False):
            window = st.slider(
                "Occluding square (pixels)",
                2,
                max(2, size // 2),
                max(2, size // 7),
                key=state.ATTR_OCC_WINDOW,
                help="Slides with a stride of half the square: smaller is finer and slower.",
            )
            _, _, passes = occlusion_plan(size, window)
            st.caption(f"{passes} forward passes per image: Occlusion is the slowest method here.")
        return (("occlusion_window", window),)
    return ()


def _banner(loaded, choice) -> None:
    from resviz.models import get_spec
    from ui.models import show_model_banner

    if loaded.trained:
        show_model_banner(loaded)
        return
    if loaded.notice:
        st.warning(loaded.notice)
    st.warning(UNTRAINED)
    if loaded.weights == "random" and get_spec(choice.name).pretrained_available:
        st.button(
            "Get pretrained ImageNet weights",
            key=state.ATTR_GET_PRETRAINED,
            on_click=_use_imagenet,
            help="Switches the sidebar to torchvision's ImageNet weights (downloaded once).",
        )


def _show_results(result, images, views, opacity: float, colormap: str, model_name: str) -> None:
    from resviz.analysis.attribution import METHODS
    from resviz.plots.attribution import overlay, overlay_figure, png_bytes, top_k_figure

    p = result.prediction
    where = f" at {result.layer}" if result.layer else ""
    for i, image in enumerate(images):
        st.markdown(f"**{image.name}**: {METHODS[result.method]}{where} for **{result.target_labels[i]}**")
        left, right = st.columns([2, 3])
        left.plotly_chart(
            top_k_figure(p.labels[i], p.probs[i], target=result.target_labels[i]),
            key=f"{K}top_{i}",
            config={"displaylogo": False},
        )
        right.plotly_chart(
            overlay_figure(views[i], result.maps[i], opacity=opacity, colormap=colormap),
            key=f"{K}overlay_{i}",
            config={"displaylogo": False},
        )
        right.download_button(
            "Overlay (PNG)",
            png_bytes(overlay(views[i], result.maps[i], opacity=opacity, colormap=colormap)),
            f"{model_name}_{result.method}_{i}.png",
            "image/png",
            key=f"{state.ATTR_DOWNLOAD_PNG}_{i}",
            on_click="ignore",
        )
    st.download_button(
        "All raw maps (.npz)",
        result.to_npz(),
        f"{model_name}_{result.method}.npz",
        "application/octet-stream",
        key=state.ATTR_DOWNLOAD_NPZ,
        on_click="ignore",
        help="maps (N, H, W) in [0, 1], raw attributions, targets and top-5 for every image.",
    )


def _comparison(loaded, model_key, images, views, result, choices, opacity, colormap, options) -> None:
    from resviz.analysis.attribution import METHODS
    from resviz.plots.attribution import comparison_grid

    st.subheader("Comparison grid")
    if not st.toggle(
        "Show the grid",
        key=state.ATTR_GRID,
        help="Rows are layers; columns are methods, or the model and its plain twin.",
    ):
        return
    c1, c2, c3 = st.columns(3)
    mode = c1.radio(
        "Columns",
        ["methods", "twin"],
        key=state.ATTR_GRID_MODE,
        horizontal=True,
        format_func={"methods": "methods", "twin": "with vs without shortcuts"}.__getitem__,
    )
    idx = (
        c2.selectbox(
            "Image", range(len(images)), key=state.ATTR_GRID_IMAGE, format_func=lambda i: images[i].name
        )
        if len(images) > 1
        else 0
    )
    stages = [s.name for s in loaded.model.feature_info] or choices[:1]
    layers = st.multiselect("Rows (layers)", choices, default=stages, key=state.ATTR_GRID_LAYERS)
    methods = ["gradcam"]
    if mode == "methods":
        methods = c3.multiselect(
            "Columns (methods)",
            list(METHODS),
            default=["gradcam", "guided_gradcam"],
            key=state.ATTR_GRID_METHODS,
            format_func=METHODS.__getitem__,
        )
    else:
        c3.caption("Grad-CAM of the same class in both networks; the twin shares every weight.")
    if not layers or not methods:
        st.info("Choose at least one layer and one method.")
        return
    idx = int(idx or 0)
    twin = _twin(model_key, loaded.model) if mode == "twin" else None
    with st.spinner("Computing the grid…"):
        cells = _grid(
            model_key,
            images[idx].digest,
            mode,
            tuple(layers),
            tuple(methods),
            int(result.targets[idx]),
            options,
            loaded,
            images[idx].image,
            twin,
        )
    columns = list(dict.fromkeys(col for _, col in cells))
    st.plotly_chart(
        comparison_grid(views[idx], cells, layers, columns, opacity=opacity, colormap=colormap),
        key=f"{K}grid_chart",
        config={"displaylogo": False},
    )
    st.caption(f"Every cell explains class {result.target_labels[idx]!r}, the class of the view above.")


def main() -> None:
    st.title("Attribution")
    st.caption(
        "Where the network looks for a class: Grad-CAM at any layer, and its companions from captum. "
        "Many images go through in one batch."
    )
    from resviz.errors import ResvizError

    try:
        from resviz.analysis.attribution import LAYER_METHODS, METHODS, default_layer, layer_choices
        from resviz.plots.attribution import COLORMAPS
        from ui.images import image_picker
        from ui.models import current_choice, current_model

        choice = current_choice()
        loaded = current_model(choice)
        _banner(loaded, choice)
        images = image_picker(K, multiple=True, label="Images")
        if not images:
            st.info("Pick a sample image or upload one or more photos.")
            return

        model = loaded.model
        choices = layer_choices(model)
        num_classes = loaded.config.num_classes
        c1, c2, c3 = st.columns(3)
        method = c1.selectbox("Method", list(METHODS), key=state.ATTR_METHOD, format_func=METHODS.__getitem__)
        if st.session_state.get(state.ATTR_LAYER) not in choices:
            st.session_state[state.ATTR_LAYER] = default_layer(model)
        layer = c2.selectbox(
            "Layer",
            choices,
            key=state.ATTR_LAYER,
            disabled=method not in LAYER_METHODS,
            help="Stages, then blocks, then every module inside them.",
        )
        if st.session_state.get(state.ATTR_TARGET, PREDICTED) not in range(PREDICTED, num_classes):
            st.session_state[state.ATTR_TARGET] = PREDICTED  # another model with fewer classes
        target = c3.selectbox(
            "Class to explain",
            range(PREDICTED, num_classes),
            key=state.ATTR_TARGET,
            format_func=lambda t: "the predicted class" if t == PREDICTED else f"{t}: {loaded.class_name(t)}",
        )
        c4, c5 = st.columns(2)
        opacity = c4.slider("Map opacity", 0.0, 1.0, 0.5, 0.05, key=state.ATTR_OPACITY)
        colormap = c5.selectbox("Colormap", COLORMAPS, key=state.ATTR_COLORMAP)
        size = loaded.preprocessing.crop
        options = _method_options(method, size)

        model_key = repr(choice)
        digests = tuple(im.digest for im in images)
        pils = [im.image for im in images]
        with st.spinner(f"{METHODS[method]} for {len(images)} image(s)…"):
            result = _attribution(
                model_key,
                digests,
                method,
                layer if method in LAYER_METHODS else None,
                None if target == PREDICTED else int(target),
                options,
                loaded,
                pils,
            )
        prep = loaded.preprocessing
        views = [_view(im.digest, repr(prep), prep, im.image) for im in images]
        _show_results(result, images, views, opacity, colormap, choice.name)
        _comparison(loaded, model_key, images, views, result, choices, opacity, colormap, options)
        from ui.sections import faithfulness

        faithfulness.render(loaded, images, model_key=model_key)
    except ResvizError as exc:
        st.error(str(exc))


main()
