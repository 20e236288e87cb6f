"""The stopping rules of a tuning run: plateau and target per trial, wall-time and epoch budgets overall."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

from rayml_assets.lib.training.ray_env import pin_train_v1
from rayml_assets.lib.training.tuning_config import TuningConfig

pin_train_v1()  # before the first import of ray.tune (which imports ray.train)

from ray import tune  # noqa: E402

# The budget that ended each experiment's last fit() in this process, by experiment name: Tune
# gives no handle on the stopper it ran (a restored experiment runs its own pickled copy).
_BUDGET_STOPS: dict[str, str] = {}


def take_budget_stop(key: str) -> str | None:
    """``"time_budget"``/``"epoch_budget"`` if a budget ended experiment ``key``'s last fit(), and forget it."""
    return _BUDGET_STOPS.pop(key, None)


class PlateauTargetBudgetStopper(tune.Stopper):
    """Stops a trial on a plateau or at a target, and the whole experiment on a budget.

    - plateau: ``patience`` results in a row without beating the trial's best by ``min_delta``;
    - target: the metric reaches ``target`` (``>=`` for max, ``<=`` for min);
    - time budget: ``time_budget_s`` of wall time since Tune first asked (its loop start, before
      any trial's setup); a restored experiment gets a fresh budget (session state is not pickled);
    - epoch budget: ``epoch_budget`` epochs summed over trials (each trial's highest
      ``training_iteration``, so resumed trials are not double counted).

    ``reasons`` maps each stopped trial to ``"plateau"`` or ``"target"``;
    ``budget_stop`` names the budget that ended the experiment, also kept for
    :func:`take_budget_stop` under ``key`` (the experiment name).
    """

    def __init__(
        self,
        metric: str,
        mode: str = "max",
        patience: int | None = None,
        min_delta: float = 0.0,
        target: float | None = None,
        time_budget_s: float | None = None,
        epoch_budget: int | None = None,
        key: str = "",
        clock: Callable[[], float] = time.monotonic,
    ):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be max or min, got {mode!r}")
        self.metric, self.mode, self.patience, self.min_delta = metric, mode, patience, min_delta
        self.target, self.time_budget_s, self.epoch_budget = target, time_budget_s, epoch_budget
        self.key, self.clock = key, clock
        self._best: dict[str, float] = {}
        self._stale: dict[str, int] = {}
        self._iterations: dict[str, int] = {}
        self._started: float | None = None
        self.reasons: dict[str, str] = {}
        self.budget_stop: str | None = None

    def __getstate__(self) -> dict:
        # Tune pickles the stopper with the experiment; a monotonic start time means nothing in another process
        state = self.__dict__.copy()
        state.update(_started=None, budget_stop=None)
        return state

    @classmethod
    def from_config(cls, config: TuningConfig, key: str = "") -> PlateauTargetBudgetStopper:
        stopper = config.stopper.model_dump()
        return cls(config.metric, config.mode, time_budget_s=config.time_budget_s, key=key, **stopper)

    def _improves(self, value: float, best: float) -> bool:
        return value > best + self.min_delta if self.mode == "max" else value < best - self.min_delta

    def __call__(self, trial_id: str, result: Mapping) -> bool:
        self._iterations[trial_id] = max(self._iterations.get(trial_id, 0), int(result.get("training_iteration", 1)))
        value = result.get(self.metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        if self.target is not None and (value >= self.target if self.mode == "max" else value <= self.target):
            self.reasons[trial_id] = "target"
            return True
        best = self._best.get(trial_id)
        if best is None or self._improves(value, best):
            self._best[trial_id], self._stale[trial_id] = value, 0
            return False
        self._stale[trial_id] += 1
        if self.patience is not None and self._stale[trial_id] >= self.patience:
            self.reasons[trial_id] = "plateau"
            return True
        return False

    def stop_all(self) -> bool:
        if self._started is None:
            self._started = self.clock()
        if self.budget_stop is None:
            if self.time_budget_s is not None and self.clock() - self._started >= self.time_budget_s:
                self.budget_stop = "time_budget"
            elif self.epoch_budget is not None and sum(self._iterations.values()) >= self.epoch_budget:
                self.budget_stop = "epoch_budget"
            if self.budget_stop is not None:
                _BUDGET_STOPS[self.key] = self.budget_stop
        return self.budget_stop is not None
