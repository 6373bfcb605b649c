"""Sessions side by side: model replicas give bit for bit what one thread alone gets, locks still hold."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from resviz import device
from resviz.analysis.grad_cam import captum_grad_cam, grad_cam
from resviz.analysis.gradients import gradient_profile
from resviz.hooks import ReplicaPool, hook_count, model_lock
from resviz.models import create_model


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    m = create_model("resnet_tiny", num_classes=10, seed=0).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that a leaked train() would show
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
    return m


def images(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 48, 48, generator=torch.Generator().manual_seed(seed))


def analyse(m: torch.nn.Module, x: torch.Tensor) -> list[np.ndarray]:
    """A hooked analysis (Grad-CAM) and one that switches modes (a train-mode gradient profile)."""
    cam = grad_cam(m, x, "layer4", target=[1, 2, 3, 4])
    prof = gradient_profile(m, x, torch.tensor([0, 1, 2, 3]), split=False)
    return [cam.maps, cam.raw, prof.grad_norm, prof.block_out_grad]


def run_at_once(work, args: list) -> list:
    """``work(*a)`` for each ``a`` in ``args``, each in its own thread, all released together."""
    barrier = threading.Barrier(len(args))
    out: list = [None] * len(args)
    errors: list[BaseException] = []

    def go(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            out[i] = work(*args[i])
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(args))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return out


def test_replicas_are_exact_independent_copies(model) -> None:
    pool = ReplicaPool(model, 3)
    assert len(pool) == 3 and pool.models[0] is model
    reference = model.state_dict()
    for copy in pool.models[1:]:
        assert copy is not model and model_lock(copy) is not model_lock(model)
        state = copy.state_dict()
        assert state.keys() == reference.keys()
        assert all(torch.equal(state[k], reference[k]) for k in reference)
        assert all(state[k].data_ptr() != reference[k].data_ptr() for k in reference)  # no shared storage
        assert [m.training for m in copy.modules()] == [m.training for m in model.modules()]
        assert hook_count(copy) == 0


def test_grad_cam_on_a_replica_matches_captum(model) -> None:
    x = images()
    copy = ReplicaPool(model, 2).models[1]
    np.testing.assert_allclose(
        grad_cam(copy, x, "layer4", target=[1, 2, 3, 4]).maps,
        captum_grad_cam(model, x, "layer4", [1, 2, 3, 4]),
        atol=1e-5,
    )


def test_two_threads_at_once_give_exactly_the_single_thread_result(model) -> None:
    x = images()
    alone = analyse(model, x)  # one thread, nothing else running
    pool = ReplicaPool(model, 2)
    # Each thread on its own copy, both at once, several times over; then both on the one shared model.
    together = run_at_once(lambda m: [analyse(m, x) for _ in range(3)], [[pool.models[0]], [pool.models[1]]])
    shared = run_at_once(lambda m: analyse(m, x), [[model], [model]])
    for result in [*together[0], *together[1], *shared]:
        for got, want in zip(result, alone, strict=True):
            assert np.array_equal(got, want)  # bit for bit, not merely close
    for m in pool.models:
        assert hook_count(m) == 0 and not any(mod.training for mod in m.modules())


def test_pick_prefers_a_copy_nobody_is_analysing(model) -> None:
    pool = ReplicaPool(model, 2)
    assert pool.pick() is pool.models[0]  # all free: the first
    held, release = threading.Event(), threading.Event()

    def busy(m: torch.nn.Module) -> None:
        with model_lock(m):
            held.set()
            release.wait(timeout=10)

    worker = threading.Thread(target=busy, args=(pool.models[0],))
    worker.start()
    try:
        assert held.wait(timeout=10)
        assert pool.pick() is pool.models[1]
        with model_lock(pool.models[1]):  # both busy: still answers (in turn), without blocking
            assert pool.pick() in pool.models
    finally:
        release.set()
        worker.join()


def test_copies_wait_for_an_analysis_in_progress(model) -> None:
    """A pool made while another thread holds the model (hooks on, modes changed) copies it after."""
    started, finish = threading.Event(), threading.Event()

    def mutate() -> None:
        with model_lock(model):
            model.train()
            handle = model.fc.register_forward_hook(lambda *_: None)
            started.set()
            finish.wait(timeout=10)
            handle.remove()
            model.eval()

    worker = threading.Thread(target=mutate)
    worker.start()
    assert started.wait(timeout=10)
    timer = threading.Timer(0.2, finish.set)
    timer.start()
    pool = ReplicaPool(model, 2)  # blocks until mutate() has put the model back
    worker.join()
    copy = pool.models[1]
    assert hook_count(copy) == 0 and not any(m.training for m in copy.modules())


def test_replica_count(model, monkeypatch) -> None:
    monkeypatch.delenv(device.REPLICAS_ENV, raising=False)
    assert device.replica_count(model) == 1  # off unless asked for
    monkeypatch.setenv(device.REPLICAS_ENV, "2")
    assert device.replica_count(model) == 2
    monkeypatch.setattr(device, "REPLICA_MAX_BYTES", 1000)  # "a large model": no copies
    assert device.replica_count(model) == 1


def test_score_cams_folded_copy_leaves_other_threads_forward_passes_alone() -> None:
    """Score-CAM's BatchNorm-folded copy is made without torch.fx, whose tracer patched
    nn.Module.__call__ for the whole process (289 of 300 forward passes in another thread failed)."""
    import threading

    from resviz.analysis.cams_score import inference_copy
    from resviz.models import create_model

    other = create_model("resnet8", seed=1).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = other(x)
    stop, errors = threading.Event(), []

    def forwards() -> None:
        try:
            while not stop.is_set():
                with torch.no_grad():
                    assert torch.equal(other(x), expected)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=forwards)
    worker.start()
    try:
        model = create_model("resnet18", seed=0).eval()
        for _ in range(5):
            folded = inference_copy(model)
    finally:
        stop.set()
        worker.join()
    assert errors == []
    with torch.no_grad():
        y = torch.randn(1, 3, 32, 32)
        assert torch.allclose(folded(y.contiguous(memory_format=torch.channels_last)), model(y), atol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
