"""Hooks only inside context managers, and a lock per model.

A model cached by the app is one object shared by every browser session, each on its own thread.
Hooks registered by one session would capture another session's tensors, and ``model.train()`` in
one would corrupt BatchNorm statistics for all. So every capture here holds the model's lock for its
whole duration, restores the model's modes on exit, and removes each hook it installed, on success
and on failure alike (hooks are entered into an :class:`contextlib.ExitStack`).

That lock makes every session that uses the same cached model queue behind the others' analyses.
A :class:`ReplicaPool` holds exact copies of a small model, each with its own lock, so that as many
analyses as there are cores run side by side, each giving bit for bit what it gives alone (how
many copies: :func:`resviz.device.replica_count`, one unless asked for).
"""

from __future__ import annotations

import copy
import difflib
import itertools
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from resviz.errors import LayerNotFoundError

# torch's own hook signatures: a forward hook may return a replacement output, a pre-hook new inputs.
ForwardHook = Callable[[nn.Module, tuple[Any, ...], Any], Any]
ForwardPreHook = Callable[[nn.Module, tuple[Any, ...]], Any]

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock that serialises analyses of ``model`` across threads."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


class ReplicaPool:
    """Read-only copies of one model, so that analyses of it need not queue behind each other.

    The copies are made here, at once, under the model's lock (so between analyses, never of a
    model mid-mutation): same parameters, buffers and modes, so any analysis gives the same bits
    on each.
    Each copy is a shared model like any other, with its own :func:`model_lock`; the lock's promise
    holds per copy (nobody sees a copy mid-mutation), and :meth:`pick` only chooses which copy a
    caller starts on.

    Args:
        model: the model, in the state every copy should have (eval mode, no hooks).
        size: how many models in all, ``model`` included; 1 makes no copies.
    """

    def __init__(self, model: nn.Module, size: int) -> None:
        with model_lock(model):  # copied between analyses, never mid-mutation (nor with hooks on)
            self.models = (model, *(copy.deepcopy(model) for _ in range(max(1, size) - 1)))
        self._turn = itertools.count()

    def __len__(self) -> int:
        return len(self.models)

    def pick(self) -> nn.Module:
        """A copy nobody is analysing right now, else the next one in turn (its lock then queues)."""
        if len(self.models) == 1:
            return self.models[0]
        for model in self.models:
            lock = model_lock(model)
            if lock.acquire(blocking=False):  # free now (a peek: the caller takes the lock itself later)
                lock.release()
                return model
        return self.models[next(self._turn) % len(self.models)]


def resolve_layers(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    """Map dotted names to modules, failing early with the closest valid names."""
    resolved = {}
    for name in names:
        try:
            # get_submodule walks one path; listing every module (named_modules) costs more than a
            # forward pass's worth of Python on ResNet-152, so it is kept for the error message.
            resolved[name] = model.get_submodule(name) if name else model
        except AttributeError:
            valid = [n for n, _ in model.named_modules() if n]
            close = difflib.get_close_matches(name, valid, n=4, cutoff=0.5)
            hint = f" Close matches: {', '.join(close)}." if close else ""
            raise LayerNotFoundError(f"The model has no layer named {name!r}.{hint}") from None
    return resolved


def block_taps(block: str) -> dict[str, str]:
    """Dotted names of a residual block's three signals: F(x), the shortcut, and the output."""
    return {"branch": f"{block}.branch_out", "shortcut": f"{block}.shortcut_out", "output": block}


def hook_count(model: nn.Module) -> int:
    """How many module hooks are installed anywhere in ``model`` (zero after every resviz call)."""
    total = 0
    for m in model.modules():
        for attr in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
            "_state_dict_hooks",
        ):
            total += len(getattr(m, attr, {}))
    return total


@contextmanager
def preserve_model_state(model: nn.Module, *, train: bool = False) -> Iterator[nn.Module]:
    """Hold the model's lock, set eval (or train) mode, and put every module's mode back on exit.

    BatchNorm running statistics are saved and restored too when ``train=True``, so a forward pass
    in train mode (for example a gradient analysis) leaves no trace on a shared model.
    """
    with model_lock(model):
        # Only modules whose mode differs are touched: an eval-mode model analysed in eval mode (the
        # common case) costs one walk over its modules and no attribute writes.
        changed = [m for m in model.modules() if m.training != train]
        saved = {k: v.clone() for k, v in model.state_dict().items() if _is_bn_stat(k)} if train else {}
        for m in changed:
            m.training = train
        try:
            yield model
        finally:
            for m in changed:
                m.training = not train
            if saved:
                with torch.no_grad():
                    state = model.state_dict()
                    for k, v in saved.items():
                        state[k].copy_(v)


def _is_bn_stat(key: str) -> bool:
    return key.endswith(("running_mean", "running_var", "num_batches_tracked"))


@contextmanager
def forward_hooks(
    model: nn.Module,
    hooks: Mapping[str, ForwardHook] | Iterable[tuple[str, ForwardHook]] = (),
    *,
    pre: Mapping[str, ForwardPreHook] | Iterable[tuple[str, ForwardPreHook]] = (),
) -> Iterator[None]:
    """Install forward hooks (and pre-hooks) on named modules for the duration of the block.

    The one place resviz registers module hooks: names are checked first (a bad one raises
    :class:`LayerNotFoundError` before anything is installed), the model's lock is held throughout,
    and every handle is entered into an :class:`ExitStack` as soon as it exists, so all of them are
    removed on exit, after an exception too.

    Args:
        model: the network.
        hooks: dotted name -> ``hook(module, inputs, output)``, or ``(name, hook)`` pairs when one
            module takes several. A hook that returns a tensor replaces the module's output.
        pre: the same for ``hook(module, inputs)``, run before the module's forward.

    Example:
        >>> with forward_hooks(model, {"layer1.0": lambda m, i, o: print(o.shape)}):
        ...     model(x)
    """
    post_items = list(hooks.items() if isinstance(hooks, Mapping) else hooks)
    pre_items = list(pre.items() if isinstance(pre, Mapping) else pre)
    modules = resolve_layers(model, dict.fromkeys(n for n, _ in (*pre_items, *post_items)))
    with model_lock(model), ExitStack() as stack:
        for name, fn in pre_items:
            stack.callback(modules[name].register_forward_pre_hook(fn).remove)
        for name, fn in post_items:
            stack.callback(modules[name].register_forward_hook(fn).remove)
        yield


@contextmanager
def capture_outputs(
    model: nn.Module, names: Iterable[str], *, detach: bool = True, to_cpu: bool = False
) -> Iterator[dict[str, Tensor]]:
    """Record the output of each named module during the forward passes run inside the block.

    Example:
        >>> with capture_outputs(model, ["layer1.0", "layer1.0.branch_out"]) as acts:
        ...     model(x)
        >>> acts["layer1.0"].shape  # (N, C, H, W)

    A module called more than once keeps its last output. Modules never called (the shortcut tap of
    a plain block, say) are absent from the dict.
    """
    captured: dict[str, Tensor] = {}

    def make_hook(name: str) -> ForwardHook:
        def hook(_module: nn.Module, _inputs: object, output: Tensor) -> None:
            out = output.detach() if detach else output
            captured[name] = out.cpu() if to_cpu else out

        return hook

    with forward_hooks(model, {name: make_hook(name) for name in names}):
        yield captured


@contextmanager
def capture_gradients(model: nn.Module, names: Iterable[str]) -> Iterator[dict[str, Tensor]]:
    """Record d(loss)/d(output) of each named module during the backward passes inside the block.

    A tensor hook is registered on each output from inside a forward hook: it fires when autograd
    reaches that tensor, without the caveats of module backward hooks.
    """
    grads: dict[str, Tensor] = {}

    def make_hook(name: str) -> ForwardHook:
        def hook(_module: nn.Module, _inputs: object, output: Tensor) -> None:
            if isinstance(output, Tensor) and output.requires_grad:

                def store(grad: Tensor) -> None:
                    grads[name] = grad.detach()

                output.register_hook(store)

        return hook

    with forward_hooks(model, {name: make_hook(name) for name in names}):
        yield grads
