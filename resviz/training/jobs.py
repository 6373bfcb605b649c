"""Train on a background thread: the Training Lab's job, its heartbeat and the one-job rule.

Saving is not training's business: a job is handed a ``save`` function (the page passes
:func:`resviz.runs.save_run` bound to the runs folder), so this package never imports
:mod:`resviz.runs`, and :mod:`resviz.runs` needs only the result types.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from resviz.datasets import ImageDataset
from resviz.device import resolve_device
from resviz.errors import ResvizError
from resviz.training.config import TrainConfig
from resviz.training.results import TrainedModel, TrainingCurves
from resviz.training.trainer import Trainer

Save = Callable[[TrainedModel], Path]
Clock = Callable[[], float]

# One job at a time per process on the CPU: two would halve each other's speed, and a job started
# by a session that reloaded would otherwise train on, unseen, beside the new one.
HEARTBEAT_TIMEOUT = 60.0  # seconds without a heartbeat after which a job stops (and saves)
STOPPED_EARLY = 0.1  # a job stopped before this share of its steps is not saved unless asked


class TrainingJob:
    """Train on a background thread; the page polls :meth:`snapshot` and may :meth:`stop` it.

    The thread owns the trainer. What it publishes (curves, progress, results) is replaced whole
    under a lock, so a reader never sees a half-written list. A stopped job keeps what was trained
    and saves it like a finished one.

    Args:
        config: the experiment.
        dataset: an already loaded dataset (else ``config.dataset`` is loaded on the thread).
        save: called with every trained model when training ends, e.g.
            ``functools.partial(resviz.runs.save_run, root=...)`` (None: do not save).
        pointing_game: score Grad-CAM against the object masks when the dataset has them.
        heartbeat_timeout: seconds without :meth:`heartbeat` after which the job stops.
        clock: the time source of the heartbeat (tests pass a fake one).
        owner: the token of the browser session that started the job.
        folder_root: where a ``folder`` dataset may be read from; its scan is bounded, reports
            :attr:`loaded` and obeys :meth:`stop`.
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        dataset: ImageDataset | None = None,
        save: Save | None = None,
        pointing_game: bool = True,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
        clock: Clock = time.monotonic,
        owner: str = "",
        folder_root: Path | None = None,
    ) -> None:
        self.config = config
        self.owner = owner  # resviz.sharing.owner_token of the session that started it: it alone may stop it
        self._folder_root = folder_root  # a "folder" dataset must resolve inside it (None: anywhere)
        self.loaded = (0, 0)  # (files decoded, files found) while a folder loads
        self._dataset = dataset
        self._save = save
        self._clock = clock
        self._pointing = pointing_game
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="resviz-training", daemon=True)
        self._curves: dict[str, TrainingCurves] = {}
        self.step = 0
        self.status = (
            "waiting"  # waiting | loading | training | evaluating | saving | done | stopped | failed
        )
        self.error: str | None = None
        self.results: list[TrainedModel] = []
        self.saved: list[Path] = []
        self.save_error: str | None = None
        self.started_at = 0.0
        self.elapsed = 0.0
        self.heartbeat_timeout = heartbeat_timeout
        self.abandoned = False  # stopped because nobody polled it for heartbeat_timeout seconds
        self._beat = clock()

    def start(self) -> TrainingJob:
        self.started_at = time.perf_counter()
        self.heartbeat()
        self._thread.start()
        return self

    def heartbeat(self) -> None:
        """Say someone is still watching; a job nobody watches for ``heartbeat_timeout`` s stops."""
        self._beat = self._clock()

    def _should_stop(self) -> bool:
        if self._stop.is_set():
            return True
        if self._clock() - self._beat > self.heartbeat_timeout:
            self.abandoned = True
            self._stop.set()
            return True
        return False

    def stop(self) -> None:
        """Ask the thread to stop after the current step; what was trained is kept and saved."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def finished(self) -> bool:
        return self.status in ("done", "stopped", "failed")

    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.config.steps)

    @property
    def stopped_early(self) -> bool:
        """Stopped before :data:`STOPPED_EARLY` of its steps: not worth saving unless asked."""
        return self.step < STOPPED_EARLY * self.config.steps

    def save(self) -> list[Path]:
        """Save the trained models not saved yet (the page's "save anyway" calls this too).

        A failure does not lose the models: they stay in :attr:`results` (the page offers them for
        download) and :attr:`save_error` says why, in a sentence.
        """
        if self._save is None:
            return []
        done = {p.name for p in self.saved}
        try:
            for r in self.results[len(self.saved) :]:
                self.saved.append(self._save(r))
            self.save_error = None
        except (ResvizError, OSError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.save_error = f"The trained models could not be saved ({reason}); download them below."
        return [p for p in self.saved if p.name not in done]

    def snapshot(self) -> dict[str, TrainingCurves]:
        with self._lock:
            return dict(self._curves)

    def _publish(self, trainer: Trainer) -> None:
        # Curves are copied every few steps only: copying is cheap but not free for long runs.
        if trainer.step_index % max(1, trainer.config.steps // 200) and not trainer.done:
            self.step = trainer.step_index
            return
        curves = trainer.curves()
        with self._lock:
            self._curves = curves
            self.step = trainer.step_index
            self.elapsed = time.perf_counter() - self.started_at

    def _load_folder(self) -> ImageDataset:
        from resviz.datasets import DatasetError, image_folder

        if not self.config.data_root:
            raise DatasetError("Give the folder of images (one sub-folder per class).")

        def progress(done: int, total: int) -> None:
            self.loaded = (done, total)

        return image_folder(
            self.config.data_root,
            size=self.config.size or 32,
            seed=self.config.data_seed,
            allowed=self._folder_root,
            progress=progress,
            stop=self._should_stop,
        )

    def _main(self) -> None:
        try:
            self.status = "loading"
            if self._dataset is None and self.config.dataset == "folder":
                self._dataset = self._load_folder()
            trainer = Trainer(self.config, self._dataset)
            self.status = "training"
            trainer.run(self._publish, self._should_stop)
            self._publish(trainer)
            with self._lock:
                self._curves = trainer.curves()
            results = trainer.results()
            if self._pointing and trainer.data.masks_test is not None:
                self.status = "evaluating"
                from resviz.analysis.faithfulness import pointing_game  # Grad-CAM: captum, on demand

                for r in results:
                    r.pointing_game = pointing_game(r.model, trainer.data)
            self.results = results
            if self._save is not None and not self.stopped_early:
                self.status = "saving"
                self.save()
            self.status = (
                "stopped" if self._stop.is_set() and trainer.step_index < self.config.steps else "done"
            )
        except ResvizError as exc:
            if self._stop.is_set() and not self.results:  # stopped while the data loaded
                self.status = "stopped"
                return
            self.error = str(exc)
            self.status = "failed"
        except Exception as exc:  # a bug: say what, rather than dying silently on a thread
            self.error = f"Training failed unexpectedly: {type(exc).__name__}: {exc}"
            self.status = "failed"
        finally:
            self.elapsed = time.perf_counter() - self.started_at


_JOBS: list[TrainingJob] = []
_JOBS_LOCK = threading.Lock()


class JobRunningError(ResvizError):
    """A training job is already running in this process on the CPU."""

    def __init__(self, job: TrainingJob) -> None:
        super().__init__(
            f"A run is already going (step {job.step} of {job.config.steps}); stop it or wait for it."
        )
        self.job = job


def running_job() -> TrainingJob | None:
    """The job running in this process, if any (the newest when several run on GPUs)."""
    with _JOBS_LOCK:
        _JOBS[:] = [j for j in _JOBS if j.running]
        return _JOBS[-1] if _JOBS else None


def start_job(
    config: TrainConfig,
    *,
    dataset: ImageDataset | None = None,
    save: Save | None = None,
    pointing_game: bool = True,
    heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
    clock: Clock = time.monotonic,
    owner: str = "",
    folder_root: Path | None = None,
) -> TrainingJob:
    """Start a :class:`TrainingJob` in the process-wide registry.

    Raises:
        JobRunningError: a job already runs on the CPU and this one would too (it carries that job).
    """
    with _JOBS_LOCK:
        _JOBS[:] = [j for j in _JOBS if j.running]
        on_cpu = resolve_device(config.device).type == "cpu"
        busy = [j for j in _JOBS if on_cpu or resolve_device(j.config.device).type == "cpu"]
        if busy:
            raise JobRunningError(busy[-1])
        job = TrainingJob(
            config,
            dataset=dataset,
            save=save,
            pointing_game=pointing_game,
            heartbeat_timeout=heartbeat_timeout,
            clock=clock,
            owner=owner,
            folder_root=folder_root,
        )
        _JOBS.append(job.start())
        return job
