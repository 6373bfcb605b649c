"""Training Lab: watch the degradation problem happen, then open the trained models on every page.

Widgets -> :class:`resviz.training.TrainingJob` (a background thread that builds and trains its own
models, never the sidebar's shared one) -> :mod:`resviz.plots.training`. A fragment polls the job
once a second while it runs; the stop button asks the thread to stop after its current step, and
what was trained is kept and saved like a finished run.
"""

from __future__ import annotations

import functools
import uuid

import streamlit as st

from resviz.text import markdown_text  # user and file text: shown, never markup
from ui import state
from ui.shell import ensure_entry_point

ensure_entry_point()  # a deep link runs inside app.py's shell (sidebar model picker included)

DEPTHS = (8, 14, 20, 32, 44, 56, 110)
WIDTHS: dict[str, tuple[int, int, int] | None] = {
    "paper": None,
    "reduced": (8, 16, 32),
    "tiny": (4, 8, 16),
}
WIDTH_LABELS = {
    "paper": "the paper's 16/32/64",
    "reduced": "reduced 8/16/32 (4x faster)",
    "tiny": "tiny 4/8/16 (for a quick look)",
}
CPU_MINUTES = (1, 2)  # the CPU default's measured time on 2 cores; other settings are scaled from it
PRESET_LABELS = {
    "cpu": "CPU default: digits, 300 steps, 4 networks",
    "shapes": "Shapes with masks: 400 steps, reduced widths, Grad-CAM pointing game",
    "demo": "The bundled demo group's recipe: shapes 32x32, 2,000 steps (about 23 min on 2 cores)",
    "paper": "Paper scale: CIFAR-10, 64k steps (for a GPU)",
}


def main() -> None:
    st.title("Training Lab")
    st.caption(
        "He et al. 2015, Fig. 1 and 6: a deeper **plain** network ends with a *higher training error* than "
        "a shallower one, while a **residual** network of the same depth does not. Train them side by side "
        "and watch; the trained models are saved and can be picked in the sidebar on every page."
    )
    from resviz.errors import ResvizError
    from resviz.sharing import owns
    from resviz.training import running_job
    from ui.sharing import current, session_id

    sharing = current()
    job = st.session_state.get(state.TRAIN_JOB)
    other = running_job()
    if other is not None and other is not job and (job is None or not job.running):
        # One run at a time per process (the CPU): a run started elsewhere, or before a reload, is
        # shown here with its progress, not left training unseen; only its owner gets a Stop.
        st.session_state[state.TRAIN_JOB] = job = other
        if owns(other.owner, session_id()):
            st.info("A run is already going (started in another tab); its progress is below.")
        else:
            st.info("Another visitor's run is going; its progress is below. Only they can stop it.")
    running = job is not None and job.running
    mine = job is not None and owns(job.owner, session_id())
    if not sharing.allow_training:
        st.info("Training is turned off on this server (RESVIZ_ALLOW_TRAINING).")
    st.session_state[state.TRAIN_LIVE] = running
    try:
        ready = _settings(running)
    except ResvizError as exc:
        st.error(markdown_text(exc))
        ready = False
    start_col, stop_col, _ = st.columns([1, 1.6, 3.4])
    # Both buttons act in callbacks, before the script runs: a click is never lost to a rerun.
    start_col.button(
        "Start training",
        key=state.TRAIN_START,
        type="primary",
        disabled=running or not ready or not sharing.allow_training,
        on_click=_start,
    )
    stop_col.button(
        "Stop (keep what was trained)",
        key=state.TRAIN_STOP,
        disabled=not (running and mine),
        on_click=job.stop if running and mine else None,
    )
    if error := st.session_state.pop(state.TRAIN_START_ERROR, None):
        st.error(markdown_text(error))
    job = st.session_state.get(state.TRAIN_JOB)
    if job is not None and job.running and job.config.steps > 5000 and _on_cpu(job.config.device):
        st.warning(
            f"{job.config.steps} steps on the CPU take a long time; the paper scale is meant for a GPU."
        )
    if job is not None:
        _live(running)
        if job.finished:
            _results(job)
    else:
        _demo_group()


def _demo_group() -> None:
    """Before a run: the bundled group, trained with the demo preset on three seeds."""
    from resviz.demo import degradation_checks, load_seeds
    from resviz.plots.training import seed_band_figure
    from ui.section_kit import chart

    seeds = load_seeds()
    if not seeds:
        return
    st.markdown("**What the bundled demo group did** (preset *demo*: `make demo-weights`)")
    metric = st.radio(
        "Curve",
        ["train_error", "test_error"],
        format_func={"train_error": "training error", "test_error": "held-out error"}.get,
        horizontal=True,
        key=state.TRAIN_DEMO_METRIC,
    )
    rows = [
        {"seed": c.seed, "claim": c.claim, "measured": c.figure, "holds": "yes" if c.holds else "no"}
        for c in degradation_checks(seeds)
    ]
    chart(seed_band_figure(seeds, metric), state.TRAIN_DEMO_CHART, "demo_group_seeds", rows=rows)
    with st.expander("He et al.'s Figure 6, checked on every seed"):
        st.dataframe(rows, hide_index=True)


def _folder_root():
    """Where folder training may read from (resviz.sharing; RESVIZ_DATA_DIR)."""
    from ui.sharing import current

    return current().data_root


def _on_cpu(device: str) -> bool:
    from resviz.device import resolve_device

    return resolve_device(device).type == "cpu"


def _apply_preset() -> None:
    """Fill the widgets from the chosen preset (a callback: runs before the widgets are drawn)."""
    from resviz.models import get_config
    from resviz.training import PRESETS

    cfg = PRESETS[st.session_state[state.TRAIN_PRESET]]
    st.session_state[state.TRAIN_DATASET] = cfg.dataset
    st.session_state[state.TRAIN_DEPTHS] = sorted({get_config(m).depth for m in cfg.models})
    st.session_state[state.TRAIN_KINDS] = ["plain", "residual"]
    st.session_state[state.TRAIN_WIDTHS] = next(k for k, w in WIDTHS.items() if w == cfg.widths)
    st.session_state[state.TRAIN_STEPS] = cfg.steps
    st.session_state[state.TRAIN_LR] = cfg.lr
    st.session_state[state.TRAIN_DOWNLOAD] = cfg.download
    if cfg.size is None:
        st.session_state.pop(state.TRAIN_SIZE, None)  # back to the dataset's own default size
    else:
        st.session_state[state.TRAIN_SIZE] = cfg.size


def _time_estimate() -> str | None:
    """The settings' training time on 2 cores, scaled from the CPU default's measured 1-2 minutes by
    steps x layers x width squared (None while the form is half-filled)."""
    from resviz.errors import ResvizError
    from resviz.models import get_config
    from resviz.training import PRESETS

    try:
        cfg = _config()
    except (ResvizError, KeyError, ValueError):
        return None

    def work(c) -> float:
        width = (c.widths or (16,))[0] / 16
        return c.steps * sum(get_config(m).depth for m in c.models) * width**2

    ratio = work(cfg) / work(PRESETS["cpu"])
    lo, hi = (m * ratio for m in CPU_MINUTES)
    when = f"{lo * 60:.0f}-{max(1.0, hi * 60):.0f} seconds" if hi < 2 else f"{lo:.0f}-{hi:.0f} minutes"
    return (
        f"These settings ({cfg.dataset}, {cfg.steps} steps, {len(cfg.models)} networks): about {when} "
        "on 2 cores (scaled from the CPU default's 1-2 minutes; a GPU is much faster)."
    )


def _settings(running: bool) -> bool:
    """Draw the settings; True when they describe a run that can start."""
    from resviz.datasets import DATASETS
    from resviz.training import PRESETS

    if state.TRAIN_PRESET not in st.session_state:
        st.session_state[state.TRAIN_PRESET] = "cpu"
        _apply_preset()
    with st.container(border=True):
        st.selectbox(
            "Configuration",
            list(PRESETS),
            key=state.TRAIN_PRESET,
            format_func=PRESET_LABELS.get,
            on_change=_apply_preset,
            disabled=running,
        )
        c1, c2, c3 = st.columns(3)
        with c1:
            dataset = st.selectbox(  # the name before the colon fits the box; the help has the rest
                "Dataset",
                list(DATASETS),
                key=state.TRAIN_DATASET,
                format_func=lambda k: DATASETS[k].split(":")[0],
                help=" ".join(f"**{d.split(':')[0]}**:{d.split(':', 1)[1]}." for d in DATASETS.values()),
                disabled=running,
            )
            folder = None
            if dataset == "folder":
                folder = st.text_input(
                    "Image folder (one sub-folder per class)",
                    key=state.TRAIN_FOLDER,
                    help=f"A sub-folder of {_folder_root()} (RESVIZ_DATA_DIR), on the server.",
                    disabled=running,
                )
            if dataset in ("shapes", "folder"):
                st.session_state.setdefault(state.TRAIN_SIZE, 16 if dataset == "shapes" else 32)
                st.selectbox("Image size", [16, 32], key=state.TRAIN_SIZE, disabled=running)
            if dataset in ("cifar10", "mnist"):
                st.checkbox("Download if absent (needs internet)", key=state.TRAIN_DOWNLOAD, disabled=running)
        with c2:
            depths = st.multiselect("Depths (6n+2)", DEPTHS, key=state.TRAIN_DEPTHS, disabled=running)
            kinds = st.multiselect("Networks", ["plain", "residual"], key=state.TRAIN_KINDS, disabled=running)
            st.selectbox(
                "Widths", list(WIDTHS), key=state.TRAIN_WIDTHS, format_func=WIDTH_LABELS.get, disabled=running
            )
        with c3:
            st.number_input(
                "Steps", min_value=1, max_value=200_000, step=50, key=state.TRAIN_STEPS, disabled=running
            )
            st.number_input(
                "Learning rate",
                min_value=1e-4,
                max_value=1.0,
                step=0.01,
                format="%.4f",
                key=state.TRAIN_LR,
                disabled=running,
            )
            st.number_input(
                "Seed", min_value=0, max_value=10_000, value=0, key=state.TRAIN_SEED, disabled=running
            )
    if not depths or not kinds:
        st.info("Choose at least one depth and one kind of network.")
        return False
    if dataset == "folder" and not folder:
        st.info("Give the path of a folder of images, one sub-folder per class.")
        return False
    if dataset == "folder":
        from resviz.datasets import check_inside

        check_inside(folder, _folder_root())  # outside the data root: one sentence, whether it exists or not
    _config()  # a bad combination shows its sentence now, not at the click
    if (estimate := _time_estimate()) is not None:
        st.caption(estimate)
    return True


def _config():
    """The :class:`TrainConfig` the widgets describe (read from session state, so a callback can)."""
    from resviz.training import PRESETS

    ss = st.session_state
    steps = int(ss[state.TRAIN_STEPS])
    dataset = ss[state.TRAIN_DATASET]
    models = tuple(
        f"{'plain' if k == 'plain' else 'resnet'}{d}"
        for k in ss[state.TRAIN_KINDS]
        for d in sorted(ss[state.TRAIN_DEPTHS])
    )
    return PRESETS[ss[state.TRAIN_PRESET]].replace(
        dataset=dataset,
        models=models,
        widths=WIDTHS[ss[state.TRAIN_WIDTHS]],
        steps=steps,
        lr=float(ss[state.TRAIN_LR]),
        seed=int(ss.get(state.TRAIN_SEED, 0)),
        eval_every=max(1, steps // 20),
        data_root=ss.get(state.TRAIN_FOLDER) if dataset == "folder" else None,
        size=int(ss.get(state.TRAIN_SIZE, 16)) if dataset in ("shapes", "folder") else None,
        download=bool(ss.get(state.TRAIN_DOWNLOAD)) and dataset in ("cifar10", "mnist"),
        device=ss.get(state.DEVICE, "auto"),
    )


def _start() -> None:
    """Start button callback: build this session's own models and train them on a thread."""
    from resviz.device import configure_cpu_threads
    from resviz.errors import ResvizError
    from resviz.runs import check_writable, default_runs_dir, save_run
    from resviz.sharing import owner_token
    from resviz.training import JobRunningError, start_job
    from ui.sharing import current, session_id

    try:
        if not current().allow_training:
            raise ResvizError("Training is turned off on this server.")
        config = _config()
        root = check_writable(default_runs_dir())  # a folder runs cannot go to is said before training
        configure_cpu_threads()
        owner = owner_token(session_id())  # the run and the job belong to this browser session
        save = functools.partial(save_run, root=root, group=uuid.uuid4().hex[:12], owner=owner)
        st.session_state[state.TRAIN_JOB] = start_job(
            config, save=save, owner=owner, folder_root=_folder_root()
        )
    except JobRunningError as exc:
        st.session_state[state.TRAIN_JOB] = exc.job  # show that run, with its Stop button
        st.session_state[state.TRAIN_START_ERROR] = str(exc)
        return
    except ResvizError as exc:
        st.session_state[state.TRAIN_START_ERROR] = str(exc)
        return
    st.session_state[state.TRAIN_LIVE] = True


def _live(running: bool) -> None:
    @st.fragment(run_every=1.0 if running else None)
    def live() -> None:
        from resviz.plots.training import METRICS, paper_reference_rows, training_curves_figure
        from resviz.training import PAPER_CIFAR10_TEST_ERROR

        job = st.session_state[state.TRAIN_JOB]
        job.heartbeat()  # a job nobody polls for a minute (a closed tab) stops and saves
        if job.finished and st.session_state.get(state.TRAIN_LIVE):
            st.session_state[state.TRAIN_LIVE] = False
            st.rerun()  # the whole page: the buttons and the results depend on the job's end
        cfg = job.config
        loading = f"loading the data: {job.loaded[0]} of {job.loaded[1]} images…" if job.loaded[1] else ""
        label = {
            "loading": loading or "loading the data…",
            "evaluating": "Grad-CAM pointing game…",
            "saving": "saving…",
        }
        text = label.get(job.status) or f"step {job.step} of {cfg.steps} · {job.elapsed:.0f} s · {job.status}"
        st.progress(job.progress, text=text)
        if job.error:
            st.error(markdown_text(job.error))
        if job.abandoned:
            st.warning("This run stopped because no page watched it for a minute; what was trained is saved.")
        curves = job.snapshot()
        if not curves:
            return  # nothing trained yet (or a failed start): no empty chart controls
        chart, paper = st.columns([5, 2])
        with chart:
            metric = st.selectbox("Curve", list(METRICS), key=state.TRAIN_METRIC, format_func=METRICS.get)
            if curves:
                st.plotly_chart(
                    training_curves_figure(curves, metric, total_steps=cfg.steps),
                    key=state.TRAIN_CURVES_CHART,
                )
        with paper:
            st.markdown("**The paper's numbers, not ours**")
            st.caption("CIFAR-10 *test* error of ResNets, He et al. 2015, Table 6 (full width, 64k steps).")
            st.dataframe(paper_reference_rows(PAPER_CIFAR10_TEST_ERROR), hide_index=True)

    live()


def _results(job) -> None:
    from resviz.plots.training import final_errors_figure, pointing_game_figure
    from resviz.training import curve_rows, summary_rows

    if not job.results:
        return
    st.subheader("Results")
    if job.status == "stopped" and not job.stopped_early:  # stopped early: _saving says it, once
        st.info(f"Stopped after {job.step} of {job.config.steps} steps; what was trained is saved.")
    curves = {r.name: r.curves for r in job.results}
    if diverged := {n: c.diverged_at for n, c in curves.items() if c.diverged_at is not None}:
        st.warning(
            "Diverged (the loss became NaN or infinite), then left at its last finite weights: "
            + ", ".join(f"{n} at step {s}" for n, s in diverged.items())
            + ". Try a lower learning rate."
        )
    from resviz.analysis.chance import learned_from_run, vacuous_comparison

    stuck = vacuous_comparison(
        *(learned_from_run(r.metadata(), {"loss": r.curves.loss.tolist()}) for r in job.results)
    )
    if stuck:
        st.warning(markdown_text(stuck))
    from resviz.runs import error_samples
    from resviz.stats import rate_of

    rows = summary_rows(curves)
    for row, r in zip(rows, job.results):
        for key, share, n in zip(
            ("train", "held-out"),
            (r.curves.final_train_error, r.curves.final_test_error),
            error_samples(r.metadata()),
        ):
            ci = rate_of(share, n) if n and share == share else None
            row[f"{key} 95% CI"] = f"{100 * ci.low:.1f}-{100 * ci.high:.1f}%" if ci else None
    left, right = st.columns(2)
    with left:
        st.dataframe(rows, hide_index=True)
        n_probe, n_test = error_samples(job.results[0].metadata())
        if n_probe and n_test:
            st.caption(f"Training error on {n_probe:,} training images, held-out error on {n_test:,}.")
        st.plotly_chart(final_errors_figure(curves), key=state.TRAIN_FINAL_CHART)
    scores = {r.name: r.pointing_game for r in job.results if r.pointing_game is not None}
    with right:
        if scores:
            st.plotly_chart(pointing_game_figure(scores), key=state.TRAIN_POINTING_CHART)
            st.caption(
                "Share of held-out shapes whose Grad-CAM peak (last stage, true class) falls inside the "
                "object's mask."
            )
    from resviz.export import to_csv

    st.download_button(
        "Training curves (CSV)",
        to_csv(curve_rows(curves)),
        file_name="training_curves.csv",
        mime="text/csv",
        key=state.TRAIN_CSV,
        on_click="ignore",
        icon=":material/download:",
    )
    _saving(job)


def _saving(job) -> None:
    """Where the models went: saved, not saved (stopped early: save on request), or a failed save."""
    if job.save_error:
        st.error(markdown_text(job.save_error))
        _model_downloads(job)
    elif job.saved:
        st.success(
            f"Saved {len(job.saved)} trained model(s) under {job.saved[0].parent}. Pick "
            "**Saved training run** under *Weights* in the sidebar to open one on any page, or compare "
            "runs on the **Runs** page."
        )
    elif job.stopped_early:
        st.info(
            f"Stopped after {job.step} of {job.config.steps} steps, too early to be saved on its own: "
            "these models live in this session only. Save them anyway?"
        )
        from resviz.sharing import owns
        from ui.sharing import session_id

        mine = owns(job.owner, session_id())
        st.button("Save these models", key=state.TRAIN_SAVE_ANYWAY, on_click=job.save, disabled=not mine)


def _model_downloads(job) -> None:
    import io

    import torch

    cols = st.columns(max(1, len(job.results)))
    for col, r in zip(cols, job.results):
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in r.model.state_dict().items()}, buffer)
        col.download_button(
            f"{r.name} (state dict)",
            buffer.getvalue(),
            file_name=f"{r.name}-{r.dataset}-s{r.config.seed}.pt",
            key=f"{state.TRAIN_MODEL_DOWNLOAD}{r.name}",
            on_click="ignore",
        )


main()
