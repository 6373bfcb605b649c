"""Training: the recipe, repeatability, stop-and-keep, saved runs, the pointing game, two processes."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from resviz.analysis.faithfulness import pointing_game
from resviz.datasets import load_dataset
from resviz.errors import CheckpointError, ConfigError, UnknownModelError
from resviz.hooks import hook_count
from resviz.models.weights import load_run
from resviz.plots.training import final_errors_figure, paper_reference_rows, training_curves_figure
from resviz.runs import list_runs, read_curves, save_run
from resviz.training import (
    PAPER_CIFAR10_TEST_ERROR,
    PRESETS,
    TrainConfig,
    Trainer,
    TrainingJob,
    summary_rows,
    train,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = {"widths": (4, 8, 8), "n_train": 128, "batch_size": 32, "device": "cpu"}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", n_train=256)


@pytest.fixture(scope="module")
def shapes():
    return load_dataset("shapes", n_train=128, n_test=40, size=16)


def test_config_checks_names_and_numbers():
    with pytest.raises(UnknownModelError):
        TrainConfig(models=("resnet21",))
    with pytest.raises(ConfigError):
        TrainConfig(lr=0.0)
    with pytest.raises(ConfigError):
        TrainConfig(models=())
    cfg = TrainConfig(models=["plain8", "resnet8"], widths=[4, 8, 8])
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_learning_rate_warms_up_then_steps_down():
    cfg = TrainConfig(steps=100, lr=0.1, warmup=0.1, milestones=(0.5, 0.75))
    lrs = [cfg.lr_at(s) for s in range(100)]
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1)
    assert lrs[49] == pytest.approx(0.1) and lrs[50] == pytest.approx(0.01)
    assert lrs[75] == pytest.approx(0.001)
    assert PRESETS["paper"].lr == 0.1 and PRESETS["paper"].steps == 64_000


def test_short_run_lowers_the_loss(digits):
    cfg = TrainConfig(models=("resnet8",), steps=40, lr=0.05, eval_every=10, **TINY)
    (result,) = train(cfg, dataset=digits)
    loss = result.curves.loss
    assert len(loss) == 40 and np.isfinite(loss).all()
    assert loss[-5:].mean() < 0.8 * loss[:5].mean()
    assert result.curves.eval_steps.tolist() == [10, 20, 30, 40]
    assert result.curves.final_train_error < 0.9
    assert not result.model.training and next(result.model.parameters()).device.type == "cpu"


def test_runs_are_repeatable_and_twins_start_equal(digits):
    cfg = TrainConfig(models=("plain8", "resnet8"), steps=4, eval_every=2, **TINY)
    a = Trainer(cfg, digits)
    # Same seed: the plain and the residual net start from identical weights (option A adds none).
    pa, ra = (m.model.state_dict() for m in a.members)
    assert all(torch.equal(pa[k], ra[k]) for k in pa)
    a.run()
    b = Trainer(cfg, digits)
    b.run()
    for ma, mb in zip(a.members, b.members):
        assert ma.history.loss == mb.history.loss
        for (k, va), vb in zip(ma.model.state_dict().items(), mb.model.state_dict().values()):
            assert torch.equal(va, vb), k


def test_training_never_touches_the_callers_model(digits):
    from resviz.models import create_model

    shared = create_model("resnet8", seed=0, num_classes=10, in_channels=1, widths=(4, 8, 8), stem_width=4)
    before = {k: v.clone() for k, v in shared.state_dict().items()}
    train(TrainConfig(models=("resnet8",), steps=3, **TINY), dataset=digits)
    assert all(torch.equal(before[k], v) for k, v in shared.state_dict().items())


def test_job_stops_and_keeps_what_was_trained(digits, tmp_path):
    cfg = TrainConfig(models=("plain8", "resnet8"), steps=10_000, eval_every=5, **TINY)
    job = TrainingJob(cfg, dataset=digits, save=functools.partial(save_run, root=tmp_path)).start()
    deadline = 60.0
    import time

    start = time.perf_counter()
    while job.step < 3 and time.perf_counter() - start < deadline:
        time.sleep(0.05)
    job.stop()
    assert job.wait(60)
    assert job.status == "stopped", job.error
    assert 3 <= job.step < 10_000
    assert [r.name for r in job.results] == ["plain8", "resnet8"]
    assert all(r.steps_done == job.step for r in job.results)
    curves = job.snapshot()
    assert len(curves["resnet8"].loss) == job.step
    assert len(curves["resnet8"].eval_steps) >= 1  # a stopped run still gets its last evaluation
    # Stopped before 10% of its steps: kept in memory, saved only when asked.
    assert job.stopped_early and job.saved == [] and list_runs(tmp_path, bundled=False) == []
    assert len(job.save()) == 2 and len(list_runs(tmp_path, bundled=False)) == 2
    assert job.save() == []  # nothing is saved twice


def test_a_failed_save_keeps_the_trained_models_and_says_why(digits, tmp_path):
    def full_disk(trained):
        raise OSError(28, "No space left on device")

    cfg = TrainConfig(models=("resnet8",), steps=2, eval_every=1, **TINY)
    job = TrainingJob(cfg, dataset=digits, save=full_disk).start()
    assert job.wait(60)
    assert job.status == "done" and job.error is None
    assert [r.name for r in job.results] == ["resnet8"] and job.saved == []
    assert (
        job.save_error
        == "The trained models could not be saved (No space left on device); download them below."
    )


def test_job_reports_errors_as_sentences(tmp_path):
    job = TrainingJob(TrainConfig(dataset="cifar10", data_root=str(tmp_path), models=("resnet8",)))
    job.start().wait(60)
    assert job.status == "failed" and "not on disk" in job.error


def test_saved_run_loads_with_class_names_and_same_outputs(shapes, tmp_path):
    cfg = TrainConfig(dataset="shapes", models=("resnet8",), steps=3, **TINY)
    (result,) = train(cfg, dataset=shapes)
    path = save_run(result, tmp_path)
    (info,) = list_runs(tmp_path, bundled=False)
    assert info.path == path and info.name == "resnet8" and info.dataset == "shapes" and info.steps == 3
    loaded = load_run(path)
    assert loaded.weights == "run" and loaded.trained
    assert loaded.class_names == shapes.class_names
    assert loaded.preprocessing == shapes.preprocessing
    assert loaded.class_name(0) == "circle"
    x = shapes.normalize(shapes.x_test[:5])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), result.model(x))
    meta = loaded.metadata
    assert meta["versions"]["torch"] == torch.__version__
    assert meta["seed"] == 0 and "curves" not in meta  # kept apart: the sidebar reads run.json often
    assert len(read_curves(path)["loss"]) == 3


def test_runs_folder_ignores_junk_and_refuses_bad_runs(tmp_path, monkeypatch):
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("{not json")
    (tmp_path / "broken" / "model.pt").write_bytes(b"")
    assert list_runs(tmp_path, bundled=False) == []
    assert list_runs(tmp_path / "absent", bundled=False) == []
    with pytest.raises(CheckpointError):
        load_run(tmp_path / "not-a-run")
    monkeypatch.setenv("RESVIZ_RUNS_DIR", str(tmp_path))
    from resviz.runs import default_runs_dir

    assert default_runs_dir() == tmp_path


def test_pointing_game_scores_and_leaves_no_hooks(shapes):
    cfg = TrainConfig(dataset="shapes", models=("resnet8",), steps=2, **TINY)
    (result,) = train(cfg, dataset=shapes)
    score = pointing_game(result.model, shapes, limit=20, batch=8)
    assert 0.0 <= score <= 1.0
    assert hook_count(result.model) == 0


def test_plots_draw_plain_dashed_and_residual_solid(digits):
    results = train(TrainConfig(models=("plain8", "resnet8"), steps=4, eval_every=2, **TINY), dataset=digits)
    curves = {r.name: r.curves for r in results}
    fig = training_curves_figure(curves, "train_error", total_steps=4)
    dashes = {t.name: t.line.dash for t in fig.data}
    assert dashes == {"ResNet-8": "solid", "plain-8": "dash"}
    assert fig.data[0].line.color == fig.data[1].line.color  # same depth, same colour
    assert list(fig.layout.xaxis.range) == [0, 4]
    for metric in ("batch_error", "test_error", "loss"):
        assert len(training_curves_figure(curves, metric).data) == 2
    assert len(final_errors_figure(curves).data[0].x) == 2
    rows = paper_reference_rows(PAPER_CIFAR10_TEST_ERROR)
    assert rows[0] == {"model": "ResNet-20", "paper's test error %": 8.75}
    assert summary_rows(curves)[0]["model"] == "plain8"


def _cli_train(args: list[str], out: Path, nproc: int = 1, quiet: bool = True):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RESVIZ_THREADS": "1", "PYTHONPATH": str(ROOT)}
    base = ["-m", "resviz", "train", *args, "--out", str(out), *(["--quiet"] if quiet else [])]
    if nproc > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={nproc}",
            "--standalone",
            *base,
        ]
    else:
        cmd = [sys.executable, *base]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "train err %" in proc.stdout
    assert ("step 6/6:" in proc.stdout) != quiet  # one progress line per interval unless --quiet
    return {r.name: torch.load(r.path / "model.pt", weights_only=True) for r in list_runs(out, bundled=False)}


def test_two_gloo_processes_equal_one(tmp_path):
    """DDP on two CPU processes (Gloo) with globally reduced BatchNorm = one process, same global batch."""
    args = ["--data", "digits", "--models", "plain8,resnet8", "--steps", "6", "--batch-size", "32",
            "--widths", "4,8,8", "--lr", "0.05", "--device", "cpu"]  # fmt: skip
    one = _cli_train(args, tmp_path / "one", quiet=False)
    two = _cli_train(args, tmp_path / "two", nproc=2)
    assert set(one) == set(two) == {"plain8", "resnet8"}
    for name in one:
        for key, value in one[name].items():
            torch.testing.assert_close(two[name][key], value, rtol=1e-4, atol=1e-5, msg=f"{name} {key}")


def test_cli_reports_an_unknown_model_in_one_line(capsys):
    from resviz.cli import main

    assert main(["train", "--models", "resnet21", "--no-save"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Unknown model 'resnet21'") and "Traceback" not in err


def test_a_diverging_model_is_marked_and_the_others_train_on_and_are_saved(digits, tmp_path):
    cfg = TrainConfig(models=("plain8", "resnet8"), steps=6, eval_every=3, **TINY)
    trainer = Trainer(cfg, digits)
    with torch.no_grad():  # plain8 outputs NaN from the first step on: a model that diverged
        trainer.members[0].model.fc.bias.fill_(float("nan"))
    trainer.run()
    plain, res = trainer.members
    assert plain.diverged_at == 1 and res.diverged_at is None
    assert len(res.history.loss) == 6 and np.all(np.isfinite(res.history.loss))
    results = trainer.results()
    assert results[0].curves.diverged_at == 1 and results[0].metadata()["diverged_at_step"] == 1
    assert results[1].curves.diverged_at is None

    # An absurd learning rate: every model diverges; the job still ends, and saves what it has.
    job = TrainingJob(
        cfg.replace(lr=1e6), dataset=digits, save=functools.partial(save_run, root=tmp_path)
    ).start()
    assert job.wait(120) and job.status == "done", job.error
    assert all(r.curves.diverged_at is not None for r in job.results)
    assert len(job.saved) == 2


def test_one_job_at_a_time_on_the_cpu_and_an_unwatched_job_stops(digits, tmp_path):
    from resviz.training import JobRunningError, running_job, start_job

    now = [0.0]  # the job's clock: it moves only when the test says so
    cfg = TrainConfig(models=("resnet8",), steps=100_000, eval_every=50, **TINY)
    save = functools.partial(save_run, root=tmp_path)
    job = start_job(cfg, dataset=digits, save=save, heartbeat_timeout=60.0, clock=lambda: now[0])
    try:
        assert running_job() is job
        with pytest.raises(JobRunningError, match="already going") as caught:
            start_job(cfg, dataset=digits)
        assert caught.value.job is job
        assert not job.wait(0.5) and not job.abandoned  # watched: no time has passed
        # Nobody calls job.heartbeat() for over a minute: it stops by itself and saves what it trained.
        now[0] = 61.0
        assert job.wait(60) and job.status == "stopped" and job.abandoned
        assert job.step > 0 and job.stopped_early and job.saved == []  # under 10%: not saved unasked
        assert running_job() is None
    finally:
        job.stop()
        job.wait(60)
    # A heartbeat just in time keeps a job going: 59 s pass, a beat, 59 s more.
    kept = start_job(cfg.replace(steps=40), dataset=digits, heartbeat_timeout=60.0, clock=lambda: now[0])
    now[0] += 59.0
    kept.heartbeat()
    now[0] += 59.0
    assert kept.wait(60) and kept.status == "done" and not kept.abandoned


def test_cli_data_picks_its_preset_and_bad_numbers_are_usage_errors(capsys):
    import argparse

    from resviz.commands import train as train_cmd

    parser = argparse.ArgumentParser()
    train_cmd.add_arguments(parser)
    cfg = train_cmd.build_config(parser.parse_args(["--data", "shapes", "--size", "32"]))
    assert (cfg.lr, cfg.widths, cfg.steps, cfg.size) == (0.05, (8, 16, 32), 400, 32)  # the shapes preset
    assert train_cmd.build_config(parser.parse_args(["--data", "mnist"])).lr == 0.02  # no preset: cpu
    assert train_cmd.build_config(parser.parse_args(["--widths", "4, 8,8"])).widths == (4, 8, 8)
    from resviz.cli import main

    for bad in (["--widths", "8,x"], ["--size", "24"]):
        with pytest.raises(SystemExit) as exit_:
            main(["train", *bad, "--no-save"])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and "error:" in err
    assert main(["train", "--steps", "0", "--no-save"]) == 2  # a bound: one sentence (tests/test_bounds.py)
