"""The image picker shared by every page that takes images: samples plus uploads.

Streamlit forgets an upload (and every widget's value) when the user leaves the page, so the
uploaded *bytes* are kept under :data:`ui.state.IMAGE_UPLOADS` (shared by the image pages: upload
once, use on each) and the picked names under a key of the calling page. Pixels are decoded
(downscaled to about a megapixel, see :func:`resviz.images.decode_image`) through one cache shared
by every session, keyed by the bytes' digest and bounded in bytes (:data:`DECODED_CACHE_BYTES`): a
session holds only the compressed files, and many sessions' uploads cannot grow the server without
bound. A bad file gets one ``st.error`` sentence; the good files next to it are used.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import streamlit as st

from resviz.errors import ImageError
from resviz.images import (
    MAX_UPLOAD_MB,
    UPLOAD_TYPES,
    LoadedImage,
    decode_image,
    digest_bytes,
    load_sample,
    sample_images,
)
from resviz.text import markdown_text  # user and file text: shown, never markup
from ui import state

if TYPE_CHECKING:
    from streamlit.runtime.uploaded_file_manager import UploadedFile

MAX_KEPT_UPLOADS = 8  # uploaded files kept per session; the oldest goes first
UPLOAD_MARK = "⬆ "  # prefix that tells uploads from samples in the list
RUN_SAMPLES = 12  # held-out images of a run's dataset offered as samples
# Decoded uploads kept for every session together: about 85 one-megapixel images (3 MB each), or
# 10 of the largest possible (512 x 16384, 25 MB). A rerun that finds its image evicted decodes it again.
DECODED_CACHE_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Upload:
    """An uploaded file as kept in session state: its bytes, not its pixels."""

    name: str
    digest: str
    data: bytes = field(repr=False, compare=False)


class ByteLRU:
    """A thread-safe least-recently-used cache of decoded images, bounded by their pixel bytes.

    ``st.cache_resource`` bounds entries, not bytes; this bounds what the decoded pixels weigh.
    The newest entry is always kept, even when it alone is over the budget.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._items: OrderedDict[tuple[str, str], LoadedImage] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: tuple[str, str], make: Callable[[], LoadedImage]) -> LoadedImage:
        """The cached value for ``key``, else ``make()`` (called outside the lock), cached."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        # A decode takes up to a second: other sessions' hits must not wait for it. Two sessions
        # decoding the same bytes at once both decode; the first one stored is kept.
        value = make()
        with self._lock:
            if key not in self._items:
                self._items[key] = value
                self._bytes += image_bytes(value)
                while self._bytes > self.budget and len(self._items) > 1:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= image_bytes(old)
            return self._items[key]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


def image_bytes(image: LoadedImage) -> int:
    """What the decoded pixels weigh: width x height x bands, one byte each (mode RGB: 3)."""
    w, h = image.size
    return w * h * len(image.image.getbands())


_DECODED = ByteLRU(DECODED_CACHE_BYTES)


def decoded(upload: Upload) -> LoadedImage:
    """The pixels of a kept upload, shared read-only by every session that uploaded the same bytes.

    Keyed by the digest (and the name, which the notes and errors quote): a rerun, an opacity change
    or a page switch decodes nothing again, unless the cache let the pixels go. ImageError is raised,
    never cached.
    """
    return _DECODED.get((upload.digest, upload.name), lambda: decode_image(upload.data, upload.name))


def picker_keys(key_prefix: str) -> dict[str, str]:
    """Session-state keys the picker uses under ``key_prefix`` (the page's prefix, e.g. ``feat_``)."""
    return {
        "pick": f"{key_prefix}images_pick",  # the multiselect / selectbox widget
        "upload": f"{key_prefix}images_upload",  # the file_uploader widget
        "selection": f"{key_prefix}images_selection",  # picked labels, kept across page switches
        "seen": f"{key_prefix}images_seen",  # upload file_id -> ("ok", digest) | ("error", message)
    }


def _labelled(images: list[Upload]) -> dict[str, Upload]:
    """Uploads by list label, oldest first; two files of the same name are told apart by digest."""
    out: dict[str, Upload] = {}
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
    kept: list[Upload] = st.session_state.setdefault(state.IMAGE_UPLOADS, [])
    seen: dict[str, tuple[str, str]] = st.session_state.setdefault(keys["seen"], {})
    files = _upload_widget(keys["upload"], multiple)
    new_digests = _keep_uploads(files, kept, seen)

    uploads = _labelled(kept)
    by_digest = {im.digest: lab for lab, im in uploads.items()}
    new_labels = [by_digest[d] for d in new_digests if d in by_digest]
    held = {im.name: im for im in run_samples()}
    options = [*uploads, *held, *sample_images()]
    default = next(iter(held), default)  # a run's own images suit it better than a photo
    picked = _restored_pick(keys, options, new_labels, multiple=multiple, default=default)
    chosen = _pick_widget(keys, label, options, picked, multiple=multiple)
    st.session_state[keys["selection"]] = list(chosen)
    return _load_chosen(chosen, {**uploads, **held})


def _upload_widget(key: str, multiple: bool) -> list[UploadedFile]:
    """The file uploader; returns the files it holds now (an empty list when none)."""
    uploaded = st.file_uploader(
        "Upload image files" if multiple else "Upload an image file",
        type=list(UPLOAD_TYPES),
        accept_multiple_files=multiple,
        key=key,
        max_upload_size=MAX_UPLOAD_MB,
        help=f"PNG, JPEG, WebP, BMP, GIF or TIFF, up to {MAX_UPLOAD_MB} MB each.",
    )
    return [f for f in (uploaded if isinstance(uploaded, list) else [uploaded]) if f is not None]


def _keep_uploads(
    files: list[UploadedFile], kept: list[Upload], seen: dict[str, tuple[str, str]]
) -> list[str]:
    """Check each new upload once, keep the good ones and show an error for each bad one.

    Returns:
        the digests of the files that decoded on this run.
    """
    new_digests = []
    for f in files:
        outcome = seen.get(f.file_id)
        if outcome is None:  # check each upload once, not on every rerun
            upload = Upload(f.name, digest_bytes(f.getvalue()), f.getvalue())
            try:
                decoded(upload)
            except ImageError as exc:
                outcome = ("error", str(exc))
            else:
                if all(up.digest != upload.digest for up in kept):
                    kept.append(upload)
                    del kept[:-MAX_KEPT_UPLOADS]
                outcome = ("ok", upload.digest)
                new_digests.append(upload.digest)
            seen[f.file_id] = outcome
        if outcome[0] == "error":
            st.error(markdown_text(outcome[1]))
    return new_digests


def _restored_pick(
    keys: dict[str, str], options: list[str], new_labels: list[str], *, multiple: bool, default: str
) -> list[str]:
    """What the list should show: the last pick, plus any fresh upload, limited to the options."""
    # The widget's own state is dropped when the user visits another page: restore it from ours.
    picked = st.session_state.get(keys["pick"], st.session_state.get(keys["selection"]))
    if picked is None:
        picked = [default if default in options else options[0]]
    elif isinstance(picked, str):
        picked = [picked]
    kept = [p for p in picked if p in options]
    if picked and not kept:  # every image picked is gone (a run's held-out images, after a model switch)
        kept = [default if default in options else options[0]]
    if new_labels:  # a fresh upload is what the user wants to see
        kept = [*kept, *new_labels] if multiple else new_labels[-1:]
    return [p for p in dict.fromkeys(kept) if p in options]


def _pick_widget(
    keys: dict[str, str], label: str, options: list[str], picked: list[str], *, multiple: bool
) -> list[str]:
    """The multiselect (or selectbox), preset to ``picked``; returns the labels chosen."""
    if multiple:
        st.session_state[keys["pick"]] = picked
        return st.multiselect(label, options, key=keys["pick"])
    st.session_state[keys["pick"]] = picked[0] if picked else options[0]
    return [st.selectbox(label, options, key=keys["pick"])]


def _load_chosen(chosen: list[str], uploads: dict[str, Upload | LoadedImage]) -> list[LoadedImage]:
    """The pixels of each chosen upload or sample, with a caption for any that needed fixing.

    ``uploads`` maps labels to kept uploads and to a run's held-out images (already decoded)."""
    images = []
    for lab in chosen:
        source = uploads.get(lab)
        image = decoded(source) if isinstance(source, Upload) else source or load_sample(lab)
        if image.notes:
            st.caption(markdown_text(f"{image.name}: {'; '.join(image.notes)}."))
        images.append(image)
    return images


def run_samples() -> list[LoadedImage]:
    """Held-out images of the dataset the sidebar's run was trained on (none for other weights)."""
    from ui.models import current_choice

    choice = current_choice()
    return list(_run_samples(choice.run_path)) if choice.weights == "run" and choice.run_path else []


@st.cache_resource(show_spinner=False, max_entries=4)
def _run_samples(run_path: str, n: int = RUN_SAMPLES) -> tuple[LoadedImage, ...]:
    from resviz.analysis.pairs import run_held_out
    from resviz.errors import ResvizError
    from resviz.images import dataset_samples
    from resviz.runs import read_metadata

    try:
        data = run_held_out(read_metadata(run_path), n)
    except ResvizError:
        return ()
    return tuple(dataset_samples(data, n)) if data is not None else ()
