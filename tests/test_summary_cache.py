"""Summaries share one meta-device model per architecture: sharing must not change a single count."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch import nn

from resviz.analysis.summary import COMPARISON_MODELS, _meta_resnet, summarize, summarize_torchvision
from resviz.models import create_model, get_spec, model_names


def test_threads_summarizing_one_architecture_at_once_get_the_sequential_answers() -> None:
    sizes = [32, 48, 64, 96, 128, 160] * 2
    config = get_spec("resnet20").config
    _meta_resnet.cache_clear()
    alone = {size: summarize(config, size) for size in set(sizes)}
    _meta_resnet.cache_clear()
    with ThreadPoolExecutor(max_workers=6) as pool:
        together = list(pool.map(lambda size: summarize(config, size), sizes))
    assert [s for s in together] == [alone[size] for size in sizes]
    assert _meta_resnet.cache_info().currsize == 1  # one shared model served every thread


def test_the_shared_meta_model_is_left_clean() -> None:
    summarize("resnet18", 64)
    model = _meta_resnet(get_spec("resnet18").config).model
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
        assert "forward" not in vars(m)  # the shape-only patch was undone


def _fx_depth(model: nn.Module) -> int:
    """The reference: longest conv/linear path of torch.fx's graph (single-threaded here)."""
    graph = torch.fx.symbolic_trace(model.eval()).graph
    modules = dict(model.named_modules())
    depth: dict[torch.fx.Node, int] = {}
    for node in graph.nodes:
        here = int(node.op == "call_module" and isinstance(modules.get(node.target), (nn.Conv2d, nn.Linear)))
        depth[node] = here + max((depth[n] for n in node.all_input_nodes), default=0)
    return max(depth.values())


@pytest.mark.parametrize(
    "name", ["resnet18", "resnet50", "plain34", "resnet20", "plain56", "preact_resnet18", "resnext50_32x4d"]
)
def test_depth_from_the_autograd_graph_equals_torch_fx(name: str) -> None:
    with torch.device("meta"):
        model = create_model(name)
    size = 224 if get_spec(name).config.stem == "imagenet" else 32
    assert summarize(name, size).depth == _fx_depth(model)


@pytest.mark.parametrize("name", COMPARISON_MODELS)
def test_depth_of_the_peers_equals_torch_fx(name: str) -> None:
    import torchvision

    extra = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    with torch.device("meta"):
        model = torchvision.models.get_model(name, weights=None, **extra)
    assert summarize_torchvision(name, 224).depth == _fx_depth(model)


def test_a_forward_pass_in_another_thread_during_summaries_is_undisturbed() -> None:
    """torch.fx's tracer patched nn.Module.__call__ process-wide: a forward pass in another thread
    while a summary traced failed with NameError. Summaries no longer trace."""
    model = create_model("resnet8" if "resnet8" in model_names() else "resnet20").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    stop = threading.Event()
    errors: list[BaseException] = []

    def forwards() -> None:
        try:
            while not stop.is_set():
                with torch.no_grad():
                    assert torch.equal(model(x), expected)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=forwards)
    worker.start()
    try:
        _meta_resnet.cache_clear()
        for name in ("resnet18", "resnet34", "resnet20", "plain20"):
            summarize(name, 64)
    finally:
        stop.set()
        worker.join()
    assert errors == []
