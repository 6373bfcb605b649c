"""One server, many visitors: a run and a training job belong to the browser session that started them.

Each AppTest is one browser session; two of them side by side are visitors A and B. B cannot
rename, delete or stop A's work, A is told when its picked run disappears, and a shared server
(RESVIZ_SHARED=1) makes runs read-only and says so on every page.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from resviz.runs import list_runs, save_run
from resviz.sharing import owner_token
from tests.app.test_runs_page import tick
from tests.test_weights import fake_trained
from ui import state

A, B = "visitor-a", "visitor-b"


@pytest.fixture
def runs_root(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "runs"  # RESVIZ_RUNS_DIR of every test (tests/conftest.py)
    yield root
    for info in list_runs(root, bundled=False):
        shutil.rmtree(info.path, ignore_errors=True)


def _save(root: Path, owner: str = "", seed: int = 3) -> Path:
    return save_run(fake_trained("plain8", seed=seed), root, owner=owner_token(owner) if owner else "")


def _open(open_page, page: str, session: str, **extra):
    return open_page(page, **{state.SESSION_ID: session, **extra})


def test_b_cannot_rename_or_delete_a_run_a_trained(open_page, runs_root):
    run = _save(runs_root, owner=A)
    b = tick(_open(open_page, "pages/runs.py", B), run.name)
    assert not b.exception
    keys = {btn.key for btn in b.button}
    assert f"{state.RUNS_DELETE}{run.name}" not in keys and f"{state.RUNS_RENAME}{run.name}" not in keys
    assert any("Read-only" in c.value and "another browser session" in c.value for c in b.caption)
    a = tick(_open(open_page, "pages/runs.py", A), run.name)
    a.button(key=f"{state.RUNS_DELETE}{run.name}").click().run()
    assert run.exists()  # asked first
    a.button(key=f"{state.RUNS_DELETE}{run.name}_yes").click().run()
    assert not a.exception and not run.exists()


def test_a_stale_click_from_another_session_is_refused(runs_root):
    """The callback checks again: a button drawn before the rule applied changes nothing."""
    from resviz.runs import list_runs as runs_now
    from resviz.sharing import Sharing, may_change

    run = _save(runs_root, owner=A)
    info = next(r for r in runs_now(runs_root, bundled=False) if r.path == run)
    assert info.owner == owner_token(A)
    assert may_change(info.owner, A, Sharing()) and not may_change(info.owner, B, Sharing())
    assert not may_change(info.owner, A, Sharing(shared=True))  # a shared server: read-only for all


def test_a_is_told_when_its_picked_run_is_deleted_elsewhere(open_page, runs_root):
    run = _save(runs_root, owner=A)
    a = _open(open_page, "pages/home.py", A, **{state.MODEL_WEIGHTS: "run", state.TRAIN_RUN: str(run)})
    assert not a.exception and not any("was deleted" in w.value for w in a.sidebar.warning)
    shutil.rmtree(run)  # B (or the CLI) deletes it
    a.run()
    assert any("was deleted" in w.value and run.name in w.value.replace("\\", "") for w in a.sidebar.warning)
    a.run()  # and keeps saying so on the next rerun, until another run is picked
    assert any("was deleted" in w.value for w in a.sidebar.warning)


def test_ticks_stay_on_their_runs_after_a_delete(open_page, runs_root):
    first, second = _save(runs_root, seed=3), _save(runs_root, seed=4)
    at = tick(_open(open_page, "pages/runs.py", A), first.name, second.name)
    at.button(key=f"{state.RUNS_DELETE}{first.name}").click().run()
    at.button(key=f"{state.RUNS_DELETE}{first.name}_yes").click().run()
    assert not at.exception and not first.exists()
    # The table is a new widget: no tick jumped onto the run that moved into the deleted row...
    assert not any(b.key == f"{state.RUNS_DELETE}{second.name}" for b in at.button)
    # ...and a new tick is seen at once, not after a reload.
    tick(at, second.name)
    assert any(b.key == f"{state.RUNS_DELETE}{second.name}" for b in at.button)


def test_a_shared_server_makes_runs_read_only_and_says_so(open_page, runs_root, monkeypatch):
    monkeypatch.setenv("RESVIZ_SHARED", "1")
    run = _save(runs_root, owner=A)
    a = tick(_open(open_page, "pages/runs.py", A), run.name)
    assert not a.exception
    assert not any(b.key == f"{state.RUNS_DELETE}{run.name}" for b in a.button)
    assert any("Shared server" in i.value for i in a.sidebar.info)
    assert any("this server is shared" in c.value for c in a.caption)


class _FakeJob:
    """What the Training Lab reads of a running job, owned by ``owner``."""

    def __init__(self, owner: str) -> None:
        from types import SimpleNamespace

        self.owner, self.running, self.finished, self.stopped = owner, True, False, False
        self.config = SimpleNamespace(steps=300, device="cpu")
        self.step, self.status, self.elapsed, self.loaded = 3, "training", 1.0, (0, 0)
        self.error = self.save_error = None
        self.abandoned, self.results, self.progress = False, [], 0.01

    def heartbeat(self) -> None:
        pass

    def snapshot(self) -> dict:
        return {}

    def stop(self) -> None:
        self.stopped = True


def test_b_cannot_stop_a_training_job_a_started(open_page, monkeypatch):
    import resviz.training.jobs as jobs

    job = _FakeJob(owner_token(A))
    monkeypatch.setattr(jobs, "_JOBS", [job])
    b = _open(open_page, "pages/training_lab.py", B)
    assert not b.exception
    assert b.button(key=state.TRAIN_STOP).disabled
    assert any("Only they can stop it" in i.value for i in b.info)
    a = _open(open_page, "pages/training_lab.py", A)
    assert not a.button(key=state.TRAIN_STOP).disabled
    a.button(key=state.TRAIN_STOP).click().run()
    assert job.stopped


def test_training_can_be_turned_off(open_page, monkeypatch):
    monkeypatch.setenv("RESVIZ_ALLOW_TRAINING", "0")
    at = _open(open_page, "pages/training_lab.py", A)
    assert at.button(key=state.TRAIN_START).disabled
    assert any("turned off" in i.value for i in at.info)


@pytest.mark.parametrize("folder", ["/etc", "/nonexistent", "../../..", "/"])
def test_the_folder_field_refuses_paths_outside_the_data_root(open_page, folder, tmp_path, monkeypatch):
    monkeypatch.setenv("RESVIZ_DATA_DIR", str(tmp_path))
    at = _open(open_page, "pages/training_lab.py", A)
    at.selectbox(key=state.TRAIN_DATASET).set_value("folder").run()
    at.text_input(key=state.TRAIN_FOLDER).set_value(folder).run()
    assert not at.exception
    (error,) = at.error
    # The same sentence whether the path exists or not: the field cannot probe the file system.
    expected = f"Training folders must be inside {tmp_path}; give a sub-folder of it."
    assert error.value.replace("\\", "") == expected
    assert at.button(key=state.TRAIN_START).disabled
