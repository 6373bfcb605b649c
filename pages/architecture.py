"""Architecture: a variant with its knobs, its stages as a table and charts, its shortcuts drawn,
a side-by-side comparison with a second model, and the architectures ResNet is weighed against."""

from ui.shell import ensure_entry_point

ensure_entry_point()

from pathlib import Path

import streamlit as st

from resviz.analysis.layout import block_layout
from resviz.errors import ResvizError
from resviz.models import (
    ModelSpec,
    ResNetConfig,
    get_spec,
    list_models,
    model_names,
)
from resviz.models.config import SHORTCUTS
from resviz.plots.architecture import block_figure, comparison_figure, network_figure, stage_figure
from resviz.text import markdown_text  # user and file text: shown, never markup
from ui import state
from ui.models import current_choice
from ui.shared_results import (
    PEER_MIN_SIZE,
    REFERENCE_RESNETS,
    default_input_size,
    reference_summaries,
    run_twin,
    summary_of,
)

K = state.ARCH_PREFIX


# Table headers for people (the CSV downloads keep the field names, which scripts want).
HEADERS = {
    "stage": "Stage",
    "name": "Layer",
    "type": "Type",
    "model": "Model",
    "output_shape": "Output shape",
    "blocks": "Blocks",
    "depth": "Depth",
}
COUNT_HEADERS = {
    "params": "Parameters",
    "macs": "Multiply-accumulates",
    "adds": "Shortcut additions",
}
COLUMNS = {
    **HEADERS,
    **{k: st.column_config.NumberColumn(v, format="localized") for k, v in COUNT_HEADERS.items()},
}
# Option labels short enough for the select box; the help text has the whole story.
SHORTCUT_LABELS = {
    "A": "A: zero-padding (no parameters)",
    "B": "B: projection where shapes change",
    "C": "C: projection everywhere",
}


def csv_of(records: list[dict]) -> bytes:
    from resviz.export import to_csv

    return to_csv(records).encode()


def side_by_side(a, b) -> list[dict]:
    """One row per stage (and one for the whole network) with both models' figures."""

    def shape(stage) -> str:
        return "x".join(map(str, stage.output_shape)) if stage else "-"

    stages_a = {s.name: s for s in a.stages}
    stages_b = {s.name: s for s in b.stages}
    rows = []
    for stage in dict.fromkeys([*stages_a, *stages_b]):
        sa, sb = stages_a.get(stage), stages_b.get(stage)
        rows.append(
            {
                "stage": stage,
                f"{a.label} output": shape(sa),
                f"{a.label} params": sa.params if sa else 0,
                f"{a.label} MACs": sa.macs if sa else 0,
                f"{b.label} output": shape(sb),
                f"{b.label} params": sb.params if sb else 0,
                f"{b.label} MACs": sb.macs if sb else 0,
            }
        )
    rows.append(  # the depth goes where a stage's shape is: a long "stage" cell gets cut
        {
            "stage": "total",
            f"{a.label} output": f"{a.depth} layers",
            f"{a.label} params": a.params,
            f"{a.label} MACs": a.macs,
            f"{b.label} output": f"{b.depth} layers",
            f"{b.label} params": b.params,
            f"{b.label} MACs": b.macs,
        }
    )
    return rows


def knobs(name: str, base: ResNetConfig) -> dict:
    """Widgets for the knobs a person exploring skip connections wants."""
    with st.expander("Knobs", expanded=False):
        c1, c2, c3 = st.columns(3)
        chosen = {
            "skip": c1.toggle("Shortcuts", value=base.skip, key=f"{K}skip_{name}"),
            "batchnorm": c1.toggle("BatchNorm", value=base.batchnorm, key=f"{K}bn_{name}"),
            "preact": c2.toggle("Pre-activation (BN-ReLU-conv)", value=base.preact, key=f"{K}preact_{name}"),
            "zero_init_residual": c2.toggle(
                "Zero-init last BN of each branch", value=base.zero_init_residual, key=f"{K}zero_{name}"
            ),
            "shortcut": c3.selectbox(
                "Shortcut option",
                list(SHORTCUTS),
                index=list(SHORTCUTS).index(base.shortcut),
                format_func=SHORTCUT_LABELS.__getitem__,
                key=f"{K}option_{name}",
                help="He et al. 2015, section 3.3. "
                + " ".join(f"**{o}**: {text}." for o, text in SHORTCUTS.items()),
            ),
        }
        blocks = list(base.block_names)
        chosen["no_skip_blocks"] = frozenset(
            c3.multiselect("Cut the shortcut of single blocks", blocks, key=f"{K}cut_{name}")
        )
    return {k: v for k, v in chosen.items() if getattr(base, k) != v}


def chosen_model() -> tuple[str, ModelSpec, ResNetConfig, str, dict | None]:
    """The sidebar's model: ``(name, spec, configuration, what it is, a run's metadata or None)``;
    a run's own configuration."""
    choice = current_choice()
    spec = get_spec(choice.name)
    if choice.weights == "run" and choice.run_path:
        from resviz.runs import read_metadata

        meta = read_metadata(choice.run_path)
        config = ResNetConfig.from_dict(dict(meta["variant_config"]))  # type: ignore[arg-type]
        steps = meta.get("steps_done", "?")
        about = (
            f"as trained in run {markdown_text(Path(choice.run_path).name)} ({markdown_text(steps)} steps)"
        )
        return choice.name, spec, config, about, meta
    return choice.name, spec, spec.config, spec.description, None


SIZES = (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 384, 448)


def input_size(config: ResNetConfig, meta: dict | None = None) -> int:
    """The input-size slider, starting at the size the variant was designed for, or the size a
    run's images had (shapes and digits runs see small images: their own size is the honest one)."""
    default_size = default_input_size(config, meta)
    sizes = sorted({*SIZES, default_size})
    size = st.select_slider(
        "Input size (pixels)",
        sizes,
        value=default_size,
        key=f"{K}size_{config.stem}_{default_size}",  # each default starts from itself
    )
    if meta is not None and size == default_size:
        st.caption(f"{size}x{size}: the size of the images this run was trained on.")
    return size


def metrics(summary) -> None:
    """Depth, parameters, multiply-accumulates and shortcut additions of the whole network."""
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Depth", f"{summary.depth} layers")
    m2.metric("Parameters", f"{summary.params / 1e6:,.2f} M")
    m3.metric("Multiply-accumulates", f"{summary.macs / 1e9:,.2f} G")
    m4.metric("Shortcut additions", f"{summary.adds / 1e6:,.2f} M")


def network(config: ResNetConfig, summary) -> None:
    """Every block with its shortcut, and one block drawn layer by layer."""
    st.plotly_chart(
        network_figure(block_layout(config), f"{summary.label}: blocks and shortcuts"),
        key=f"{K}network",
    )
    with st.expander("What does one block look like?"):
        projection = config.shortcut == "C"
        first = block_widths(config, 0)
        st.plotly_chart(
            block_figure(
                config.block, preact=config.preact, skip=config.skip, projection=projection, widths=first
            ),
            key=f"{K}block",
        )
        later = ", ".join(str(block_widths(config, s)[-1]) for s in range(1, len(config.widths)))
        st.caption(
            f"A block of the first stage of {summary.label}, with its own widths"
            + (f"; the later stages' blocks end in {later} channels." if later else ".")
        )
        if config.skip and not projection:
            how = "pads it with zeros" if config.shortcut == "A" else "projects it with a 1x1 convolution"
            st.caption(
                f"Where a stage halves the size and widens the channels, option {config.shortcut} {how}."
            )


def block_widths(config: ResNetConfig, stage: int) -> tuple[int, ...]:
    """Output channels of each convolution of a block of ``stage``, in branch order."""
    w = config.widths[stage]
    if config.block == "basic":
        return (w, w)
    mid = int(w * (config.width_per_group / 64.0)) * config.groups  # as torchvision's Bottleneck
    return (mid, mid, w * config.expansion)


def stage_tables(name: str, summary) -> None:
    """The stage table and the every-layer table, each with its CSV download."""
    st.subheader("Stages")
    st.dataframe(summary.stage_records(), hide_index=True, width="stretch", column_config=COLUMNS)
    st.download_button(
        "Stage table (CSV)",
        csv_of(summary.stage_records()),
        f"{name}_stages.csv",
        "text/csv",
        key=f"{K}dl_stages",
    )
    with st.expander(f"Every layer ({len(summary.layers)} rows)"):
        st.dataframe(
            summary.layer_records(), hide_index=True, width="stretch", height=420, column_config=COLUMNS
        )
        st.download_button(
            "Layer table (CSV)",
            csv_of(summary.layer_records()),
            f"{name}_layers.csv",
            "text/csv",
            key=f"{K}dl_layers",
        )


def comparison(
    name: str, spec: ModelSpec, summary, size: int, run_config: ResNetConfig | None = None
) -> None:
    """A second model of the same family (the plain twin by default) next to this one.

    For a training run (``run_config``) the default is the twin of the run's own configuration
    (the network trained beside it), not the registry's variant of the same name.
    """
    st.subheader("Side by side")
    others = [n for n in model_names() if get_spec(n).family == spec.family] or model_names()
    twin_config, as_run = run_twin(run_config or spec.config, name)
    if run_config is not None:
        others = [as_run, *others]
    other = st.selectbox(
        "Compare with",
        others,
        index=0 if run_config is not None else (others.index(spec.twin) if spec.twin in others else 0),
        key=f"{K}other_{name}_{run_config is not None}",  # per model: each starts from its own twin
        help="Its plain twin by default.",
    )
    if other == as_run and run_config is not None:
        other_config = twin_config
    else:
        other_config = get_spec(other).config
    other_summary = summary_of(other_config, size, other)
    st.plotly_chart(stage_figure([summary, other_summary]), key=f"{K}stages")
    st.plotly_chart(
        network_figure(block_layout(other_config), f"{other}: blocks and shortcuts"), key=f"{K}network_other"
    )
    rows = side_by_side(summary, other_summary)
    numbers = {
        c: st.column_config.NumberColumn(c.replace(" params", " parameters"), format="localized")
        for c in rows[0]
        if c.endswith(("params", "MACs"))
    }
    st.dataframe(rows, hide_index=True, width="stretch", column_config={"stage": "Stage", **numbers})
    st.download_button(
        "Side-by-side table (CSV)",
        csv_of(rows),
        f"{name}_vs_{other}.csv",
        "text/csv",
        key=f"{K}dl_pair",
    )


def peer_size_text(size: int) -> tuple[int, str]:
    """The input size the peers are measured at, and a sentence saying which (and why, if changed)."""
    peer = max(size, PEER_MIN_SIZE)
    text = (
        f"Depth, parameters and multiply-accumulates of the ImageNet ResNets and their peers for a "
        f"{peer}x{peer} input, all counted from the models themselves (torchvision's definitions, "
        "built without weights)."
    )
    if peer != size:
        text += (
            f" Not at the chosen {size}x{size}: AlexNet and GoogLeNet need at least "
            f"{PEER_MIN_SIZE}x{PEER_MIN_SIZE} pixels."
        )
    return peer, text


def peers(size: int) -> None:
    """ResNets against VGG, GoogLeNet and the others, measured at the chosen input size (or 64)."""
    st.subheader("ResNet among its peers")
    peer_size, text = peer_size_text(size)
    st.markdown(text)
    from resviz.analysis.summary import published_top1

    summaries = reference_summaries(peer_size)
    top1 = [published_top1(s.label) for s in summaries]
    st.plotly_chart(comparison_figure(summaries, highlight=REFERENCE_RESNETS, top1=top1), key=f"{K}peers")
    peer_rows = [
        {"model": s.label, "depth": s.depth, "params": s.params, "macs": s.macs, "top1": acc}
        for s, acc in zip(summaries, top1, strict=True)
    ]
    top1_column = st.column_config.NumberColumn("ImageNet top-1 (%)", format="%.1f")
    st.dataframe(peer_rows, hide_index=True, width="stretch", column_config={**COLUMNS, "top1": top1_column})
    st.caption(
        "Depth, parameters and multiply-accumulates are on log scales (VGG-16 has 12 times ResNet-18's "
        "parameters). Top-1: torchvision's published ImageNet accuracy of each model's first weights "
        "(IMAGENET1K_V1, the original recipes), read from torchvision itself, at 224x224."
    )
    st.download_button(
        "Comparison (CSV)", csv_of(peer_rows), "architectures.csv", "text/csv", key=f"{K}dl_peers"
    )
    st.caption(
        f"{len(list_models())} registered variants; `python -m resviz summary NAME` prints these tables."
    )


def main() -> None:
    st.title("Architecture")
    name, spec, base, about, meta = chosen_model()
    st.markdown(f"**{name}**: {about}. Change the model in the sidebar; tune it here.")
    size = input_size(base, meta)
    changes = knobs(name, base)  # keyed per model: each starts from its own defaults
    try:
        config = base.replace(**changes)
        config.validate()
        summary = summary_of(config, size, name + (" (modified)" if changes else ""))
    except ResvizError as exc:
        st.error(markdown_text(exc))
        return
    metrics(summary)
    network(config, summary)
    stage_tables(name, summary)
    comparison(name, spec, summary, size, run_config=base if current_choice().weights == "run" else None)
    peers(size)


main()
