"""A tiny checkpoint cannot make resviz allocate gigabytes: declared shapes are checked first.

An 88-byte safetensors file declaring ``fc.weight`` of shape [1000000, 0] has zero elements; loading
it used to build a million-class ResNet-18 (2 GB of classifier). Peak memory is read from the
kernel (VmHWM, reset through /proc/self/clear_refs): torch's allocations are invisible to tracemalloc.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

from resviz.cli import main
from resviz.errors import CheckpointError, ConfigError
from resviz.models import create_model, get_config
from resviz.models.weights import load_checkpoint

MB = 2**20


def _safetensors(shapes: dict[str, list[int]]) -> bytes:
    """A valid safetensors file of zero-element float32 tensors with these declared shapes."""
    header = {k: {"dtype": "F32", "shape": s, "data_offsets": [0, 0]} for k, s in shapes.items()}
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text


HOSTILE = {
    "million_classes": _safetensors({"fc.weight": [1_000_000, 0]}),
    "tera_classes": _safetensors({"fc.weight": [10**12, 0]}),
    "wide_input": _safetensors({"conv1.weight": [64, 100_000, 0, 0]}),
}


def _peak_rss() -> int:
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) * 1024


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def test_the_issue_files_are_small():
    assert len(HOSTILE["million_classes"]) < 100


@pytest.mark.parametrize("name", HOSTILE)
def test_a_declared_shape_past_the_caps_is_one_sentence(name):
    with pytest.raises(CheckpointError, match=r"^x\.safetensors does not fit resnet18: .*(classes|channels)"):
        load_checkpoint("resnet18", HOSTILE[name], filename="x.safetensors")


def test_a_zero_element_tensor_of_the_right_count_is_refused_before_building():
    data = _safetensors({"fc.weight": [10, 0]})  # 10 classes is allowed, but 0 != 512 features
    with pytest.raises(CheckpointError, match=r"shape mismatch.*'fc\.weight' \(\(10, 0\) vs \(10, 512\)\)"):
        load_checkpoint("resnet18", data, filename="x.safetensors")


def test_peak_memory_stays_near_a_normal_load():
    if not _reset_peak():
        pytest.skip("this kernel does not let a process reset its peak RSS")
    create_model("resnet18")  # warm torch's allocator and the code paths
    _reset_peak()
    base = _peak_rss()
    normal = create_model("resnet18").state_dict()
    import io

    import torch

    buf = io.BytesIO()
    torch.save(normal, buf)
    load_checkpoint("resnet18", buf.getvalue(), filename="normal.pt")
    normal_peak = _peak_rss() - base
    del normal, buf
    for data in HOSTILE.values():
        _reset_peak()
        base = _peak_rss()
        with pytest.raises(CheckpointError):
            load_checkpoint("resnet18", data, filename="x.safetensors")
        assert _peak_rss() - base < normal_peak + 300 * MB


@pytest.mark.parametrize("name", HOSTILE)
def test_the_cli_refuses_them_with_exit_2(name, tmp_path, capsys):
    path = tmp_path / f"{name}.safetensors"
    path.write_bytes(HOSTILE[name])
    from resviz.images import load_sample

    image = tmp_path / "cat.png"
    load_sample("chelsea (cat)").image.save(image)
    argv = [
        "features",
        str(image),
        "--model",
        "resnet18",
        "--weights",
        str(path),
        "--out",
        str(tmp_path / "o.png"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "at most" in err


def test_configs_past_the_caps_are_refused_before_building():
    with pytest.raises(ConfigError, match="at most 1000"):
        get_config("resnet6000002")
    with pytest.raises(ConfigError, match="at most"):
        get_config("resnet18", num_classes=10**6)
