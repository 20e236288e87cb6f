"""Live progress of a tuning run (one :class:`TrialEvent` per epoch result and trial end) and interrupts.

Tune pickles RunConfig callbacks into the experiment, and a restored
experiment brings back the pickled ones. :class:`ProgressCallback` therefore
holds only a key; the live sink (e.g. ``pipes.log.info``) is looked up in
this process at call time, registered for the length of a ``fit()`` by
:func:`reporting`.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from rayml_assets.lib.training.ray_env import pin_train_v1
from rayml_assets.lib.training.tuning_config import hyperparams
from rayml_assets.lib.training.tuning_result import CURVE_KEYS, HISTORY_TAGS, TrialEvent

pin_train_v1()  # before the first import of ray.tune (which imports ray.train)

from ray import tune  # noqa: E402

log = logging.getLogger(__name__)

_PROGRESS_SINKS: dict[str, Callable[[TrialEvent], None]] = {}
# Experiments whose fit() was stopped by SIGINT/SIGUSR1. Tune then returns a
# normal-looking ResultGrid without the trials its searcher had not created yet.
_INTERRUPTED: set[str] = set()


@contextmanager
def reporting(key: str, on_event: Callable[[TrialEvent], None] | None) -> Iterator[None]:
    """Send the events of experiment ``key`` to ``on_event`` for the block; forget an earlier interrupt."""
    if on_event is not None:
        _PROGRESS_SINKS[key] = on_event
    _INTERRUPTED.discard(key)
    try:
        yield
    finally:
        _PROGRESS_SINKS.pop(key, None)


def was_interrupted(key: str) -> bool:
    """Whether the last ``fit()`` of experiment ``key`` got SIGINT/SIGUSR1."""
    return key in _INTERRUPTED


def _note_interrupt(key: str, tune_handler: Callable, signum, frame) -> None:
    _INTERRUPTED.add(key)
    tune_handler(signum, frame)


def _last_error_line(trial) -> str:
    """The innermost exception line of a failed trial (its cause, for a user reading the run log)."""
    # The trial's local error file is written before this callback; the copy in storage may come later.
    path = trial.error_file
    try:
        text = Path(path).read_text(errors="replace") if path else ""
    except OSError:  # an unreadable error file must not hide the failure itself
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


class ProgressCallback(tune.Callback):
    def __init__(self, sink_key: str):
        self.sink_key = sink_key

    def setup(self, **info):
        # Tune installed its graceful-stop handlers just before calling this;
        # wrap them to remember that the run was interrupted.
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGUSR1):
            tune_handler = signal.getsignal(signum)
            if callable(tune_handler):
                signal.signal(signum, functools.partial(_note_interrupt, self.sink_key, tune_handler))

    def _emit(self, kind: str, trial, metrics: Mapping, error: str = "") -> None:
        sink = _PROGRESS_SINKS.get(self.sink_key)
        if sink is None:
            return
        hp = hyperparams(trial.config.get("train_loop_config", {}))
        picked = {k: metrics[k] for k in (*CURVE_KEYS, "training_iteration", *HISTORY_TAGS) if k in metrics}
        try:
            sink(TrialEvent(kind, trial.trial_id, hp, picked, error))
        except Exception:  # progress reporting must never fail a tuning run
            log.exception("progress sink failed")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._emit("result", trial, result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._emit("complete", trial, trial.last_result or {})

    def on_trial_error(self, iteration, trials, trial, **info):
        self._emit("error", trial, trial.last_result or {}, _last_error_line(trial))

    def on_trial_recover(self, iteration, trials, trial, **info):
        # failed, and max_failures lets Tune restart it from its last checkpoint
        self._emit("recover", trial, trial.last_result or {}, _last_error_line(trial))
