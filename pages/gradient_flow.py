"""Gradient Flow: a residual network and its plain twin, same seed, same batch, side by side.

Widgets -> :mod:`resviz.analysis.gradients` (and its depth sweep and twin training) ->
:mod:`resviz.plots.gradients`. By default the page builds its own twin pair from a seed; it can
instead profile a *copy* of the sidebar's model (a
saved training run, a checkpoint, ImageNet weights) and its twin, never the shared model itself.
The sweep and training tabs always use seed-built twins, so training them touches nobody else.
Profiles are cached per settings (``st.cache_data``); training runs are kept per settings in this
session, so a stopped run keeps its steps and can be resumed.
"""

from __future__ import annotations

import streamlit as st

from resviz.text import markdown_text  # user and file text: shown, never markup
from ui import state
from ui.shared_results import twin_gradient_profile
from ui.shell import ensure_entry_point

ensure_entry_point()

MAX_TRAINERS = 3  # training runs kept per session (each holds two models)
MODEL_SOURCES = {"seed": "fresh twins from a seed", "sidebar": "the sidebar's model and its counterpart"}


def main() -> None:
    st.title("Gradient Flow")
    st.caption(
        "Does the gradient still reach the first layers? **Fresh twins from a seed** have the same depth, "
        "initialization seed and batch, with and without shortcuts: there the shortcut is the only "
        "difference. **The sidebar's model** is compared with its plain twin (trained) when its run has "
        "one (then the two also trained apart), else with its shortcuts cut (same weights). "
        "With BatchNorm the plain net's gradients grow toward the input rather than vanish; they shrink "
        "only without it."
    )
    from resviz.errors import ResvizError

    try:
        which = st.radio(
            "Models",
            list(MODEL_SOURCES),
            key=state.GRAD_MODEL_SOURCE,
            format_func=MODEL_SOURCES.get,
            horizontal=True,
            help="The sidebar's model (a saved training run, a checkpoint, ImageNet weights) is copied, "
            "never changed; its counterpart is the plain twin (trained) beside it in the same session, "
            "or, without one, its shortcuts cut (same weights).",
        )
        twins, batch = _settings(fixed_model=which == "sidebar")
        device = st.session_state.get(state.DEVICE, "auto")
        first = "The sidebar's model" if which == "sidebar" else "At initialization"
        init_tab, sweep_tab, train_tab = st.tabs([first, "Depth sweep", "Training"])
        with init_tab:
            if which == "sidebar":
                _sidebar_model(batch, device)
            else:
                _at_init(twins, batch, device)
        with sweep_tab:
            _sweep(twins, batch, device)
        with train_tab:
            _training(twins, batch, device)
    except ResvizError as exc:
        st.error(markdown_text(exc))


def _settings(fixed_model: bool = False):
    """The settings panel; with ``fixed_model`` (the sidebar's model) the seed-twin knobs are greyed out."""
    from resviz.analysis.batches import BatchSettings
    from resviz.analysis.twins import TwinSettings

    st.session_state.setdefault(state.GRAD_DEPTH_CIFAR, 56)
    st.session_state.setdefault(state.GRAD_DEPTH_IMAGENET, 18)
    with st.container(border=True):
        if fixed_model:
            st.caption(
                "The sidebar's model brings its own architecture, weights and data: the greyed-out knobs "
                "(the batch's images, loss and input size included) describe the seed-built twins, used "
                "as set by the **Depth sweep** and **Training** tabs. Batch size and seed apply to both."
            )
        c1, c2, c3, c4 = st.columns(4)
        with c1:
            family, depth, stages = _network_widgets(fixed_model)
        with c2:
            bn, init, seed = _init_widgets(fixed_model)
        with c3:
            zero, scale = _taming_widgets(fixed_model)
        with c4:
            source, labels, batch_size, size = _batch_widgets(fixed_model)
    twins = TwinSettings(
        depth=int(depth),
        imagenet=family == "imagenet",
        layers=stages,
        batchnorm=bn,
        init=init,
        zero_init_residual=zero,
        branch_scale=float(scale),
        seed=int(seed),
    )
    twins.config()  # fail early, with a sentence, on an impossible combination
    return twins, BatchSettings(source, labels, int(batch_size), int(size), int(seed))


def _network_widgets(disabled: bool = False):
    from resviz.analysis.twins import CIFAR_DEPTHS, IMAGENET_DEPTHS, parse_stage_sizes

    family = st.radio(
        "Networks",
        ["cifar", "imagenet"],
        key=state.GRAD_FAMILY,
        disabled=disabled,
        format_func={"cifar": "CIFAR (16-64 channels)", "imagenet": "ImageNet 18/34"}.get,
        horizontal=True,
    )
    stages = None
    if family == "cifar":
        depth = st.selectbox("Depth", CIFAR_DEPTHS, key=state.GRAD_DEPTH_CIFAR, disabled=disabled)
        stages = parse_stage_sizes(
            st.text_input(
                "Or blocks per stage",
                key=state.GRAD_STAGES,
                disabled=disabled,
                placeholder="e.g. 30,30,30 (182 layers)",
                help="Deeper or uneven CIFAR nets: 6·blocks+2 layers. Blank uses the depth above.",
            )
        )
    else:
        depth = st.selectbox("Depth", IMAGENET_DEPTHS, key=state.GRAD_DEPTH_IMAGENET, disabled=disabled)
    return family, depth, stages


def _init_widgets(disabled: bool = False):
    bn = st.toggle("BatchNorm", value=True, key=state.GRAD_BN, disabled=disabled)
    init = st.selectbox(
        "Initialization",
        ["kaiming", "xavier", "default"],
        key=state.GRAD_INIT,
        disabled=disabled,
        format_func={
            "kaiming": "Kaiming (He)",
            "xavier": "Xavier (Glorot)",
            "default": "PyTorch default",
        }.get,
    )
    seed = st.number_input("Seed", 0, 2**31 - 1, 0, key=state.GRAD_SEED)
    return bn, init, seed


def _taming_widgets(disabled: bool = False):
    zero = st.toggle(
        "Zero-init branch ends",
        key=state.GRAD_ZERO_INIT,
        disabled=disabled,
        help="Every block starts as the identity (Goyal et al. 2017); tames the no-BN residual net.",
    )
    scale = st.number_input(
        "Branch scale",
        min_value=0.0,
        max_value=10.0,
        value=1.0,
        step=0.05,
        key=state.GRAD_BRANCH_SCALE,
        disabled=disabled,
        help="F(x) is multiplied by this before the addition (SkipInit / Fixup-style; try 0.1).",
    )
    return zero, scale


def _batch_widgets(fixed_model: bool = False):
    """Batch widgets; with ``fixed_model`` the images, loss and size are the model's own (greyed)."""
    from resviz.analysis.batches import BATCH_SOURCE_DETAILS, BATCH_SOURCES, LABEL_KINDS

    details = " ".join(f"**{BATCH_SOURCES[k]}**: {text}." for k, text in BATCH_SOURCE_DETAILS.items())
    source = st.selectbox(
        "Batch",
        list(BATCH_SOURCES),
        key=state.GRAD_SOURCE,
        format_func=BATCH_SOURCES.get,
        help=details,
        disabled=fixed_model,
    )
    labels = st.radio(
        "Loss", list(LABEL_KINDS), key=state.GRAD_LABELS, format_func=LABEL_KINDS.get, disabled=fixed_model
    )
    b1, b2 = st.columns(2)
    batch_size = b1.selectbox("Batch size", [4, 8, 16, 32, 64, 128], index=3, key=state.GRAD_BATCH)
    size = b2.selectbox("Input size", [16, 32, 64, 128], index=1, key=state.GRAD_SIZE, disabled=fixed_model)
    return source, labels, batch_size, size


@st.cache_data(show_spinner=False, max_entries=16)
def _loaded_profile(choice_key: str, batch_size: int, seed: int, device: str, _loaded):
    """Cached per sidebar choice (``choice_key``); ``_loaded`` is the shared model, not hashed."""
    from resviz.analysis.gradients import loaded_twin_profile
    from resviz.device import configure_cpu_threads

    configure_cpu_threads()
    return loaded_twin_profile(_loaded, batch_size=batch_size, seed=seed, device=device, split=True)


def _sidebar_model(batch, device: str) -> None:
    from resviz.analysis.pairs import counterpart_caption, counterpart_name, twin_run_path
    from ui.models import current_choice, current_model, show_model_banner, show_twin_warning

    loaded = current_model()
    show_model_banner(loaded)
    show_twin_warning(loaded)
    residual, trained = bool(loaded.config.skip), twin_run_path(loaded) is not None
    st.caption(
        f"{counterpart_caption(residual, trained)} A copy of each, in train mode, on one batch that fits "
        "the model (a run's held-out images with their true labels; otherwise random inputs and labels). "
        "The batch size and seed above apply."
    )
    with st.spinner(
        f"Forward and backward pass of {loaded.name} and its {counterpart_name(residual, trained)}…"
    ):
        pair = _loaded_profile(repr(current_choice()), batch.batch_size, batch.seed, device, loaded)
    st.caption(f"Measured: {markdown_text(pair.source)}.")
    _show_pair(pair)


def _download(label: str, rows: list[dict[str, object]], name: str) -> None:
    from resviz.export import to_csv

    st.download_button(
        label,
        to_csv(rows),
        file_name=f"{name}.csv",
        mime="text/csv",
        key=f"{state.GRAD_DOWNLOAD}_{name}",
        on_click="ignore",
        icon=":material/download:",
    )


def _at_init(twins, batch, device: str) -> None:
    with st.spinner(f"Forward and backward pass of both {twins.label} twins…"):
        pair = twin_gradient_profile(twins, batch, device, True)
    _show_pair(pair)
    if twins.zero_init_residual:
        st.warning(ZERO_INIT_NOTE)


ZERO_INIT_NOTE = (
    "Zero-init applies to both twins. In the residual net each block starts as the identity; in the "
    "plain twin, whose only path is the branch, it zeroes every block's output: no signal goes "
    "forward and no gradient comes back, so its first/last ratio is 0 and its loss is flat."
)


def _show_pair(pair) -> None:
    """Metrics, the twin chart and the shortcut/branch split of one profiled pair, with CSVs."""
    from resviz.analysis.gradients import block_rows, profile_rows
    from resviz.plots import gradients as gp

    res, plain = pair.residual, pair.plain
    m1, m2, m3, m4 = st.columns(4)
    m1.metric(f"{res.model}: first/last block", f"{res.first_last_ratio:.3g}")
    m2.metric(f"{plain.model}: first/last block", f"{plain.first_last_ratio:.3g}")
    m3.metric(f"{res.model}: loss", f"{res.loss:.4g}")
    m4.metric(f"{plain.model}: loss", f"{plain.loss:.4g}")
    st.caption(
        "First/last: gradient norm at the first block's output over the last block's. Above 1, gradients "
        "grow toward the input; below 1 they vanish; 0, none reaches the first block. A huge loss means "
        "the forward signal blew up (no BatchNorm): try zero-init or a branch scale."
    )
    metric = st.radio(
        "Show",
        list(gp.METRIC_LABELS),
        key=state.GRAD_METRIC,
        format_func=gp.METRIC_LABELS.get,
        horizontal=True,
    )
    st.plotly_chart(gp.twin_figure(pair, metric), key="grad_chart_twin")
    _download("Per-layer norms (CSV)", profile_rows(pair), "gradient_norms_per_layer")
    st.subheader("Shortcut or branch?")
    st.caption(
        "How the gradient reaching each block's input splits between the shortcut and the residual "
        "branch (norm of each path's part; the two parts add up as vectors)."
    )
    st.plotly_chart(gp.split_figure(pair), key="grad_chart_split")
    _download("Per-block split (CSV)", block_rows(pair), "gradient_split_per_block")


def _sweep(twins, batch, device: str) -> None:
    from resviz.analysis.depth_sweep import sweep_from_profiles, sweep_rows, sweep_settings
    from resviz.analysis.twins import CIFAR_DEPTHS
    from resviz.plots import gradients as gp

    st.caption(
        "CIFAR twin pairs at every depth, with the knobs above (BatchNorm, initialization, zero-init, "
        "branch scale, seed) and the same batch. Compare BatchNorm on and off: two different regimes."
        + (" " + ZERO_INIT_NOTE if twins.zero_init_residual else "")
    )
    depths = st.multiselect(
        "Depths",
        [8, 14, *CIFAR_DEPTHS, 164, 218],
        default=list(CIFAR_DEPTHS),
        key=state.GRAD_SWEEP_DEPTHS,
    )
    if not depths:
        st.info("Pick at least one depth.")
        return
    request = (twins, batch, tuple(sorted(depths)))
    asked = st.session_state.setdefault(state.GRAD_SWEEPS, set())
    # Clicks act in callbacks: they run before the script, so no rerun can drop them.
    st.button("Run the sweep", key=state.GRAD_SWEEP_RUN, type="primary", on_click=asked.add, args=(request,))
    if request not in asked:
        st.info("Press **Run the sweep**: deep nets take a few seconds each on a CPU. Results are kept.")
        return
    bar = st.progress(0.0, text="Sweeping depths…")
    pairs = []
    for i, depth in enumerate(request[2]):
        pairs.append(twin_gradient_profile(sweep_settings(twins, depth), batch, device, False))
        bar.progress((i + 1) / len(request[2]), text=f"Depth {depth} done")
    bar.empty()
    sweep = sweep_from_profiles(pairs, twins, batch)
    st.plotly_chart(gp.sweep_figure(sweep), key="grad_chart_sweep")
    st.plotly_chart(gp.sweep_loss_figure(sweep), key="grad_chart_sweep_loss")
    _download("Depth sweep (CSV)", sweep_rows(sweep), "gradient_depth_sweep")


def _set_pending(value: bool) -> None:
    st.session_state[state.GRAD_TRAIN_PENDING] = value


def _training(twins, batch, device: str) -> None:
    from resviz.analysis.twin_training import TwinTrainer, training_rows

    st.caption(
        "Both twins train side by side on the same batches: SGD with momentum 0.9 and weight decay 1e-4, "
        "as in the paper. With the digits batch source each step draws a new minibatch."
    )
    if batch.labels == "random":
        st.info(
            "Random labels carry nothing to learn: the loss can only fall by memorising this batch, and a "
            "high learning rate makes it jump. Pick the digits batch with true labels above to watch "
            "the twins learn."
        )
    c1, c2, c3, c4 = st.columns([2, 2, 1, 1], vertical_alignment="bottom")
    steps = c1.number_input("Train to step", 1, 2000, 20, key=state.GRAD_STEPS)
    lr = c2.select_slider(
        "Learning rate",
        [0.001, 0.01, 0.03, 0.1, 0.3],
        value=0.01,  # stable for both twins at every depth offered; 0.1 makes ResNet-56's loss spike
        key=state.GRAD_LR,
    )
    c3.button("Train", key=state.GRAD_TRAIN, type="primary", on_click=_set_pending, args=(True,))
    # A click on Stop interrupts a running loop at its next progress update (after a whole step).
    stop = c4.button("Stop", key=state.GRAD_STOP, on_click=_set_pending, args=(False,))
    train = st.session_state.pop(state.GRAD_TRAIN_PENDING, False)

    trainers: dict = st.session_state.setdefault(state.GRAD_TRAINERS, {})
    key = (twins, batch, float(lr))
    trainer = trainers.get(key)
    if train:
        if trainer is None:
            trainer = TwinTrainer(twins, batch, lr=float(lr), device=device)
            trainers[key] = trainer
            while len(trainers) > MAX_TRAINERS:
                trainers.pop(next(iter(trainers)))
        _train_drawing(trainer, int(steps))
    if trainer is None or trainer.steps_done == 0:
        st.info("Press **Train** to train both twins; the charts fill in as steps run.")
        return
    if stop or trainer.steps_done < int(steps):
        st.info(f"Stopped at step {trainer.steps_done} of {int(steps)}. Press **Train** to continue.")
    _draw_training(trainer.result(), st.container())
    _download("Training record (CSV)", training_rows(trainer.result()), "gradient_training")


REDRAW_S = 1.0  # while training, the charts are redrawn at most this often (a redraw costs ~0.1 s)


def _train_drawing(trainer, target: int) -> None:
    """Train to ``target`` steps one step at a time, with a bar that says the time left and the
    charts redrawn as the steps come in.

    A click on Stop (or any widget) interrupts the script at the next progress update, after a
    whole step; the trainer in session state keeps every step so far.
    """
    import time

    bar = st.progress(trainer.steps_done / target, text="Training: the first step is timed…")
    charts = st.empty()
    start, first, last_draw = time.perf_counter(), trainer.steps_done, 0.0
    while trainer.steps_done < target:
        trainer.step(1)
        now = time.perf_counter()
        per_step = (now - start) / (trainer.steps_done - first)
        left = per_step * (target - trainer.steps_done)
        bar.progress(
            trainer.steps_done / target,
            text=f"Step {trainer.steps_done} of {target}: {per_step:.2g} s a step, about {left:.0f} s left",
        )
        if now - last_draw >= REDRAW_S or trainer.steps_done == target:
            _draw_training(trainer.result(), charts.container(), live=f"_live{trainer.steps_done}")
            last_draw = time.perf_counter()
    bar.empty()
    charts.empty()  # drawn once more below, with their downloads


def _draw_training(run, where, live: str = "") -> None:
    """The loss chart and the two gradient heatmaps of a training record, into ``where``; ``live``
    suffixes the keys of a redraw during the loop (each redraw is a new element: no key twice)."""
    from resviz.plots import gradients as gp

    suffix = live
    zrange = gp.heatmap_range(run)
    with where:
        st.plotly_chart(gp.loss_figure(run), key=f"grad_chart_loss{suffix}")
        h1, h2 = st.columns(2)
        h1.plotly_chart(
            gp.training_heatmap(run, "residual", zrange=zrange), key=f"grad_chart_heat_res{suffix}"
        )
        h2.plotly_chart(
            gp.training_heatmap(run, "plain", zrange=zrange), key=f"grad_chart_heat_plain{suffix}"
        )


main()
