"""The sidebar's model picker and the cached models behind it.

A model from :func:`current_model` is one object shared by every browser session (st.cache_resource):
treat it as read-only. resviz's analyses hold the model's lock and restore its modes; anything that
trains must work on a copy (``copy.deepcopy``). With ``RESVIZ_REPLICAS=n`` a small CPU model is
also copied (:class:`resviz.hooks.ReplicaPool`, see :func:`resviz.device.replica_count`): each
script run then gets a copy that no other session is analysing at that moment.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from resviz.models import get_spec, list_models, twin_name
from resviz.text import markdown_text  # run titles, file names: shown as text, never markup
from ui import state

if TYPE_CHECKING:
    from resviz.hooks import ReplicaPool
    from resviz.models.weights import LoadedModel, WeightsSpec

DEFAULT_MODEL = "resnet18"
DEMO_MODEL = "resnet56"  # the bundled run a first visit opens on
WEIGHT_LABELS = {
    "random": "Random initialization",
    "imagenet": "ImageNet pretrained (torchvision)",
    "checkpoint": "My checkpoint (.pt / .pth / .safetensors)",
    "run": "Saved training run (Training Lab)",
}


@dataclass(frozen=True)
class ModelChoice:
    """What the sidebar says to load; hashable, so it keys the model cache."""

    name: str  # the variant actually built (the plain twin's name when "plain" is on)
    weights: str = "random"
    checkpoint_digest: str | None = None
    device: str = "auto"
    run_path: str | None = None  # a saved run's folder when weights == "run" (resviz.runs)


def _residual_names() -> list[str]:
    return [s.name for s in list_models(plain=False)]


DEVICE_HELP = "auto = CUDA if present, else Apple MPS, else the CPU."
CHECKPOINT_MAX_MB = 600  # the largest zoo variant's float32 state dict (Wide ResNet-101-2) is 508 MB
_UNAVAILABLE: dict[str, str] = {}  # variant -> why its ImageNet weights could not be had (this process)


def render_model_picker() -> ModelChoice:
    """Sidebar widgets: variant, plain twin toggle, weights source. Torch is not imported here."""
    names = _residual_names()
    runs = _saved_runs()
    _default_to_demo(runs)
    st.session_state.setdefault(state.MODEL_NAME, DEFAULT_MODEL)
    # A saved run is a whole model (its own variant, classes and input size): while one is picked,
    # the variant and plain-twin widgets do not apply, so they are greyed out rather than ignored.
    using_run = bool(runs) and st.session_state.get(state.MODEL_WEIGHTS) == "run"
    with st.sidebar:
        from ui.sharing import current

        if notice := current().notice:  # one line on every page while the server is shared
            st.info(notice)
        st.subheader("Model")
        if using_run:
            # The greyed box shows the run's own variant, not the one picked before (which is kept,
            # and back when another weights source is picked).
            name = st.session_state[state.MODEL_NAME] = st.session_state[state.MODEL_NAME]
            run_variant = _run_variant(runs) or name
            st.selectbox(
                "Variant",
                [run_variant],
                key=state.MODEL_RUN_VARIANT,
                disabled=True,
                help="A saved run brings its own variant; pick other weights to choose one here.",
            )
        else:
            name = st.selectbox(
                "Variant",
                names,
                key=state.MODEL_NAME,
                help="Shared by every page. Tiny variants are fast; ImageNet ones can load pretrained "
                "weights.",
            )
            st.caption(get_spec(name).description)
        plain = st.toggle(
            "Plain twin (no shortcuts)",
            key=state.MODEL_PLAIN,
            disabled=using_run,
            help="The same layers with every identity and projection shortcut removed.",
        )
        built = twin_name(name) if plain else name
        weights = _weights_radio(built, bool(runs))
        digest = _checkpoint_widget(built) if weights == "checkpoint" else None
        run_path = None
        if weights == "run":
            run_path, built = _run_widget(runs)
    return ModelChoice(built, weights, digest, st.session_state.get(state.DEVICE, "auto"), run_path)


def _run_variant(runs: list) -> str | None:
    """The variant of the run the sidebar holds (before its picker is drawn)."""
    path = st.session_state.get(state.TRAIN_RUN)
    return next((r.name for r in runs if str(r.path) == path), runs[0].name if runs else None)


def _default_to_demo(runs: list) -> None:
    """On a first visit, open on the bundled trained ResNet-56 rather than on random weights."""
    if state.MODEL_WEIGHTS in st.session_state or state.MODEL_NAME in st.session_state:
        return  # the user (or a link) has chosen
    demo = next((r for r in runs if r.bundled and r.name == DEMO_MODEL), None)
    if demo is not None:
        st.session_state[state.MODEL_WEIGHTS] = "run"
        st.session_state[state.TRAIN_RUN] = str(demo.path)


def _weights_radio(built: str, have_runs: bool) -> str:
    options = ["random", "checkpoint"]
    if get_spec(built).pretrained_available:
        options.insert(1, "imagenet")
    if have_runs:
        options.append("run")
    if st.session_state.get(state.MODEL_WEIGHTS) not in options:
        st.session_state[state.MODEL_WEIGHTS] = "random"

    def label(option: str) -> str:
        if option == "imagenet" and built in _UNAVAILABLE:  # honest: say what is really in use
            return "ImageNet pretrained: not available here, random weights in use"
        return WEIGHT_LABELS[option]

    return st.radio("Weights", options, key=state.MODEL_WEIGHTS, format_func=label)


def _checkpoint_widget(built: str) -> str | None:
    """The checkpoint uploader; returns the kept file's digest (None before any upload).

    The file is loaded into ``built`` here, at once (and cached for the pages), so a checkpoint that
    does not fit says so in the sidebar rather than on the next page.
    """
    upload = st.file_uploader(
        "State dict (.pt, .pth or .safetensors)",
        type=["pt", "pth", "safetensors"],
        key=state.CHECKPOINT,
        max_upload_size=CHECKPOINT_MAX_MB,  # the uploader itself says this limit
    )
    if upload is not None:
        st.session_state[state.CHECKPOINT_FILE] = (upload.name, upload.getvalue())
    kept = st.session_state.get(state.CHECKPOINT_FILE)
    if kept is None:
        return None
    digest = hashlib.sha256(kept[1]).hexdigest()[:16]
    from resviz.errors import ResvizError

    choice = ModelChoice(built, "checkpoint", digest, st.session_state.get(state.DEVICE, "auto"))
    try:
        with st.spinner(f"Loading {markdown_text(kept[0])} into {built}…"):
            _load(choice)
    except ResvizError as exc:
        st.error(markdown_text(exc))  # names the file and the variant ("... does not fit resnet56 ...")
        return digest
    st.caption(f"Using {markdown_text(kept[0])} in {built}.")
    return digest


def _run_widget(runs: list) -> tuple[str, str]:
    """The run picker, keyed by folder (unique); returns (folder, the run's variant)."""
    labels = {str(r.path): r for r in runs}
    picked = st.session_state.get(state.TRAIN_RUN)
    gone = picked is not None and picked not in labels
    if gone or picked is None:
        st.session_state[state.TRAIN_RUN] = next(iter(labels))
    if gone:  # deleted elsewhere (another visitor, the CLI): keep saying so until another run is picked
        st.session_state[state.RUN_GONE] = (Path(picked).name, st.session_state[state.TRAIN_RUN])
    run_path = st.selectbox(
        "Run", list(labels), key=state.TRAIN_RUN, format_func=lambda p: labels[p].short_label
    )
    run = labels[run_path]
    origin = "bundled demo, trained by `make demo-weights`" if run.bundled else "saved by the Training Lab"
    gone_name, instead = st.session_state.get(state.RUN_GONE) or (None, None)
    if gone_name is not None and instead == run_path:
        st.warning(
            f"The run you had open ({markdown_text(gone_name)}) was deleted; "
            f"now showing {markdown_text(run.short_label)}."
        )
    st.caption(
        f"{markdown_text(run.label)}. Using the run's own model, **{markdown_text(run.name)}** "
        f"({origin}; the variant above does not apply)."
    )
    return run_path, run.name


def _saved_runs() -> list:
    """Saved runs, then the bundled ones (reads small JSON files only; no torch)."""
    from resviz.runs import list_runs

    return list_runs()


def render_device_picker() -> None:
    """Device selector and label. Imports torch: call it after the page has drawn its first text.

    While the warm-up is still importing torch (a first visit to Home), it says so rather than
    waiting: Home appears without torch, and the next page finds it loaded.
    """
    from ui.warmup import torch_ready

    if not torch_ready():  # Home on a fresh server: the choice, without torch (its device list)
        with st.sidebar:
            st.subheader("Device")
            st.selectbox("Run on", ["auto"], key=state.DEVICE_WIDGET, disabled=True, help=DEVICE_HELP)
            st.caption("auto: CUDA if present, else Apple MPS, else the CPU.")
        return
    from resviz.device import available_devices, configure_cpu_threads, describe_device, resolve_device

    # The thread count the label reports is the one models run with, set when the first model
    # loads: set it now, so that the first paint (Home, before any model) does not show torch's
    # own default (OMP_NUM_THREADS), which the next page would then contradict.
    configure_cpu_threads()

    options = ["auto", *available_devices()]
    current = st.session_state.get(state.DEVICE, "auto")
    with st.sidebar:
        st.subheader("Device")
        choice = st.selectbox(
            "Run on",
            options,
            index=options.index(current) if current in options else 0,
            key=state.DEVICE_WIDGET,
            help=DEVICE_HELP,
        )
        st.session_state[state.DEVICE] = choice
        st.caption(describe_device(resolve_device(choice)))


def weights_spec(choice: ModelChoice, upload: tuple[str, bytes] | None = None) -> WeightsSpec:
    """Where the sidebar's ``choice`` takes its weights from; ``upload`` is the kept checkpoint file.

    Raises:
        resviz.errors.CheckpointError: checkpoint weights without an upload, or a run without a folder.
    """
    from resviz.errors import CheckpointError
    from resviz.models.weights import WeightsSpec

    if choice.weights == "checkpoint":
        if upload is None:
            raise CheckpointError("Upload a checkpoint file in the sidebar, or pick other weights.")
        filename, data = upload
        return WeightsSpec.checkpoint(data, filename=filename)
    if choice.weights == "run":
        if not choice.run_path:
            raise CheckpointError(
                "No saved training run: train one in the Training Lab, or pick other weights."
            )
        return WeightsSpec.run(choice.run_path)
    return WeightsSpec(choice.weights)  # type: ignore[arg-type]


# Keyed on the choice, not on the spec: for an upload the choice holds a digest, the spec the bytes.
@st.cache_resource(show_spinner=False, max_entries=6)
def _load(choice: ModelChoice) -> LoadedModel:
    from resviz.device import configure_cpu_threads, resolve_device
    from resviz.models.weights import load_model

    configure_cpu_threads()
    # Session state only for an upload: the warm-up thread (ui.warmup) loads the default without one.
    upload = st.session_state.get(state.CHECKPOINT_FILE) if choice.weights == "checkpoint" else None
    spec = weights_spec(choice, upload)
    # The sidebar downloads ImageNet weights itself, with a progress bar (current_model).
    return load_model(choice.name, spec, device=resolve_device(choice.device), download=False)


@st.cache_resource(show_spinner=False, max_entries=6)
def _replicas(choice: ModelChoice) -> ReplicaPool:
    """Copies of the loaded model (bit-identical, each with its own lock); one model when large."""
    from resviz.device import replica_count
    from resviz.hooks import ReplicaPool

    model = _load(choice).model
    return ReplicaPool(model, replica_count(model))


def current_model(choice: ModelChoice | None = None) -> LoadedModel:
    """The model the sidebar picked, loaded once and shared; downloads show a progress bar.

    Raises:
        resviz.errors.ResvizError: a checkpoint that does not fit, a device that is missing...
    """
    from resviz.models.weights import download_weights, is_cached

    choice = choice or current_choice()
    if choice.weights == "checkpoint" and choice.checkpoint_digest is None:
        from resviz.errors import CheckpointError

        raise CheckpointError("Upload a checkpoint file in the sidebar, or pick other weights.")
    if choice.weights == "run" and choice.run_path is None:
        from resviz.errors import CheckpointError

        raise CheckpointError("No saved training run: train one in the Training Lab, or pick other weights.")
    if choice.weights == "imagenet" and not is_cached(choice.name):
        bar = st.progress(0.0, text=f"Downloading {choice.name} weights…")

        def report(done: int, total: int) -> None:
            frac = done / total if total else 0.0
            size = f" of {total / 1e6:.0f}" if total else ""
            bar.progress(min(frac, 1.0), text=f"Downloading {choice.name} weights: {done / 1e6:.0f}{size} MB")

        from resviz.errors import WeightsUnavailableError

        try:
            download_weights(choice.name, progress=report)
            _UNAVAILABLE.pop(choice.name, None)
        except WeightsUnavailableError as exc:
            _UNAVAILABLE[choice.name] = str(exc)  # load_model falls back to random weights, says why
        finally:
            bar.empty()
    loaded, pool = _load(choice), _replicas(choice)
    model = pool.pick()
    return loaded if model is loaded.model else dataclasses.replace(loaded, model=model)


def current_choice() -> ModelChoice:
    """The choice the sidebar holds right now (without drawing it).

    Worked out once per change of the widgets it reads: a page asks for it many times a rerun, and
    working it out hashes an uploaded checkpoint (up to hundreds of MB) and scans the runs folder.
    """
    picked = st.session_state.get(state.MODEL_NAME, DEFAULT_MODEL)
    plain = bool(st.session_state.get(state.MODEL_PLAIN))
    weights = st.session_state.get(state.MODEL_WEIGHTS, "random")
    kept = st.session_state.get(state.CHECKPOINT_FILE)
    run_path = st.session_state.get(state.TRAIN_RUN) if weights == "run" else None
    device = st.session_state.get(state.DEVICE, "auto")
    # id(kept): the upload's tuple is replaced, never mutated, when another file is uploaded.
    key = (picked, plain, weights, id(kept) if kept else None, run_path, device)
    cached = st.session_state.get(state.MODEL_CHOICE_MEMO)
    if cached is not None and cached[0] == key:
        return cached[1]
    name = twin_name(picked) if plain else picked
    digest = hashlib.sha256(kept[1]).hexdigest()[:16] if kept and weights == "checkpoint" else None
    if run_path is not None:
        from resviz.runs import list_runs

        name = next((r.name for r in list_runs() if str(r.path) == run_path), name)
    choice = ModelChoice(name, weights, digest, device, run_path)
    st.session_state[state.MODEL_CHOICE_MEMO] = (key, choice)
    return choice


def show_model_banner(loaded: LoadedModel) -> None:
    """Say plainly what the weights are, above any result that depends on them."""
    if loaded.notice:
        st.warning(markdown_text(loaded.notice))
    if not loaded.trained:
        st.info(
            f"**{markdown_text(loaded.name)}** is untrained (random weights): its outputs show structure, "
            f"not knowledge. For a trained network pick {_trained_choices(loaded)} in the sidebar."
        )
    else:
        st.caption(f"{markdown_text(loaded.name)} · weights: {markdown_text(loaded.source)}")


def show_twin_warning(loaded: LoadedModel) -> None:
    """Beside a residual-against-plain comparison: say so when either trained net is at chance."""
    meta = loaded.metadata if loaded.weights == "run" else {}
    warning = _twin_warning(loaded.name, str(meta.get("group")), str(meta.get("created")), loaded)
    if warning:
        st.warning(markdown_text(warning))


@st.cache_data(show_spinner=False, max_entries=32)
def _twin_warning(name: str, group: str, created: str, _loaded: LoadedModel) -> str | None:
    from resviz.analysis.pairs import untrained_warning

    return untrained_warning(_loaded)  # keyed by the run's name, session and time, not the model


def show_photo_notice(loaded: LoadedModel, images) -> None:
    """One line where a photo meets a model trained on shapes or digits: what the model knows, that
    its map shows what it reacts to and not what the photo is, and how to explain a photo."""
    dataset = loaded.metadata.get("dataset") if loaded.weights == "run" else None
    if dataset not in ("shapes", "digits") or all(im.true_class is not None for im in images):
        return
    names = ", ".join(loaded.class_names or ()) or f"{loaded.config.num_classes} classes"
    crop = loaded.preprocessing.crop
    who, known = markdown_text(loaded.name), markdown_text(names)
    st.info(
        f"{who} knows only {dataset} ({known}) at {crop}x{crop} pixels: on a photo its map shows "
        "what it reacts to, not what the photo is. To explain a photo, pick ImageNet weights (one "
        "download) or a checkpoint in the sidebar."
    )


def _trained_choices(loaded: LoadedModel) -> str:
    """Where trained weights can come from here; ImageNet only while it has not just failed."""
    choices = ["a saved run (the bundled demo pair works offline)", "a checkpoint"]
    if get_spec(loaded.name).pretrained_available and loaded.name not in _UNAVAILABLE and not loaded.notice:
        choices.insert(1, "ImageNet weights")
    return ", ".join(choices[:-1]) + " or " + choices[-1]
