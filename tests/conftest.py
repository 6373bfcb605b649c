"""Fixtures shared by the whole suite. No test may touch the network or the user's caches."""

from __future__ import annotations

import os

# numpy's OpenBLAS starts a thread per core for every small SVD (Eigen-CAM, its reference, ROAD's
# solver): on 2 cores that was 5x slower than one thread, and slower still beside a second test
# process. Set before numpy is first imported (torch imports it).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest
import torch

# Two cores here. One process (no xdist): both, for torch. Two xdist workers (pyproject's
# addopts): one thread each, so that they do not fight over the cores.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
torch.set_num_threads(int(os.environ.get("RESVIZ_TEST_THREADS", "1" if _WORKER else "2")))
# No background warm-up (ui/warmup.py) in the app's tests or the servers they start: it would compete
# with the tests for the two cores. tests/app/test_warmup.py turns it on where it is the subject.
os.environ.setdefault("RESVIZ_WARMUP", "0")


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    """Point torch hub and resviz runs at empty temporary folders: nothing is downloaded or read
    from the user's home, and a test that wants cached weights writes them itself."""
    home = tmp_path_factory.getbasetemp() / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("RESVIZ_RUNS_DIR", str(tmp_path_factory.getbasetemp() / "runs"))
    torch.hub.set_dir(str(home / "hub"))
    yield
