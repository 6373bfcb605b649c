"""Files on the server a visitor can point at: image folders, symlinked runs, half-written runs.

A folder of images is read with an upload's rules and a bounded scan; a link inside the runs folder
to a run elsewhere is never changed through it; the CLI, like the Runs page, clears stale
``.partial-*`` folders.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from PIL import Image

from resviz.cli import main
from resviz.datasets import DatasetError, check_inside, image_folder
from resviz.errors import ResvizError
from resviz.runs import PARTIAL_PREFIX, delete_run, list_runs, rename_run, save_run, scan_runs
from tests.test_weights import fake_trained


def _classes(root, n=3, size=(20, 24)):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")


def test_a_decompression_bomb_in_a_folder_is_skipped_in_a_sentence_naming_it(tmp_path):
    _classes(tmp_path)
    # 30000 x 30000 declared in the header; a few KB on disk. Pillow would raise DecompressionBombError.
    Image.new("1", (30000, 30000)).save(tmp_path / "a" / "bomb.png")
    data = image_folder(tmp_path, size=16)
    assert len(data.y_train) + len(data.y_test) == 6
    assert "1 file(s) skipped" in data.description and "bomb.png has too many pixels" in data.description


def test_paths_outside_the_data_root_are_refused_alike_after_symlinks(tmp_path):
    root = tmp_path / "data"
    _classes(root / "mine")
    (root / "escape").symlink_to("/etc")
    expected = f"Training folders must be inside {root.resolve()}; give a sub-folder of it."
    for outside in ("/etc", "/nonexistent", root / "escape", root / ".." / "..", "../x"):
        with pytest.raises(DatasetError) as err:
            check_inside(outside, root)
        assert str(err.value) == expected
    assert check_inside("mine", root) == (root / "mine").resolve()
    with pytest.raises(DatasetError, match="must be inside"):
        image_folder(root / "escape", allowed=root)


def test_a_symlinked_class_folder_pointing_elsewhere_is_not_read(tmp_path):
    _classes(tmp_path / "data")
    _classes(tmp_path / "elsewhere")
    (tmp_path / "data" / "c").symlink_to(tmp_path / "elsewhere" / "a")
    assert image_folder(tmp_path / "data", size=16).class_names == ("a", "b")


def test_the_scan_is_bounded_in_time_and_stops_when_asked(tmp_path):
    _classes(tmp_path)
    with pytest.raises(DatasetError, match="too large to scan"):
        image_folder(tmp_path, size=16, max_seconds=0.0)
    with pytest.raises(DatasetError, match="Stopped"):
        image_folder(tmp_path, size=16, stop=lambda: True)
    with pytest.raises(DatasetError, match="more than the training lab takes"):
        image_folder(tmp_path, size=16, max_images=4)
    seen = []
    image_folder(tmp_path, size=16, progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, 6) and seen[-1] == (5, 6)


def test_a_folder_job_can_be_stopped_while_it_loads(tmp_path):
    """The Training Lab's Stop works during "loading the data" (it used to have no effect for minutes)."""
    from resviz.training import PRESETS
    from resviz.training.jobs import TrainingJob

    _classes(tmp_path, n=40)
    cfg = PRESETS["cpu"].replace(dataset="folder", data_root=str(tmp_path), size=16, steps=5)
    job = TrainingJob(cfg, folder_root=tmp_path, pointing_game=False)
    job.stop()  # before the first file: the scan asks between files
    job.start()
    assert job.wait(30) and job.status == "stopped" and job.error is None


def test_a_symlinked_run_is_listed_as_unreadable_and_never_changed(tmp_path):
    outside = save_run(fake_trained(), tmp_path / "elsewhere")
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "linked").symlink_to(outside)
    found, unreadable = scan_runs(runs, bundled=False)
    assert found == [] and unreadable == [runs / "linked"]
    (info,) = list_runs(tmp_path / "elsewhere", bundled=False)
    linked = type(info)(**{**info.__dict__, "path": runs / "linked"})
    with pytest.raises(ResvizError, match="link to a folder outside the runs folder"):
        rename_run(linked, "pwned")
    with pytest.raises(ResvizError, match="link to a folder outside the runs folder"):
        delete_run(linked)
    assert outside.exists() and '"title"' not in (outside / "run.json").read_text()


def test_the_cli_cleans_stale_partial_folders(tmp_path, capsys):
    stale, fresh = tmp_path / f"{PARTIAL_PREFIX}old", tmp_path / f"{PARTIAL_PREFIX}new"
    stale.mkdir()
    fresh.mkdir()
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    assert main(["runs", "list", "--dir", str(tmp_path)]) == 0
    assert not stale.exists() and fresh.exists()  # a young one may be a save in progress
