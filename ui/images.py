"""The image picker shared by every page that takes images: samples plus uploads.

Streamlit forgets an upload (and every widget's value) when the user leaves the page, so decoded
uploads are kept under :data:`ui.state.IMAGES` (shared by the image pages: upload once, use on
each) and the picked names under a key of the calling page. A bad file gets one ``st.error``
sentence; the good files next to it are used.
"""

from __future__ import annotations

import streamlit as st

from resviz.errors import ImageError
from resviz.images import (
    MAX_UPLOAD_MB,
    UPLOAD_TYPES,
    LoadedImage,
    decode_image,
    load_sample,
    sample_images,
)
from ui import state

MAX_KEPT_UPLOADS = 8  # decoded uploads kept per session; the oldest goes first
UPLOAD_MARK = "⬆ "  # prefix that tells uploads from samples in the list


def picker_keys(key_prefix: str) -> dict[str, str]:
    """Session-state keys the picker uses under ``key_prefix`` (the page's prefix, e.g. ``feat_``)."""
    return {
        "pick": f"{key_prefix}images_pick",  # the multiselect / selectbox widget
        "upload": f"{key_prefix}images_upload",  # the file_uploader widget
        "selection": f"{key_prefix}images_selection",  # picked labels, kept across page switches
        "seen": f"{key_prefix}images_seen",  # upload file_id -> ("ok", digest) | ("error", message)
    }


def _labelled(images: list[LoadedImage]) -> dict[str, LoadedImage]:
    """Uploads by list label, oldest first; two files of the same name are told apart by digest."""
    out: dict[str, LoadedImage] = {}
    for image in images:
        label = f"{UPLOAD_MARK}{image.name}"
        out[label if label not in out else f"{label} ({image.digest[:6]})"] = image
    return out


def image_picker(
    key_prefix: str, *, multiple: bool = True, label: str = "Image", default: str = "chelsea (cat)"
) -> list[LoadedImage]:
    """Sample images and uploads; returns the images picked (none only if the user clears the list).

    Args:
        key_prefix: the calling page's session-state prefix, so two pages keep separate picks.
        multiple: allow several images (a multiselect) or exactly one (a selectbox).
        label: the widget label.
        default: the sample picked on first visit.
    """
    keys = picker_keys(key_prefix)
    kept: list[LoadedImage] = st.session_state.setdefault(state.IMAGES, [])
    seen: dict[str, tuple[str, str]] = st.session_state.setdefault(keys["seen"], {})
    uploaded = st.file_uploader(
        "Upload image files" if multiple else "Upload an image file",
        type=list(UPLOAD_TYPES),
        accept_multiple_files=multiple,
        key=keys["upload"],
        max_upload_size=MAX_UPLOAD_MB,
        help=f"PNG, JPEG, WebP, BMP, GIF or TIFF, up to {MAX_UPLOAD_MB} MB each.",
    )
    files = [f for f in (uploaded if isinstance(uploaded, list) else [uploaded]) if f is not None]
    new_labels = []  # digests of files decoded on this run
    for f in files:
        outcome = seen.get(f.file_id)
        if outcome is None:  # decode each upload once, not on every rerun
            try:
                image = decode_image(f.getvalue(), f.name)
            except ImageError as exc:
                outcome = ("error", str(exc))
            else:
                if all(im.digest != image.digest for im in kept):
                    kept.append(image)
                    del kept[:-MAX_KEPT_UPLOADS]
                outcome = ("ok", image.digest)
                new_labels.append(image.digest)
            seen[f.file_id] = outcome
        if outcome[0] == "error":
            st.error(outcome[1])

    uploads = _labelled(kept)
    by_digest = {im.digest: lab for lab, im in uploads.items()}
    new_labels = [by_digest[d] for d in new_labels if d in by_digest]
    options = [*uploads, *sample_images()]
    # The widget's own state is dropped when the user visits another page: restore it from ours.
    picked = st.session_state.get(keys["pick"], st.session_state.get(keys["selection"]))
    if picked is None:
        picked = [default if default in options else options[0]]
    elif isinstance(picked, str):
        picked = [picked]
    if new_labels:  # a fresh upload is what the user wants to see
        picked = [*picked, *new_labels] if multiple else new_labels[-1:]
    picked = [p for p in dict.fromkeys(picked) if p in options]
    if multiple:
        st.session_state[keys["pick"]] = picked
        chosen = st.multiselect(label, options, key=keys["pick"])
    else:
        st.session_state[keys["pick"]] = picked[0] if picked else options[0]
        chosen = [st.selectbox(label, options, key=keys["pick"])]
    st.session_state[keys["selection"]] = list(chosen)

    images = []
    for lab in chosen:
        image = uploads[lab] if lab in uploads else load_sample(lab)
        if image.notes:
            st.caption(f"{image.name}: {'; '.join(image.notes)}.")
        images.append(image)
    return images
