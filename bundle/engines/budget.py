"""A wall-clock training budget for ignite trainers.

Comparing a light network with heavy ones (SwinUNETR, RetinaNet with a ResNet-50) on 2 CPU cores at the same number
of epochs is not possible: the heavy ones would need hours to days. The fair alternative is the same wall-clock
budget: every model trains for at most the seconds the bundle's own network needs, and the report says how many
epochs it reached. ignite's ``TimeLimit`` starts its clock when it is created (when the config is parsed, before
caching the data) and has no ``attach``, which MONAI's ``train_handlers`` need; this handler starts the clock when
the trainer starts and records what the run reached in ``engine.state``.
"""

from __future__ import annotations

import json
import logging
import time

from ignite.engine import Engine, Events

from bundle.io.atomic import atomic_write_text

__all__ = ["TrainingTimeLimit"]

logger = logging.getLogger(__name__)


class TrainingTimeLimit:
    """Stop a trainer once its training has run ``limit_s`` seconds (checked after every iteration).

    The trainer ends through ``engine.terminate()``, so the epoch in progress stops after its current iteration and
    the workflow's ``finalize`` still runs. After the run, ``engine.state.time_limit_reached`` tells whether the
    limit stopped it and ``engine.state.train_seconds`` how long it trained.

    Args:
        limit_s: the budget in seconds; 0 or None means no limit (the handler only records the seconds).
        record_path: optional JSON file written when training ends: ``{"train_seconds", "iterations",
            "epochs_completed", "max_epochs", "limit_s", "time_limit_reached"}`` (the ablation reads it).

    Raises:
        ValueError: for a negative ``limit_s``.
    """

    def __init__(self, limit_s: float | None = 0, record_path: str | None = None) -> None:
        if limit_s is not None and limit_s < 0:
            raise ValueError(f"limit_s must be >= 0 (0: no limit), got limit_s={limit_s}.")
        self.limit_s = float(limit_s or 0)
        self.record_path = record_path
        self._start: float | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._check)
        engine.add_event_handler(Events.COMPLETED, self._record)  # ignite fires it after TERMINATE too

    def _started(self, engine: Engine) -> None:
        self._start = time.perf_counter()
        engine.state.time_limit_reached = False

    def _elapsed(self) -> float:
        return 0.0 if self._start is None else time.perf_counter() - self._start

    def _check(self, engine: Engine) -> None:
        if self.limit_s > 0 and self._elapsed() > self.limit_s:
            engine.state.time_limit_reached = True
            logger.info(
                "training time limit of %.0f s reached at epoch %d, iteration %d: stopping.",
                self.limit_s, engine.state.epoch, engine.state.iteration,
            )
            engine.terminate()

    def _record(self, engine: Engine) -> None:
        engine.state.train_seconds = self._elapsed()
        reached = bool(getattr(engine.state, "time_limit_reached", False))
        cut = reached and engine.state.iteration % engine.state.epoch_length != 0  # an epoch cut short is not complete
        completed = engine.state.epoch - 1 if cut else engine.state.epoch
        if self.record_path:
            record = {"train_seconds": round(engine.state.train_seconds, 1), "iterations": engine.state.iteration,
                      "epochs_completed": completed, "max_epochs": engine.state.max_epochs,
                      "limit_s": self.limit_s, "time_limit_reached": reached}
            atomic_write_text(self.record_path, json.dumps(record, indent=4) + "\n")
        logger.info(
            "trained %.1f s, %d iterations, %d of %d epochs completed%s.",
            engine.state.train_seconds, engine.state.iteration, completed, engine.state.max_epochs,
            " (time limit)" if reached else "",
        )
