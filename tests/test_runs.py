"""Saved runs as first-class models: unique ids, rename/delete, read-only bundled runs, robustness."""

from __future__ import annotations

import json
import os
import time

import pytest
import torch

from resviz import runs as R
from resviz.cli import main
from resviz.errors import CheckpointError, ResvizError
from tests.test_weights import fake_trained


def test_two_runs_with_the_same_settings_get_different_ids_and_labels(tmp_path):
    a = R.save_run(fake_trained("plain8"), tmp_path, group="g1")
    b = R.save_run(fake_trained("plain8"), tmp_path, group="g2")
    infos = R.list_runs(tmp_path, bundled=False)
    assert {i.path for i in infos} == {a, b}
    assert len({i.id for i in infos}) == len({i.label for i in infos}) == 2
    assert {i.group for i in infos} == {"g1", "g2"}
    assert R.find_run(a.name, tmp_path).path == a


def test_a_copied_run_json_in_a_junk_folder_is_not_a_run(tmp_path):
    real = R.save_run(fake_trained("plain8"), tmp_path)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / R.META).write_text((real / R.META).read_text())  # metadata without weights
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / R.WEIGHTS).write_bytes(b"x")
    (damaged / R.META).write_text("{not json")
    runs, unreadable = R.scan_runs(tmp_path, bundled=False)
    assert [r.path for r in runs] == [real]
    assert sorted(p.name for p in unreadable) == ["damaged", "junk"]


def test_rename_and_delete_a_saved_run(tmp_path):
    path = R.save_run(fake_trained("plain8"), tmp_path)
    (info,) = R.list_runs(tmp_path, bundled=False)
    renamed = R.rename_run(info, "  my plain net ")
    assert renamed.title == "my plain net" and "my plain net" in renamed.label
    assert R.find_run("my plain net", tmp_path).path == path
    R.delete_run(renamed)
    assert not path.exists() and R.list_runs(tmp_path, bundled=False) == []


def test_bundled_runs_are_listed_and_read_only(tmp_path):
    bundled = [r for r in R.list_runs(tmp_path) if r.bundled]
    assert {r.name for r in bundled} >= {"plain20", "plain56", "resnet20", "resnet56"}
    with pytest.raises(ResvizError, match="ships with resviz"):
        R.delete_run(bundled[0])
    with pytest.raises(ResvizError, match="ships with resviz"):
        R.rename_run(bundled[0], "mine")


def test_half_written_runs_are_cleaned_only_when_old(tmp_path):
    old, young = tmp_path / ".partial-old", tmp_path / ".partial-young"
    for d in (old, young):
        d.mkdir()
        (d / R.WEIGHTS).write_bytes(b"x")
    past = time.time() - 2 * R.PARTIAL_MAX_AGE_S
    os.utime(old, (past, past))
    assert R.clean_partial_runs(tmp_path) == 1
    assert not old.exists() and young.exists()


def test_a_failed_save_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(R.json, "dumps", broken)
    with pytest.raises(OSError):
        R.save_run(fake_trained("plain8"), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_runs_folders_are_refused_in_one_sentence(tmp_path, monkeypatch):
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(ResvizError, match="is a file"):
        R.check_writable(file)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(R.tempfile, "mkdtemp", denied)
    with pytest.raises(ResvizError, match=r"Permission denied.*choose a folder you can write"):
        R.check_writable(tmp_path / "ro")


def test_float16_runs_load_into_float32_models(tmp_path):
    trained = fake_trained("plain8")
    path = R.save_run(trained, tmp_path, fp16=True, folder="demo-plain8")
    assert path.name == "demo-plain8" and (path / R.WEIGHTS_FP16).is_file()
    from resviz.models.weights import load_run

    loaded = load_run(path)
    for key, value in trained.model.state_dict().items():
        got = loaded.model.state_dict()[key]
        assert got.dtype == value.dtype
        torch.testing.assert_close(got, value.half().to(value.dtype))


# --------------------------------------------------------------------------- CLI


def test_cli_runs_list_show_rename_delete(tmp_path, capsys):
    path = R.save_run(fake_trained("plain8"), tmp_path)
    assert main(["runs", "list", "--dir", str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    mine = [r for r in rows if not r["bundled"]]
    assert [r["id"] for r in mine] == [path.name]
    assert main(["runs", "show", path.name, "--dir", str(tmp_path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["name"] == "plain8" and shown["steps"] == 2
    assert main(["runs", "rename", path.name, "short", "--dir", str(tmp_path)]) == 0
    assert main(["runs", "delete", "short", "--dir", str(tmp_path)]) == 0
    assert not path.exists()


def test_cli_runs_bad_input_is_one_sentence(tmp_path, capsys):
    assert main(["runs", "show", "nope", "--dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: No run 'nope'")
    assert main(["runs", "delete", "--dir", str(tmp_path)]) == 2
    assert "Name the run" in capsys.readouterr().err
    bundled = next(r for r in R.list_runs(tmp_path) if r.bundled)
    assert main(["runs", "delete", bundled.id, "--dir", str(tmp_path)]) == 2
    assert "ships with resviz" in capsys.readouterr().err


def test_cli_train_into_a_file_stops_before_training(tmp_path, capsys, monkeypatch):
    import resviz.training

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(resviz.training, "Trainer", no_training)
    out = tmp_path / "file"
    out.write_text("x")
    assert main(["train", "--data", "digits", "--steps", "1", "--out", str(out)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_a_checkpoint_error_names_the_missing_run(tmp_path):
    with pytest.raises(CheckpointError, match="No run"):
        R.find_run("missing", tmp_path)
