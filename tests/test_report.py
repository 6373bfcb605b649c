"""The README's demo figures are `python -m resviz report`'s output, and results round-trip as data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from resviz import serialize
from resviz.report import readme_section, report_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_figures_are_the_reports():
    assert readme_section(README) == report_markdown(), "run `make figures` (python -m resviz report --write)"


def test_report_check_exit_codes(tmp_path, capsys):
    from resviz.cli import main

    copy = tmp_path / "README.md"
    copy.write_text("intro\n<!-- report:begin -->\nstale\n<!-- report:end -->\nend\n")
    assert main(["report", "--check", str(copy)]) == 1
    assert main(["report", "--write", str(copy)]) == 0
    assert main(["report", "--check", str(copy)]) == 0
    assert copy.read_text().startswith("intro\n") and copy.read_text().endswith("end\n")
    (tmp_path / "none.md").write_text("no markers\n")
    assert main(["report", "--check", str(tmp_path / "none.md")]) == 2


def test_results_round_trip_with_nan_and_nested_classes():
    from resviz.analysis.lesion import BlockInfo, LesionResult

    r = LesionResult(
        "m",
        (BlockInfo("layer1.0", "layer1", False, True, True, "keeps x"),),
        0.1,
        np.array([0.2, np.nan]),
        np.array([1, 2]),
        np.zeros((2, 3)),
        np.array([1]),
        np.ones((1, 2)),
        np.array([[0.0, 0.1], [np.nan, np.inf]]),
        10,
    )
    back = serialize.loads(serialize.dumps(r))
    for f in dataclasses.fields(r):
        a, b = getattr(r, f.name), getattr(back, f.name)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
        else:
            assert a == b


def test_a_file_cannot_name_a_class_outside_resviz():
    for bad in ('{"__dataclass__": "subprocess:Popen", "args": "ls"}', '{"__dataclass__": "os:system"}'):
        with pytest.raises(serialize.SerializeError):
            serialize.loads(bad)
