"""`make gpu-check` on a machine without CUDA: one line, exit 0 (CI and laptops run it too)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here: the check would run")
def test_gpu_check_skips_in_one_line_without_cuda():
    proc = subprocess.run(
        [sys.executable, "bench/gpu_check.py"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0], proc.stdout
    assert proc.stderr == ""
