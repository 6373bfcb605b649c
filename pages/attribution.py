"""Attribution: what the network looks at, for the class it predicts or any class, at any layer.

Thin page: widgets -> cached resviz attribution -> figures. Attribution results are cached by image
digests, model choice, method, layer, target and options, so opacity and colormap only recompose
the overlay from the cached maps.
"""

from __future__ import annotations

import streamlit as st

from resviz.text import markdown_text  # user and file text: shown, never markup
from ui import state
from ui.shell import ensure_entry_point

ensure_entry_point()  # a deep link runs inside app.py's shell (sidebar model picker included)

K = state.ATTR_PREFIX
PREDICTED = -1  # the target selectbox's "predicted class" (None would read as "nothing selected")
UNTRAINED = "This network is untrained: its attributions show structure, not knowledge."
IG_TOLERANCE = 5.0  # % completeness error Integrated Gradients must get under (its own check)
IG_MAX_STEPS = 256  # the steps it may be raised to for that (the options' maximum)


def _use_imagenet() -> None:
    st.session_state[state.MODEL_WEIGHTS] = "imagenet"


@st.cache_data(show_spinner=False, max_entries=64)
def _attribution(
    model_key: str,
    digests: tuple[str, ...],
    method: str,
    layer: str | None,
    target: int | None,
    options,
    _loaded,
    _images,
):
    """One batched attribution of all picked images (cached; the leading args are the key, the
    options a frozen dataclass of the method table)."""
    from resviz.analysis.attribution import attribute_images

    return attribute_images(_loaded, _images, method, layer=layer, target=target, options=options)


@st.cache_data(show_spinner=False, max_entries=64)
def _view(digest: str, preprocessing_key: str, _preprocessing, _image):
    """``(H, W, 3)`` uint8: one image as the network sees it (resize + crop of a big photo costs
    up to ~0.2 s, so an opacity or colormap change must not redo it)."""
    return _preprocessing.array([_image])[0]


@st.cache_resource(show_spinner="Cutting the shortcuts (same weights)…", max_entries=2)
def _twin(model_key: str, _model):
    """The cached model with its shortcuts cut (or added): every weight shared, not trained so."""
    from resviz.hooks import model_lock
    from resviz.models import make_twin

    with model_lock(_model):  # state_dict() of a shared model, read while nobody hooks it
        return make_twin(_model).eval()


@st.cache_resource(show_spinner="Loading the twin trained beside this run…", max_entries=2)
def _trained_twin(path: str, name: str):
    """The twin trained in the same session as the sidebar's run (read-only, shared)."""
    from resviz.models import twin_name
    from resviz.models.weights import load_model

    return load_model(twin_name(name), path).model


@st.cache_data(show_spinner=False, max_entries=32)
def _grid(
    model_key: str,
    twin_key: str,
    digest: str,
    layers: tuple[str, ...],
    methods: tuple[str, ...],
    target: int,
    options: tuple,
    _loaded,
    _image,
    _twin_model,
):
    """``{(layer, column): (H, W) map}`` for one image (cached): :func:`comparison_cells`."""
    from resviz.analysis.attribution import comparison_cells

    return comparison_cells(
        _loaded.model,
        _loaded.preprocessing.tensor([_image]),
        layers,
        methods,
        target=target,
        options=dict(options),
        preprocessing=_loaded.preprocessing,
        twin=_twin_model,
        twin_label=twin_key if _twin_model is not None else None,
    )


def _method_options(spec, size: int):
    """Widgets for the chosen method's options; its options dataclass (hashable: the cache key)."""
    from resviz.analysis.methods import BASELINES, occlusion_plan

    if spec.name == "integrated_gradients":
        with st.expander("Integrated Gradients options", expanded=False):
            c1, c2, c3, c4 = st.columns(4)
            baseline = c1.selectbox(
                "Baseline",
                list(BASELINES),
                key=state.ATTR_BASELINE,
                format_func=lambda b: f"{b}: {BASELINES[b]}",
            )
            steps = c2.slider("Steps", 4, 128, 32, step=4, key=state.ATTR_IG_STEPS)
            c2.toggle(
                f"Raise until complete (up to {IG_MAX_STEPS})",
                value=True,
                key=state.ATTR_IG_AUTO,
                help=f"Doubles the steps until the completeness error is under {IG_TOLERANCE:g}%.",
            )
            tunnel = c3.toggle("Noise tunnel (SmoothGrad)", key=state.ATTR_NOISE_TUNNEL)
            samples = c4.slider("Noisy samples", 2, 16, 4, key=state.ATTR_NT_SAMPLES, disabled=not tunnel)
        return spec.options(baseline=baseline, steps=steps, noise_tunnel=tunnel, nt_samples=samples)
    if spec.name == "occlusion":
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
        return spec.options(window=window)
    if spec.engine == "forward":
        batch = st.select_slider(
            "Batch size (forward passes evaluated together)",
            [8, 16, 32, 64, 128, 256],
            value=64,
            key=state.ATTR_BATCH_SIZE,
        )
        return spec.options(batch_size=int(batch), **_table_option_widgets(spec, skip=("batch_size",)))
    return spec.options(**_table_option_widgets(spec))


def _table_option_widgets(spec, skip: tuple[str, ...] = ()) -> dict:
    """A widget per option of the method table's dataclass (label, range and help from its field's
    metadata); keys are ``attr_opt_<method>_<field>``, under the page's prefix."""
    import dataclasses

    fields = [f for f in dataclasses.fields(spec.options) if f.name not in skip]
    if not fields:
        return {}
    values = {}
    with st.expander(f"{spec.label} options", expanded=False):
        for col, f in zip(st.columns(len(fields)), fields):
            meta, key = f.metadata, f"{state.ATTR_OPTION_PREFIX}{spec.name}_{f.name}"
            if isinstance(f.default, bool):
                values[f.name] = col.toggle(meta["label"], value=f.default, key=key, help=meta["help"])
                continue
            kind = float if isinstance(f.default, float) else int
            values[f.name] = col.number_input(
                meta["label"],
                min_value=kind(meta["min"]),
                max_value=kind(meta["max"]),
                value=f.default,
                step=kind(0.1 if kind is float else 1),
                key=key,
                help=meta["help"],
            )
    return values


@st.cache_data(show_spinner=False, max_entries=16)
def _probe(model_key: str, layer: str, side: int, channels: int, _model) -> tuple[int, float]:
    from resviz.analysis.cams_forward import probe_layer

    return probe_layer(_model, layer, side, channels)


def _request_run(key: tuple) -> None:
    st.session_state[state.ATTR_RUN_PENDING] = key
    st.session_state.pop(state.ATTR_STOPPED, None)


def _request_stop() -> None:
    # A callback runs before the script, so the stop is seen whatever the click interrupted (a run
    # still at "Starting…", or between two progress updates), and the run's slot below says so.
    st.session_state.pop(state.ATTR_RUN_PENDING, None)
    st.session_state[state.ATTR_STOPPED] = st.session_state.get(state.ATTR_PROGRESS, (None, 0, 0))


def _stopped_text(label: str, key: tuple) -> str | None:
    """What to say after a click on Stop (None when it stopped another run than ``key``'s)."""
    stopped, done, total = st.session_state.get(state.ATTR_STOPPED, (key, 0, 0))
    if stopped not in (None, key):
        return None
    if stopped is None:  # pressed while nothing ran
        return f"Nothing is running; press Run to start {label}."
    if not done:
        return f"{label} stopped before its first batch of forward passes; press Run to start again."
    return f"{label} stopped after {done} of {total} forward passes; press Run to start again."


def _slow_result(spec, loaded, model_key, images, layer, target, options):
    """A forward-pass CAM: its cost first, then it runs on a click, with a progress bar and Stop.

    Kept in session state rather than ``st.cache_data``: its progress bar must not be replayed. A
    click on Stop reruns the script, which interrupts the run at its next progress update; its
    callback records the stop, and the same slot that held the progress bar says where it stopped.
    """
    from dataclasses import fields

    from resviz.analysis.attribution import attribute_images
    from resviz.analysis.cams_forward import estimate_seconds, forward_passes

    key = (model_key, tuple(im.digest for im in images), spec.name, layer, target, options)
    done = st.session_state.setdefault(state.ATTR_SLOW_RESULTS, {})
    if key in done:
        return done[key]
    prep = loaded.preprocessing
    channels, per_pass = _probe(model_key, layer, prep.crop, prep.channels, loaded.model)
    samples = getattr(options, "num_samples", 1)  # SS-CAM, IS-CAM: the table's cost per sample
    passes = forward_passes(channels, len(images), samples)
    seconds = estimate_seconds(passes, per_pass)
    per_sample = f" x {samples} samples" if "num_samples" in {f.name for f in fields(options)} else ""
    st.info(
        f"{spec.label} at {layer}: {passes} forward passes ({channels} channels{per_sample} x "
        f"{len(images)} image(s)), {'at most' if spec.name == 'ablationcam' else 'about'} {seconds} s here. "
        f"Batches of {options.batch_size}."
    )
    run, stop = st.columns([1, 5])
    stop.button("Stop", key=state.ATTR_STOP, on_click=_request_stop)
    # A callback, not the button's return value: a rerun before the run (the image picker's) keeps it.
    run.button(f"Run {spec.label}", key=state.ATTR_RUN, type="primary", on_click=_request_run, args=(key,))
    # One slot for the bar and for what replaces it: a rerun that interrupts the run draws its
    # message where the bar was, so a stale "Starting…" bar cannot stay on the page.
    slot = st.empty()
    if st.session_state.get(state.ATTR_RUN_PENDING) != key:
        # A new script run means the last one is over (one run at a time per session).
        st.session_state.pop(state.ATTR_PROGRESS, None)
        said = _stopped_text(spec.label, key) if state.ATTR_STOPPED in st.session_state else None
        if said:
            slot.warning(said)
        return None
    st.session_state.pop(state.ATTR_RUN_PENDING, None)
    st.session_state[state.ATTR_PROGRESS] = (key, 0, passes)
    bar = slot.progress(0.0, text=f"Starting {spec.label}: {passes} forward passes…")

    def progress(n: int, total: int) -> bool:
        st.session_state[state.ATTR_PROGRESS] = (key, n, total)
        bar.progress(n / total, text=f"{n} of {total} forward passes")
        return True

    result = attribute_images(
        loaded,
        [im.image for im in images],
        spec.name,
        layer=layer,
        target=target,
        options=options,
        progress=progress,
    )
    slot.empty()
    st.session_state.pop(state.ATTR_PROGRESS, None)
    if len(done) >= 4:
        done.pop(next(iter(done)))
    done[key] = result
    return result


def _until_complete(result, model_key, digests, target, options, loaded, pils):
    """Integrated Gradients with its steps doubled until the completeness error is under
    :data:`IG_TOLERANCE` or the steps reach :data:`IG_MAX_STEPS` (each try cached); says so."""
    import dataclasses

    start = steps = options.steps
    while (
        result.completeness is not None
        and float(result.completeness.max()) > IG_TOLERANCE
        and steps < IG_MAX_STEPS
    ):
        steps = min(IG_MAX_STEPS, steps * 2)
        options = dataclasses.replace(options, steps=steps)
        result = _attribution(model_key, digests, result.method, None, target, options, loaded, pils)
    if steps != start:
        st.caption(
            f"Steps raised from {start} to {steps} so that the completeness error is under "
            f'{IG_TOLERANCE:g}% (at most {IG_MAX_STEPS}; turn off "Raise until complete" above to keep '
            "your number)."
        )
    return result


def _banner(loaded, choice) -> None:
    from resviz.models import get_spec
    from ui.models import show_model_banner, show_twin_warning

    if loaded.trained:
        show_model_banner(loaded)
        show_twin_warning(loaded)  # the grid and Faithfulness compare it with its twin
        return
    if loaded.notice:
        st.warning(loaded.notice)
    st.warning(UNTRAINED)
    if loaded.weights == "random" and get_spec(choice.name).pretrained_available:
        from resviz.models.weights import is_cached, pretrained_weights

        size = pretrained_weights(choice.name).meta.get("_file_size")  # torchvision's own metadata
        what = (
            "cached here"
            if is_cached(choice.name)
            else f"{size:.0f} MB, downloaded once"
            if size
            else "downloaded once"
        )
        st.button(
            f"Get pretrained ImageNet weights ({what})",
            key=state.ATTR_GET_PRETRAINED,
            on_click=_use_imagenet,
            help="Switches the sidebar to torchvision's ImageNet weights, with a progress bar while they "
            "download. For a machine that will be offline: `make weights` beforehand (see the README).",
        )


def _show_results(result, images, views, opacity: float, colormap: str, model_name: str) -> None:
    from resviz.analysis.attribution import METHODS
    from resviz.analysis.methods import get_method
    from resviz.plots.attribution import (
        overlay,
        overlay_figure,
        png_bytes,
        signed_figure,
        signed_map,
        top_k_figure,
    )

    spec = get_method(result.method)

    if result.completeness is not None:
        worst = float(result.completeness.max())
        text = "Completeness error (captum's convergence delta, |sum of attributions - (f(x) - f(baseline))|)"
        if worst > 5:
            st.warning(f"{text}: up to {worst:.1f}%, over 5%: more steps would help.")
        else:
            st.caption(f"{text}: up to {worst:.1f}%.")

    p = result.prediction
    where = f" at {result.layer}" if result.layer else ""
    for i, image in enumerate(images):
        label = markdown_text(result.target_labels[i])
        what = f" for **{label}**" if spec.uses_class else " (the same for every class)"
        st.markdown(f"**{markdown_text(image.name)}**: {METHODS[result.method]}{where}{what}")
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
            # Built on click: encoding every overlay on every rerun was a tenth of a layer switch.
            lambda i=i: png_bytes(overlay(views[i], result.maps[i], opacity=opacity, colormap=colormap)),
            f"{model_name}_{result.method}_{i}.png",
            "image/png",
            key=f"{state.ATTR_DOWNLOAD_PNG}_{i}",
            on_click="ignore",
        )
        if result.completeness is not None:
            right.caption(f"Completeness error of this map: {float(result.completeness[i]):.1f}%")
        signed = signed_map(result.raw[i]) if spec.signed and result.raw.ndim == 4 else None
        if signed is not None:
            right.plotly_chart(
                signed_figure(signed, result.target_labels[i]),
                key=f"{K}signed_{i}",
                config={"displaylogo": False},
            )
        elif spec.signed:
            right.caption("Turn off **Absolute gradient** in the options above to see the gradient's sign.")
    st.download_button(
        "All raw maps (.npz)",
        result.to_npz,
        f"{model_name}_{result.method}.npz",
        "application/octet-stream",
        key=state.ATTR_DOWNLOAD_NPZ,
        on_click="ignore",
        help="maps (N, H, W) in [0, 1], raw attributions, targets and top-5 for every image.",
    )


def _grid_columns(mode: str, c3) -> list[str]:
    """The grid's method columns: any quick method, or the gradient CAMs for the twin comparison."""
    from resviz.analysis.methods import METHOD_TABLE, METHODS

    if mode != "methods":
        gradient = [m.name for m in METHOD_TABLE if m.engine == "gradient"]
        return c3.multiselect(
            "Methods",
            gradient,
            default=["gradcam"],
            key=state.ATTR_GRID_TWIN_METHODS,
            format_func=METHODS.__getitem__,
            help="The same class in both networks.",
        )
    quick = [m.name for m in METHOD_TABLE if m.engine != "forward"]  # Score/Ablation-CAM: above, with a cost
    return c3.multiselect(
        "Columns (methods)",
        quick,
        default=["gradcam", "guided_gradcam"],
        key=state.ATTR_GRID_METHODS,
        format_func=METHODS.__getitem__,
        help="Every gradient CAM at every layer comes from one forward and one backward pass.",
    )


def _comparison(
    loaded, model_key, images, views, result, choices, opacity, colormap, method, options
) -> None:
    from resviz.plots.attribution import comparison_grid

    st.subheader("Comparison grid")
    if not st.toggle(
        "Show the grid",
        key=state.ATTR_GRID,
        help="Rows are layers; columns are methods, or this network and a counterpart without shortcuts.",
    ):
        return
    from resviz.analysis.pairs import counterpart_caption, counterpart_name, twin_run_path

    residual = bool(loaded.config.skip)
    trained_path = twin_run_path(loaded)  # a run whose twin was trained beside it
    modes = ["methods", "twin", *(["trained"] if trained_path else [])]
    if st.session_state.get(state.ATTR_GRID_MODE) not in modes:
        st.session_state[state.ATTR_GRID_MODE] = "methods"
    titles = {
        "methods": "methods",
        "twin": f"vs {counterpart_name(residual, False)}",
        "trained": f"vs {counterpart_name(residual, True)}",
    }
    c1, c2, c3 = st.columns(3)
    mode = c1.radio(
        "Columns",
        modes,
        key=state.ATTR_GRID_MODE,
        format_func=titles.__getitem__,
        help="Methods side by side; or this network next to its own weights with the shortcuts cut "
        "(a broken network: what the shortcuts do inside this one); or, for a run, next to the "
        "twin trained without shortcuts in the same session (a working network).",
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
    methods = _grid_columns(mode, c3)
    if not layers or not methods:
        st.info("Choose at least one layer and one method.")
        return
    idx = int(idx or 0)
    twin = None
    if mode == "twin":
        twin = _twin(model_key, loaded.model)
    elif mode == "trained":
        twin = _trained_twin(trained_path, loaded.name)
    twin_key = counterpart_name(residual, mode == "trained") if twin is not None else "methods"
    with st.spinner("Computing the grid…"):
        cells = _grid(
            model_key,
            twin_key,
            images[idx].digest,
            tuple(layers),
            tuple(methods),
            int(result.targets[idx]),
            ((method, options),),
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
    label = markdown_text(repr(result.target_labels[idx]))
    said = f"Every cell explains class {label}, the class of the view above."
    if twin is not None:
        said = f"{counterpart_caption(residual, mode == 'trained')} {said}"
    st.caption(said)


def _controls(loaded, choices, names):
    """Method, layer, class, opacity and colormap widgets: ``(spec, layer, target, opacity, colormap)``."""
    from resviz.analysis.attribution import default_layer
    from resviz.analysis.methods import METHOD_TABLE, METHODS, get_method
    from resviz.plots.attribution import COLORMAPS

    model, num_classes = loaded.model, loaded.config.num_classes
    c1, c2, c3 = st.columns(3)
    if st.session_state.get(state.ATTR_METHOD, "gradcam") not in METHODS:
        st.session_state[state.ATTR_METHOD] = "gradcam"
    method = c1.selectbox(
        f"Method ({len(METHOD_TABLE)})",
        list(METHODS),
        key=state.ATTR_METHOD,
        format_func=METHODS.__getitem__,
        help=f"{len(METHOD_TABLE)} methods. The per-channel CAMs (Score-CAM, SS-CAM, IS-CAM, "
        "Ablation-CAM) say their cost before running; the README lists every cost.",
    )
    spec = get_method(method)
    # A new model resets the layer to its own default (its last stage) unless the user picked
    # another layer that it also has: layer3, the demo ResNet-56's last stage, is not ResNet-18's.
    default, before = default_layer(model), st.session_state.get(state.ATTR_LAYER_DEFAULT)
    st.session_state[state.ATTR_LAYER_DEFAULT] = default
    current = st.session_state.get(state.ATTR_LAYER)
    if current not in choices or (current == before and before != default):
        st.session_state[state.ATTR_LAYER] = default
    layer = c2.selectbox(
        "Layer",
        choices,
        key=state.ATTR_LAYER,
        disabled=not spec.needs_layer,
        help="Stages, then blocks, then every module inside them.",
    )
    if st.session_state.get(state.ATTR_TARGET, PREDICTED) not in range(PREDICTED, num_classes):
        st.session_state[state.ATTR_TARGET] = PREDICTED  # another model with fewer classes

    def label(t: int) -> str:
        if t == PREDICTED:
            return "the predicted class"
        return f"{t}: {names[t]}" if names and t < len(names) else f"{t}: {loaded.class_name(t)}"

    target = c3.selectbox(
        "Class to explain",
        range(PREDICTED, num_classes),
        key=state.ATTR_TARGET,
        format_func=label,
        disabled=not spec.uses_class,
        help=None if spec.uses_class else f"{spec.label} gives the same map for every class.",
    )
    st.caption(f"**{spec.label}**: {spec.about} Cost per image: {spec.cost_text}.")
    c4, c5 = st.columns(2)
    opacity = c4.slider("Map opacity", 0.0, 1.0, 0.5, 0.05, key=state.ATTR_OPACITY)
    colormap = c5.selectbox("Colormap", COLORMAPS, key=state.ATTR_COLORMAP)
    return (
        spec,
        (layer if spec.needs_layer else None),
        (None if target == PREDICTED or not spec.uses_class else int(target)),
        opacity,
        colormap,
    )


def main() -> None:
    st.title("Attribution")
    st.caption(
        "Where the network looks for a class: Grad-CAM and the CAM family at any layer, and captum's "
        "input attributions. Many images go through in one batch."
    )
    from resviz.errors import ResvizError

    try:
        from resviz.analysis.attribution import class_names_for, layer_choices
        from ui.images import image_picker
        from ui.models import current_choice, current_model, show_photo_notice

        choice = current_choice()
        loaded = current_model(choice)
        _banner(loaded, choice)
        names, names_note = class_names_for(loaded)
        if names_note:
            st.caption(names_note)
        images = image_picker(K, multiple=True, label="Images")
        if not images:
            st.info("Pick a sample image or upload one or more photos.")
            return
        show_photo_notice(loaded, images)
        choices = layer_choices(loaded.model)
        spec, layer, target, opacity, colormap = _controls(loaded, choices, names)
        options = _method_options(spec, loaded.preprocessing.crop)
        model_key = repr(choice)
        if spec.engine == "forward":
            result = _slow_result(spec, loaded, model_key, images, layer, target, options)
        else:
            with st.spinner(f"{spec.label} for {len(images)} image(s)…"):
                digests = tuple(im.digest for im in images)
                pils = [im.image for im in images]
                result = _attribution(model_key, digests, spec.name, layer, target, options, loaded, pils)
                if spec.name == "integrated_gradients" and st.session_state.get(state.ATTR_IG_AUTO, True):
                    result = _until_complete(result, model_key, digests, target, options, loaded, pils)
        if result is not None:  # None: a forward-pass CAM not run yet
            prep = loaded.preprocessing
            views = [_view(im.digest, repr(prep), prep, im.image) for im in images]
            _show_results(result, images, views, opacity, colormap, choice.name)
            _comparison(
                loaded, model_key, images, views, result, choices, opacity, colormap, spec.name, options
            )

        # ---------------------------------------------- Faithfulness (issue 9, section 4): its own section
        from ui.sections import faithfulness

        faithfulness.render(loaded, images, model_key=model_key)
    except ResvizError as exc:
        st.error(markdown_text(exc))
        return


main()
