"""Weights from one loader: random, torchvision's ImageNet weights, a user's checkpoint, or a saved run.

:class:`WeightsSpec` says where weights come from; :func:`load_model` turns a variant name and a
spec (or the strings the CLI takes: ``"random"``, ``"imagenet"``, a checkpoint file, a run folder)
into a :class:`LoadedModel` that carries its class names and preprocessing, as torchvision's
weights enums carry theirs.

Pretrained weights go through torchvision's own weights enums (url, preprocessing, class names) and
torch hub's cache (``$TORCH_HOME/hub/checkpoints``), so a file downloaded by torchvision is found
here and the other way round. The download is ours only so that it can report progress to any
callback (a Streamlit progress bar) and give up after a timeout instead of hanging offline.

Checkpoints are read with ``torch.load(weights_only=True, map_location="cpu")``: a pickle that
would run code is refused. Keys are matched strictly and a mismatch is explained in a sentence.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from resviz.errors import (
    CheckpointError,
    ConfigError,
    ResvizError,
    UnknownModelError,
    WeightsUnavailableError,
)
from resviz.models.config import ResNetConfig
from resviz.models.registry import create_model, get_config, get_spec, list_models
from resviz.preprocessing import Preprocessing, for_config, from_torchvision

if TYPE_CHECKING:
    from resviz.models.resnet import ResNet

WeightsKind = Literal["random", "imagenet", "checkpoint", "run"]
Progress = Callable[[int, int], None]  # (bytes done, bytes total or 0 when unknown)


@dataclass(frozen=True)
class WeightsSpec:
    """Where a model's weights come from; frozen and hashable, so it can key a cache.

    Build one with :meth:`parse` (the CLI's ``--weights``), :meth:`checkpoint` or :meth:`run`, or
    ``WeightsSpec("random")`` / ``WeightsSpec("imagenet")``.
    """

    kind: WeightsKind = "random"
    path: str | None = None  # the checkpoint file ("checkpoint") or the run folder ("run")
    # An uploaded checkpoint's bytes, instead of a path. Bytes hash and compare by value; kept out of
    # repr so that a log line or an error never prints 200 MB.
    data: bytes | None = field(default=None, repr=False)
    filename: str | None = None  # the upload's name, for messages ("checkpoint tiny.pt")

    def __post_init__(self) -> None:
        if self.kind not in ("random", "imagenet", "checkpoint", "run"):
            raise ResvizError(
                f"Unknown weights {self.kind!r}: choose random, imagenet, a checkpoint file or a run folder."
            )
        if self.path is not None and not isinstance(self.path, str):
            object.__setattr__(self, "path", os.fspath(self.path))  # a Path and its str: one spec, one key
        has_path, has_data = self.path is not None, self.data is not None
        if self.kind == "checkpoint" and has_path == has_data:
            raise CheckpointError("A checkpoint needs one source: a file path or the uploaded bytes.")
        if self.kind == "run" and (not has_path or has_data):
            raise CheckpointError("A saved run is loaded from its folder: give the folder's path.")
        if self.kind in ("random", "imagenet") and (has_path or has_data):
            raise CheckpointError(f"{self.kind} weights take no file; use a checkpoint or run instead.")

    @classmethod
    def parse(cls, text: str | os.PathLike[str]) -> WeightsSpec:
        """``"random"``, ``"imagenet"``, a run folder (a directory: it holds ``run.json``) or a file."""
        if text in ("random", "imagenet"):
            return cls(text)  # type: ignore[arg-type]
        path = os.fspath(text)
        # Any directory is taken for a run, so that one without run.json is told so in a sentence.
        return cls("run", path) if os.path.isdir(path) else cls("checkpoint", path)

    @classmethod
    def checkpoint(
        cls, source: bytes | str | os.PathLike[str], *, filename: str | None = None
    ) -> WeightsSpec:
        """A state dict file, or an upload's bytes with its ``filename``."""
        if isinstance(source, bytes):
            return cls("checkpoint", data=source, filename=filename)
        return cls("checkpoint", os.fspath(source), filename=filename)

    @classmethod
    def run(cls, path: str | os.PathLike[str]) -> WeightsSpec:
        """A folder written by :func:`resviz.runs.save_run`."""
        return cls("run", os.fspath(path))


@dataclass
class LoadedModel:
    """A model ready for analysis (eval mode) and what a page needs to say about it."""

    model: ResNet
    name: str
    weights: WeightsKind
    source: str  # for people: "random initialization", "ImageNet (IMAGENET1K_V1)", a file name
    preprocessing: Preprocessing
    class_names: tuple[str, ...] | None = None
    notice: str | None = None  # e.g. why pretrained weights fell back to random ones
    metadata: dict[str, object] = field(default_factory=dict)

    @property
    def config(self) -> ResNetConfig:
        return self.model.config

    @property
    def trained(self) -> bool:
        return self.weights != "random"

    def class_name(self, index: int) -> str:
        if self.class_names and 0 <= index < len(self.class_names):
            return self.class_names[index]
        return f"class {index}"


# --------------------------------------------------------------------------- pretrained (torchvision)


def pretrained_weights(name: str) -> object:
    """The torchvision ``WeightsEnum`` member (``DEFAULT``) for a variant that has one."""
    spec = get_spec(name)
    if not spec.pretrained_available:
        with_weights = [s.name for s in list_models() if s.pretrained_available]
        raise WeightsUnavailableError(
            f"{name} has no pretrained weights (torchvision publishes them for {', '.join(with_weights)})."
        )
    from torchvision.models import get_model_weights

    return get_model_weights(spec.torchvision).DEFAULT


def cached_weights_path(name: str) -> Path:
    """Where torch hub keeps (or would keep) the pretrained file of ``name``."""
    url = pretrained_weights(name).url  # type: ignore[attr-defined]
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def is_cached(name: str) -> bool:
    try:
        return cached_weights_path(name).is_file()
    except WeightsUnavailableError:
        return False


_HASH_PREFIX = re.compile(r"-([a-f0-9]*)\.")  # torch hub names files <name>-<sha256 prefix>.pth


def download_weights(name: str, *, progress: Progress | None = None, timeout: float = 15.0) -> Path:
    """Download ``name``'s pretrained file into the hub cache (atomically, hash-checked)."""
    url = pretrained_weights(name).url  # type: ignore[attr-defined]
    dest = cached_weights_path(name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sha = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp:
                try:
                    while chunk := response.read(1 << 20):
                        tmp.write(chunk)
                        sha.update(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
                except BaseException:
                    os.unlink(tmp.name)
                    raise
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise WeightsUnavailableError(
            f"ImageNet weights for {name} are not cached and could not be downloaded "
            f"({_reason(exc)}: offline or blocked). Fetch {url} on a machine with internet and put it "
            f'at {dest}, or load that file as "My checkpoint".'
        ) from exc
    match = _HASH_PREFIX.search(os.path.basename(url))
    if match and not sha.hexdigest().startswith(match.group(1)):
        os.unlink(tmp.name)
        raise WeightsUnavailableError(f"The download of {name}'s weights was corrupted; try again.")
    os.replace(tmp.name, dest)
    return dest


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return str(reason).strip() or type(exc).__name__


def load_pretrained(name: str, *, progress: Progress | None = None, download: bool = True) -> LoadedModel:
    """ResNet ``name`` with torchvision's ImageNet weights, from the cache or downloaded once.

    Raises:
        WeightsUnavailableError: the variant has none, or they are not cached and cannot be fetched.
    """
    weights = pretrained_weights(name)
    path = cached_weights_path(name)
    if not path.is_file():
        if not download:
            url = weights.url  # type: ignore[attr-defined]
            raise WeightsUnavailableError(
                f"ImageNet weights for {name} are not cached (expected at {path}). Fetch {url} on a "
                'machine with internet and put it there, or load that file as "My checkpoint".'
            )
        path = download_weights(name, progress=progress)
    state = _read_state_dict(path.read_bytes(), path.name)
    model = create_model(name)
    _load_strict(model, state, path.name)
    return LoadedModel(
        model=model.eval(),
        name=name,
        weights="imagenet",
        source=f"ImageNet ({weights.name}, torchvision)",  # type: ignore[attr-defined]
        preprocessing=from_torchvision(weights),
        class_names=tuple(weights.meta["categories"]),  # type: ignore[attr-defined]
        metadata={"url": weights.url, "acc@1": _top1(weights)},  # type: ignore[attr-defined]
    )


def _top1(weights: object) -> float | None:
    metrics = weights.meta.get("_metrics", {})  # type: ignore[attr-defined]
    return next((m.get("acc@1") for m in metrics.values() if "acc@1" in m), None)


# --------------------------------------------------------------------------- checkpoints


def load_checkpoint(
    name: str | ResNetConfig, data: bytes | str | os.PathLike[str], *, filename: str | None = None
) -> LoadedModel:
    """Load a user's state dict (``.pt``/``.pth`` or ``.safetensors``) into variant ``name``.

    The number of classes is taken from the checkpoint's ``fc.weight``, so a 10-class fine-tune of
    ResNet-18 loads into ``resnet18`` directly.
    """
    if not isinstance(data, bytes):
        filename = filename or os.path.basename(os.fspath(data))
        try:
            data = Path(data).read_bytes()
        except OSError as exc:
            raise CheckpointError(f"Cannot read checkpoint {filename}: {exc.strerror}.") from exc
    filename = filename or "checkpoint"
    state = _read_state_dict(data, filename)
    config = name if isinstance(name, ResNetConfig) else get_spec(name).config
    label = name if isinstance(name, str) else "the chosen configuration"
    knobs: dict[str, object] = {}
    fc = state.get("fc.weight")
    if isinstance(fc, torch.Tensor) and fc.ndim == 2:
        knobs["num_classes"] = int(fc.shape[0])
    conv1 = state.get("conv1.weight")
    if isinstance(conv1, torch.Tensor) and conv1.ndim == 4:
        knobs["in_channels"] = int(conv1.shape[1])
    try:
        config = config.replace(**knobs)
    except ConfigError as exc:  # a shape past the caps: refused before anything is built
        raise CheckpointError(f"{filename} does not fit {label}: {exc}") from exc
    check_shapes(config, state, filename, label=str(label))  # on the meta device: nothing allocated
    model = create_model(config)
    _load_strict(model, state, filename, label=str(label))
    classes = state.get("_class_names")
    loaded = LoadedModel(
        model=model.eval(),
        name=str(label),
        weights="checkpoint",
        source=f"checkpoint {filename}",
        preprocessing=for_config(model.config),
        class_names=tuple(classes) if isinstance(classes, list | tuple) else None,
    )
    return _as_imagenet(loaded) if loaded.class_names is None else loaded


def _as_imagenet(loaded: LoadedModel) -> LoadedModel:
    """A 1000-class checkpoint of a torchvision variant is taken for ImageNet weights: it gets their
    class names and preprocessing from torchvision's metadata (shipped with torchvision, no download)."""
    cfg = loaded.config
    if cfg.num_classes != 1000 or cfg.in_channels != 3 or not isinstance(loaded.name, str):
        return loaded
    try:
        weights = pretrained_weights(loaded.name)
    except (WeightsUnavailableError, UnknownModelError):
        return loaded
    loaded.class_names = tuple(weights.meta["categories"])  # type: ignore[attr-defined]
    loaded.preprocessing = from_torchvision(weights)
    loaded.source += " (ImageNet class names and preprocessing from torchvision's metadata)"
    return loaded


def _read_state_dict(data: bytes, filename: str) -> dict[str, torch.Tensor]:
    if not data:
        raise CheckpointError(f"{filename} is empty.")
    if filename.endswith(".safetensors") or data[8:9] == b"{":
        try:
            from safetensors.torch import load as load_safetensors

            return dict(load_safetensors(data))
        except Exception as exc:  # safetensors raises its own SafetensorError
            if filename.endswith(".safetensors"):
                raise CheckpointError(f"{filename} is not a valid safetensors file ({exc}).") from exc
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        # weights_only refuses a pickle that names Python callables ("Unsupported global"): that is
        # the malicious case. Anything else it cannot parse is simply not a checkpoint.
        if "Unsupported global" in str(exc) or "GLOBAL" in str(exc):
            raise CheckpointError(
                f"{filename} contains Python objects other than tensors and was refused: loading it "
                "could run arbitrary code. Save a plain state dict (torch.save(model.state_dict(), path))."
            ) from exc
        raise CheckpointError(f"{filename} is not a PyTorch checkpoint ({type(exc).__name__}).") from exc
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            names = obj.get("class_names")
            obj = dict(obj[key])
            if isinstance(names, list | tuple):
                obj["_class_names"] = list(names)
            break
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{filename} holds no state dict (a mapping of names to tensors).")
    # DistributedDataParallel and torch.compile prefix every key.
    keys = [k for k in obj if not k.startswith("_class")]
    prefix = next((p for p in ("module.", "_orig_mod.") if all(k.startswith(p) for k in keys)), "")
    return {k.removeprefix(prefix): v for k, v in obj.items()}


def check_shapes(config: ResNetConfig, state: dict, filename: str, label: str | None = None) -> None:
    """Refuse ``state`` unless every key and shape is what ``config`` builds, before building it.

    The expected shapes come from the model built on the meta device (no memory, no init), so a
    file that declares a zero-element ``fc.weight`` of a million rows is refused without the
    server ever allocating the million-class model it implies.

    Raises:
        CheckpointError: a key missing or unexpected, or a shape that differs, in one sentence.
    """
    from resviz.models.resnet import ResNet

    with torch.device("meta"):
        expected = ResNet(config).state_dict()
    _refuse_mismatch(expected, state, filename, label)


def _load_strict(model: torch.nn.Module, state: dict, filename: str, label: str | None = None) -> None:
    state = {k: v for k, v in state.items() if not k.startswith("_")}
    _refuse_mismatch(model.state_dict(), state, filename, label)
    model.load_state_dict(state, strict=True)


def _refuse_mismatch(expected: dict, state: dict, filename: str, label: str | None) -> None:
    state = {k: v for k, v in state.items() if not k.startswith("_")}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        k
        for k in set(expected) & set(state)
        if isinstance(state[k], torch.Tensor) and state[k].shape != expected[k].shape
    )
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) such as {missing[0]!r}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) such as {unexpected[0]!r}")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} shape mismatch(es) such as {k!r} "
                f"({tuple(state[k].shape)} vs {tuple(expected[k].shape)})"
            )
        guesses = guess_variants(state)
        hint = f" It looks like {' or '.join(guesses)}." if guesses else ""
        raise CheckpointError(f"{filename} does not fit {label or 'this model'}: {'; '.join(parts)}.{hint}")


@cache
def _signature(name: str) -> frozenset[tuple[str, tuple[int, ...]]]:
    from resviz.models.resnet import ResNet

    with torch.device("meta"):  # no memory, no init cost: only names and shapes are needed
        model = ResNet(get_spec(name).config.replace(num_classes=1))
    return frozenset((k, tuple(v.shape)) for k, v in model.state_dict().items() if not k.startswith("fc."))


def _stage_layout(keys) -> tuple[int, ...]:
    blocks: dict[int, set[int]] = {}
    for key in keys:
        if m := re.match(r"layer(\d+)\.(\d+)\.", key):
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    return tuple(len(blocks[s]) for s in sorted(blocks))


def guess_variants(state: dict[str, torch.Tensor], limit: int = 2) -> list[str]:
    """Registered variants whose parameter names and shapes match ``state`` (ignoring the classifier)."""
    sig = frozenset(
        (k, tuple(v.shape))
        for k, v in state.items()
        if isinstance(v, torch.Tensor) and not k.startswith(("fc.", "_"))
    )
    if not sig:
        return []
    layout = _stage_layout(k for k, _ in sig)
    exact, scored = [], []
    for spec in list_models():
        if spec.config.layers != layout:
            continue  # cheap filter: only variants with the same blocks per stage get built (on meta)
        theirs = _signature(spec.name)
        if theirs == sig:  # option-A nets and their plain twins have identical parameters
            exact.append(spec.name)
            continue
        overlap = len(theirs & sig) / max(len(theirs | sig), 1)
        if overlap > 0.5:
            scored.append((overlap, spec.name))
    return exact or [n for _, n in sorted(scored, reverse=True)[:limit]]


# --------------------------------------------------------------------------- one entry point


def load_model(
    name: str,
    weights: WeightsSpec | str | os.PathLike[str] = "random",
    *,
    seed: int | None = 0,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    download: bool = True,
    **knobs: object,
) -> LoadedModel:
    """Build variant ``name`` with ``weights`` from any of the four sources, in eval mode on ``device``.

    Args:
        name: a registered variant. A saved run brings its own variant: when ``name`` differs, the
            run's is used and ``notice`` says so.
        weights: a :class:`WeightsSpec`, or what :meth:`WeightsSpec.parse` reads: ``"random"``,
            ``"imagenet"``, a checkpoint path, a run folder.
        seed: seed of a random initialization (also of the fallback when ImageNet weights are missing).
        device: where the model is moved.
        progress: ``(bytes done, bytes total)`` callback of an ImageNet download.
        download: fetch ImageNet weights that are not cached (else fall back to random ones).
        **knobs: architecture changes (:func:`resviz.models.get_config`), for random weights and checkpoints.

    Pretrained weights that cannot be had (offline, not cached) fall back to random weights with a
    ``notice`` that says so, rather than failing or hanging.

    Raises:
        CheckpointError: a checkpoint or run that cannot be read or does not fit.
    """
    spec = weights if isinstance(weights, WeightsSpec) else WeightsSpec.parse(weights)
    if spec.kind == "imagenet":
        if knobs:
            raise CheckpointError(
                "Pretrained weights fit the standard architecture only; reset the knobs to load them."
            )
        try:
            loaded = load_pretrained(name, progress=progress, download=download)
        except WeightsUnavailableError as exc:
            loaded = _random(name, seed, knobs)
            loaded.notice = f"{exc} Using random weights instead."
    elif spec.kind == "random":
        loaded = _random(name, seed, knobs)
    elif spec.kind == "checkpoint":
        source = spec.data if spec.data is not None else str(spec.path)
        loaded = load_checkpoint(get_config(name, **knobs) if knobs else name, source, filename=spec.filename)
    else:
        loaded = _load_run(name, str(spec.path), knobs)
    loaded.model.to(device)
    return loaded


def _load_run(name: str, path: str, knobs: dict[str, object]) -> LoadedModel:
    if knobs:
        raise CheckpointError("A saved run carries its own architecture; reset the knobs to load it.")
    loaded = load_run(path)
    if name != loaded.name:
        loaded.notice = f"Using the run's own model: {loaded.name} ({name} does not apply to a saved run)."
    return loaded


def load_run(path: str | os.PathLike[str]) -> LoadedModel:
    """Rebuild a saved run's model in eval mode, with its class names and preprocessing.

    :func:`load_model` calls this for a run folder (``--weights RUN_DIR``, the
    sidebar's saved runs); the weights are read and matched as a checkpoint's are.

    Raises:
        CheckpointError: the folder is not a run, or its weights do not fit its config.
    """
    from resviz.runs import META, WEIGHTS, read_metadata, weights_file

    path = Path(path)
    meta = read_metadata(path)
    try:
        config = ResNetConfig.from_dict(dict(meta["variant_config"]))  # type: ignore[arg-type]
        preprocessing = Preprocessing.from_dict(dict(meta["preprocessing"]))  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path.name}'s {META} is incomplete or damaged ({exc}).") from exc
    file = weights_file(path)
    where = f"{path.name}/{file.name if file else WEIGHTS}"
    try:
        if file is None:
            raise FileNotFoundError(2, "no weights file")
        data = file.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path.name}'s weights could not be read ({exc.strerror}).") from exc
    state = _read_state_dict(data, where)  # weights_only: a pickle that would run code is refused
    check_shapes(config, state, where, label="its saved configuration")  # before allocating anything
    model = create_model(config)
    _load_strict(model, state, where, label="its saved configuration")
    names = meta.get("class_names")
    err = meta.get("final_train_error")
    err = float(err) if isinstance(err, int | float) else None
    return LoadedModel(
        model=model.eval(),
        name=str(meta.get("name", path.name)),
        weights="run",
        source=f"training run {path.name} ({meta.get('dataset')}"
        + (f", train error {100 * err:.1f}%)" if err is not None else ")"),
        preprocessing=preprocessing,
        class_names=tuple(str(n) for n in names) if isinstance(names, list) else None,
        metadata=meta,
    )


def _random(name: str, seed: int | None, knobs: dict[str, object]) -> LoadedModel:
    model = create_model(name, seed=seed, **knobs)
    return LoadedModel(
        model=model.eval(),
        name=name,
        weights="random",
        source="random initialization" + (f" (seed {seed})" if seed is not None else ""),
        preprocessing=for_config(model.config),
    )
