"""Summaries (shapes, MACs, depth), hook hygiene, device selection, and the CLI of the foundation."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from resviz import cli
from resviz.analysis.summary import summarize, summarize_torchvision, weighted_depth
from resviz.device import describe_device, model_device, oom_guard, resolve_device
from resviz.errors import DeviceError, LayerNotFoundError
from resviz.hooks import (
    capture_gradients,
    capture_outputs,
    forward_hooks,
    hook_count,
    model_lock,
    preserve_model_state,
)
from resviz.models import create_model

# ----------------------------------------------------------------------------------- summary


def test_resnet50_stages_and_macs_match_torchvision():
    s = summarize("resnet50", 224)
    shapes = {st.name: st.output_shape for st in s.stages}
    assert shapes["conv1"] == (64, 112, 112)
    assert shapes["layer1"] == (256, 56, 56)
    assert shapes["layer2"] == (512, 28, 28)
    assert shapes["layer3"] == (1024, 14, 14)
    assert shapes["layer4"] == (2048, 7, 7)
    assert s.macs / 1e9 == pytest.approx(4.09, abs=0.005)  # torchvision's published GFLOPS (MACs)
    assert s.params == 25_557_032 and s.depth == 50
    assert sum(st.params for st in s.stages) == s.params
    assert s.layers[0].name == "conv1" and s.layers[0].output_shape == (64, 112, 112)


def test_resnet18_macs_and_shortcut_additions():
    s = summarize("resnet18", 224)
    assert s.macs / 1e9 == pytest.approx(1.81, abs=0.005)
    # One addition per element of every block's output: 2 blocks per stage.
    expected = 2 * (64 * 56 * 56 + 128 * 28 * 28 + 256 * 14 * 14 + 512 * 7 * 7)
    assert s.adds == expected
    assert summarize("plain18", 224).adds == 0


def test_summary_of_a_live_model_leaves_it_untouched():
    model = create_model("resnet_tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = summarize(model, 64)
    assert hook_count(model) == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert s.params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "depth", "gmacs"),
    [
        ("vgg16", 16, 15.47),
        ("googlenet", 22, 1.50),
        ("alexnet", 8, 0.71),
        ("densenet121", 121, 2.83),
        ("mobilenet_v2", 53, 0.30),
    ],
)
def test_peer_architectures_are_measured(name, depth, gmacs):
    s = summarize_torchvision(name)
    assert s.depth == depth
    assert s.macs / 1e9 == pytest.approx(gmacs, abs=0.01)


def test_depth_counts_the_longest_weighted_path():
    assert weighted_depth(create_model("resnet56")) == 56
    assert summarize("resnet152", 64).depth == 152


# ----------------------------------------------------------------------------------- hooks


def test_capture_outputs_removes_hooks_after_success_and_failure():
    model = create_model("resnet8").eval()
    x = torch.randn(1, 3, 16, 16)
    with capture_outputs(model, ["layer1.0", "layer1.0.branch_out", "layer1.0.shortcut_out"]) as acts:
        model(x)
    assert set(acts) == {"layer1.0", "layer1.0.branch_out", "layer1.0.shortcut_out"}
    assert hook_count(model) == 0
    with pytest.raises(RuntimeError), capture_outputs(model, ["layer2.0"]):
        model(torch.randn(1, 5, 16, 16))  # wrong channel count fails inside the forward
    assert hook_count(model) == 0


def test_block_output_is_relu_of_branch_plus_shortcut():
    model = create_model("resnet8").eval()
    with (
        torch.no_grad(),
        capture_outputs(model, ["layer2.0", "layer2.0.branch_out", "layer2.0.shortcut_out"]) as a,
    ):
        model(torch.randn(2, 3, 16, 16))
    assert torch.allclose(a["layer2.0"], torch.relu(a["layer2.0.branch_out"] + a["layer2.0.shortcut_out"]))


def test_unknown_layers_suggest_close_names():
    model = create_model("resnet8")
    expected = pytest.raises(LayerNotFoundError, match=r"layer1\.0\.conv1")
    with expected, capture_outputs(model, ["layer1.0.conv"]):
        pass


def test_capture_gradients_matches_autograd():
    model = create_model("resnet8").eval()
    x = torch.randn(2, 3, 16, 16)
    with (
        capture_gradients(model, ["layer3.0"]) as grads,
        capture_outputs(model, ["layer3.0"], detach=False) as acts,
    ):
        loss = model(x).square().sum()
        (expected,) = torch.autograd.grad(loss, acts["layer3.0"], retain_graph=True)
        loss.backward()
    assert torch.allclose(grads["layer3.0"], expected)
    assert hook_count(model) == 0


def test_forward_hooks_run_in_order_replace_outputs_and_go_away():
    model = create_model("resnet8").eval()
    x = torch.randn(1, 3, 16, 16)
    calls = []

    def record(tag: str):
        return lambda _m, *args: calls.append(tag)

    def zero(_m, _i, out):
        return torch.zeros_like(out)

    with forward_hooks(
        model,
        [("layer1.0", record("post a")), ("layer1.0", record("post b")), ("layer3", zero)],
        pre={"layer1.0": record("pre")},
    ):
        assert hook_count(model) == 4
        with torch.no_grad():
            features = model.forward_features(x)
    assert calls == ["pre", "post a", "post b"]
    assert not features.any()  # layer3's output was replaced
    assert hook_count(model) == 0


def test_forward_hooks_check_names_first_and_clean_up_after_failure():
    model = create_model("resnet8").eval()
    with (
        pytest.raises(LayerNotFoundError, match="layer2"),
        forward_hooks(model, {"layer2": print, "layer9": print}),
    ):
        pass
    assert hook_count(model) == 0

    def boom(*_args):
        raise RuntimeError("hook failed")

    with pytest.raises(RuntimeError, match="hook failed"), forward_hooks(model, {"layer2.0": boom}):
        model(torch.randn(1, 3, 16, 16))
    assert hook_count(model) == 0
    released = []
    t = threading.Thread(target=lambda: released.append(model_lock(model).acquire(timeout=5)))
    t.start()
    t.join()
    assert released == [True]


def test_preserve_model_state_restores_modes_and_batchnorm_statistics():
    model = create_model("resnet8").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with preserve_model_state(model, train=True):
        assert model.training
        model(torch.randn(4, 3, 16, 16))  # updates running statistics in train mode
    assert not model.training and not any(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_capture_serialises_threads_on_one_model():
    model = create_model("resnet8").eval()
    inputs = [torch.randn(1, 3, 16, 16) for _ in range(4)]
    with torch.no_grad():
        expected = [
            model.layer3(model.layer2(model.layer1(model.relu(model.bn1(model.conv1(x)))))) for x in inputs
        ]
    results: dict[int, torch.Tensor] = {}

    def work(i: int) -> None:
        for _ in range(5):
            with torch.no_grad(), capture_outputs(model, ["layer3"]) as acts:
                model(inputs[i])
            results[i] = acts["layer3"]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(torch.allclose(results[i], expected[i]) for i in range(4))
    assert hook_count(model) == 0


# ----------------------------------------------------------------------------------- device


def test_auto_device_and_missing_devices():
    device = resolve_device("auto")
    assert device.type in ("cuda", "mps", "cpu")
    assert "CPU" in describe_device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="not available"):
            resolve_device("cuda")
    with pytest.raises(DeviceError, match="Unknown device"):
        resolve_device("tpu")


def test_model_device_is_the_first_parameters():
    model = create_model("resnet8")
    assert model_device(model) == torch.device("cpu")
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")  # no parameters at all
    with torch.device("meta"):
        assert model_device(create_model("resnet8")).type == "meta"
    if torch.cuda.is_available():
        assert model_device(model.to("cuda")).type == "cuda"


def test_out_of_memory_becomes_a_sentence():
    with pytest.raises(DeviceError, match="ran out of GPU memory"), oom_guard("Grad-CAM"):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20 GiB")
    with pytest.raises(ValueError), oom_guard():
        raise ValueError("unrelated errors pass through")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_models_run_on_cuda():
    model = create_model("resnet18").to("cuda").eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64, device="cuda")).shape == (2, 1000)


_RSS_AFTER_FREE = """
import os
import torch
from resviz.device import tune_cpu_allocator
tuned = tune_cpu_allocator()
page = os.sysconf("SC_PAGE_SIZE")
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page
before = rss()
t = torch.ones(5 * 1024 * 1024)  # 20 MB, touched
del t
print(tuned, (rss() - before) / 2**20)
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
@pytest.mark.parametrize("setting", ["1", "0"])
def test_allocator_tuning_keeps_freed_activation_memory(setting):
    """Tuned, a freed 20 MB tensor stays with the process for the next pass; by default (or opted
    out) glibc returns it to the OS at once, and the next pass pays for fresh pages."""
    env = {**os.environ, "RESVIZ_MALLOC_TUNING": setting}
    out = subprocess.run(
        [sys.executable, "-c", _RSS_AFTER_FREE],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    tuned, kept_mb = out[0] == "True", float(out[1])
    assert tuned == (setting == "1")
    assert (kept_mb > 15) == tuned, kept_mb


# ----------------------------------------------------------------------------------- CLI


def test_cli_lists_models_as_json(capsys):
    assert cli.main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = {r["name"] for r in rows}
    assert {"resnet18", "plain18", "resnet1202", "plain1202"} <= names
    assert next(r for r in rows if r["name"] == "resnet18")["pretrained"] is True


def test_cli_summary_table_and_json(capsys):
    assert cli.main(["summary", "resnet50"]) == 0
    out = capsys.readouterr().out
    assert "64x112x112" in out and "2048x7x7" in out and "4.089 G" in out
    assert cli.main(["summary", "resnet20", "--plain", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "plain20" and data["shortcut_adds"] == 0


def test_cli_errors_are_one_sentence_with_exit_code_2(capsys):
    assert cli.main(["summary", "resnet5O"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Unknown model") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_:
        cli.main(["summary"])
    assert exit_.value.code == 2


def test_cli_output_into_a_closed_pipe_is_quiet():
    """`python -m resviz models --json | head -1`: the reader leaves early, no traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "resviz", "models", "--json"],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # before the child has imported torch, so its first write fails
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_every_subcommand_has_help(capsys):
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse keeps them here
    assert {"models", "summary"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as exit_:
            cli.main([name, "--help"])
        assert exit_.value.code == 0
        assert "usage" in capsys.readouterr().out
