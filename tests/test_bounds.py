"""Every number has a bound: the issue's reproductions, each refused in one line with exit 2.

Each row once gave a traceback, ran until killed, or wrote the wrong thing with exit 0. The CLI is
called in-process (:func:`resviz.cli.main`): refusals happen while the arguments are parsed, before
any model or dataset is loaded, so each row takes milliseconds.
"""

from __future__ import annotations

import pytest

from resviz.cli import main

CAT = "IMAGE"  # replaced by a real image path
FEAT = ["features", CAT, "--model", "resnet20"]
OUT = "OUT"  # replaced by a writable folder

CASES = [
    # (argv, exit code, a phrase of the sentence)
    (["landscape", "--model", "resnet20", "--grid", "100000"], 2, "at most 201"),
    (["landscape", "--model", "resnet20", "--n", "1e9"], 2, "at most 10,000"),
    (["landscape", "--model", "resnet20", "--images", "1000000000"], 2, "at most 10,000"),
    (["landscape", "--model", "resnet20", "--npz", "/proc/x.npz"], 2, "Cannot write"),
    (["landscape", "--model", "resnet20", "--seeds", "0,0"], 2, "--seeds must differ"),
    (["landscape", "--model", "resnet20", "--npz", OUT], 2, "it is a folder"),
    (["landscape", "--model", "resnet20", "--range", "nan"], 2, "--range must be above 0"),
    (["lesion", "--draws", "1000000000"], 2, "at most 1,000"),
    (["lesion", "--images", "1e9"], 2, "at most 10,000"),
    (
        ["features", CAT, "--model", "resnet20", "--out", "OUT/a.png", "--max-mb", "nan"],
        2,
        "--max-mb must be",
    ),
    (["features", CAT, "--model", "resnet20", "--out", "OUT/a.png", "--max-mb", "0"], 2, "--max-mb must be"),
    (["features", CAT, "--model", "resnet20", "--out", "/proc/a.png"], 2, "Cannot write"),
    (["gradflow", "--csv", "/proc/x.csv"], 2, "Cannot write"),
    (["gradflow", "--csv", OUT], 2, "is a folder"),
    (["faithfulness", "--n", "1000000000"], 2, "at most 10,000"),
    (["faithfulness", "--steps", "100000"], 2, "at most 1,000"),
    (["faithfulness", "--csv", "/proc/x.csv"], 2, "Cannot write"),
    (["train", "--batch-size", "1e9"], 2, "at most 65,536"),
    (["train", "--threads", "0"], 2, "at least 1"),
    (["train", "--threads", "-1"], 2, "at least 1"),
    (["train", "--bundle", "../../escape"], 2, "not a path"),
    (["train", "--bundle", "a/b"], 2, "not a path"),
    (["paths", "--model", "resnet20", "--samples", "1e9"], 2, "at most 1,000"),
    (["summary", "resnet6000002"], 2, "at most 1000"),
    (["summary", "resnet20", "--input-size", "0"], 2, "at least 8"),
    (["cam", CAT, "--model", "resnet20", "--out", OUT, "--opacity", "5"], 2, "--opacity must be"),
    (["cam", CAT, "--model", "resnet20", "--out", OUT, "--opacity", "nan"], 2, "--opacity must be"),
]


def _call(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's refusals exit from inside parse_args
        return int(exc.code or 0)


@pytest.fixture
def image(tmp_path):
    from resviz.images import load_sample

    path = tmp_path / "cat.png"
    load_sample("synthetic: checkerboard").image.save(path)
    return path


@pytest.mark.parametrize(
    ("argv", "code", "phrase"), CASES, ids=[" ".join(c[0][:1] + c[0][-2:]) for c in CASES]
)
def test_each_reproduction_is_refused_in_one_line(argv, code, phrase, image, tmp_path, capsys):
    argv = [str(image) if a == CAT else a.replace(OUT, str(tmp_path)) for a in argv]
    assert _call(argv) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and phrase in err, err
    assert err.rstrip().endswith(".")


def test_npz_gets_its_suffix_so_the_message_names_the_file_written(tmp_path):
    from resviz.commands import _bounds

    assert _bounds.output_file(".npz")(str(tmp_path / "grid")) == str(tmp_path / "grid.npz")
    assert not (tmp_path / "grid.npz").exists()  # the probe leaves nothing behind


def test_an_existing_output_file_is_not_truncated_by_the_probe(tmp_path):
    from resviz.commands import _bounds

    kept = tmp_path / "table.csv"
    kept.write_text("a,b\n")
    _bounds.output_file()(str(kept))
    assert kept.read_text() == "a,b\n"


def test_a_bundle_name_is_accepted_and_cifar_without_download_stays_offline():
    from resviz.cli import build_parser
    from resviz.commands.train import build_config

    args = build_parser().parse_args(["train", "--data", "cifar10", "--bundle", "demo-1.0"])
    assert args.bundle == "demo-1.0"
    assert build_config(args).download is False


def test_the_memory_check_names_what_it_needs():
    from resviz.commands import _bounds
    from resviz.errors import ResvizError

    with pytest.raises(ResvizError, match=r"needs about .* GiB of memory"):
        _bounds.check_memory(2**60, "A 1e9-point grid")
