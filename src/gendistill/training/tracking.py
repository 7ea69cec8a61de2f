"""Experiment tracking (`report_to`) for every training loop, through Accelerate's trackers.

The run's Accelerator carries the configuration (`log_with` = report_to, `project_dir` = the run directory,
`logging_dir` = RUN_DIR/logs; see gendistill.runtime). Each call of the training loop (teacher, generator, student,
baseline student) opens its own tracker run, named after the loop, logs the loss and learning rate of every step
and the mean loss (and validation accuracy) of every epoch through `accelerator.log`, and closes it:

- tensorboard: event files in RUN_DIR/logs/<loop>/ (`tensorboard --logdir RUN_DIR/logs`);
- mlflow: experiment = the run directory's name, one MLflow run per loop, wherever MLFLOW_TRACKING_URI points
  (MLflow's own default otherwise);
- wandb, trackio: project = the run directory's name, one run per loop; any other Accelerate tracker by its name.

`accelerator.end_training()` is not used between loops: it would also tear down the distributed process group.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gendistill.errors import ConfigError, GendistillError

INSTALL_HINT = "pip install 'gendistill[tracking]' (tensorboard, mlflow)"


class TrackingError(GendistillError):
    """A tracker named in report_to could not start."""


def known_trackers() -> list[str]:
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    return [*LOGGER_TYPE_TO_CLASS, "all"]


def check_trackers(names: list[str]) -> None:
    """Preflight: every tracker in report_to is known and installed (Accelerate would only warn and drop it)."""
    from accelerate.tracking import get_available_trackers

    available = {str(tracker) for tracker in get_available_trackers()}
    for name in names:
        if name == "all":
            continue
        if name not in known_trackers():
            raise ConfigError(f"report_to: unknown tracker {name!r}; expected some of {', '.join(known_trackers())}")
        if name not in available:
            raise ConfigError(f"report_to: {name} is not installed; {INSTALL_HINT}, or pip install {name}")


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, str | int | float | bool]:
    """Hyperparameters as flat scalar key/values (TensorBoard's hparams accept nothing else)."""
    flat: dict[str, str | int | float | bool] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, (str, int, float, bool)):
            flat[name] = value
        elif value is not None:
            flat[name] = str(value)
    return flat


def _tracker(name: str, experiment: str, loop: str, logging_dir: str) -> Any:
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    cls = LOGGER_TYPE_TO_CLASS[name]
    if name == "tensorboard":
        return cls(loop, logging_dir)
    if name == "mlflow":
        return cls(experiment_name=experiment, run_name=loop)
    if name in ("wandb", "trackio"):
        return cls(experiment, name=loop)
    return cls(experiment, logging_dir) if cls.requires_logging_directory else cls(experiment)


_PAUSED = {"depth": 0}


@contextmanager
def paused() -> Iterator[None]:
    """No tracker runs for the loops inside (cross-validation folds: scaffolding, not models anyone ships)."""
    _PAUSED["depth"] += 1
    try:
        yield
    finally:
        _PAUSED["depth"] -= 1


def start(accelerator: Any, loop: str, hparams: dict[str, Any] | None = None) -> bool:
    """Open this loop's tracker runs (main process only); False when report_to is empty or tracking is paused."""
    log_with = list(getattr(accelerator, "log_with", None) or [])
    if not log_with or not accelerator.is_main_process or _PAUSED["depth"]:
        return False
    from accelerate.tracking import GeneralTracker

    project_dir = Path(accelerator.project_dir or ".")
    experiment = project_dir.resolve().name or "gendistill"
    logging_dir = str(accelerator.logging_dir or project_dir / "logs")
    trackers = []
    for entry in log_with:
        tracker = entry if isinstance(entry, GeneralTracker) else _tracker(str(entry), experiment, loop, logging_dir)
        try:
            tracker.start()
            if hparams:
                tracker.store_init_configuration(_flatten(hparams))
        except Exception as error:  # noqa: BLE001 - each tracker library raises its own types
            for opened in trackers:
                opened.finish()
            hint = (
                "; set MLFLOW_TRACKING_URI (a server, or file:DIR with MLFLOW_ALLOW_FILE_STORE=true), or pip install "
                "mlflow for its default local store"
                if tracker.name == "mlflow"
                else ""
            )
            raise TrackingError(
                f"report_to: {tracker.name} could not start for {loop} ({type(error).__name__}: "
                f"{str(error).splitlines()[0][:200] if str(error) else ''}){hint}"
            ) from None
        trackers.append(tracker)
    accelerator.trackers = trackers
    return True


def finish(accelerator: Any) -> None:
    """Close this loop's tracker runs (flushes TensorBoard's event files, ends the MLflow run)."""
    trackers = list(getattr(accelerator, "trackers", None) or [])
    accelerator.trackers = []
    for tracker in trackers:
        tracker.finish()


@contextmanager
def run(accelerator: Any, loop: str, hparams: dict[str, Any] | None = None) -> Iterator[None]:
    """`start` ... `finish` around one training loop, closing the tracker runs even when the loop fails."""
    started = start(accelerator, loop, hparams)
    try:
        yield
    finally:
        if started:
            finish(accelerator)


def log(accelerator: Any, values: dict[str, float], step: int) -> None:
    """Log to this loop's tracker runs (nothing, at no cost, when there are none)."""
    if getattr(accelerator, "trackers", None) and not _PAUSED["depth"]:
        accelerator.log(values, step=step)
