"""The wall-clock training budget: stops after the limit on a fake clock, records what the run reached."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from ignite.engine import Engine

from bundle.engines import TrainingTimeLimit
from bundle.engines import budget


@pytest.fixture
def fake_clock(monkeypatch):
    """Every call of perf_counter advances 3 s (one call at start, one per iteration check)."""
    ticks = itertools.count(0.0, 3.0)
    monkeypatch.setattr(budget.time, "perf_counter", lambda: next(ticks))


def _run(limit_s, epochs=5, data=range(4), record_path=None):
    engine = Engine(lambda e, b: None)
    TrainingTimeLimit(limit_s, record_path).attach(engine)
    engine.run(data, max_epochs=epochs)
    return engine


def test_stops_after_the_limit(fake_clock):
    engine = _run(10)
    # start at t=0; checks at 3, 6, 9, 12 -> 12 > 10 stops at iteration 4 (end of epoch 1)
    assert engine.state.iteration == 4
    assert engine.state.time_limit_reached is True
    assert engine.state.train_seconds > 10


def test_record_counts_only_complete_epochs(fake_clock, tmp_path):
    record_path = tmp_path / "out" / "train_time.json"
    _run(16, data=range(4), record_path=str(record_path))
    # checks at 3, 6, ..., 18 -> stops at iteration 6, inside epoch 2: one epoch complete
    record = json.loads(record_path.read_text())
    assert record["iterations"] == 6
    assert record["epochs_completed"] == 1
    assert record["max_epochs"] == 5
    assert record["time_limit_reached"] is True
    assert record["limit_s"] == 16.0


def test_no_limit_runs_every_epoch(fake_clock):
    engine = _run(0, epochs=3)
    assert engine.state.iteration == 12
    assert engine.state.epoch == 3
    assert engine.state.time_limit_reached is False
    assert engine.state.train_seconds > 0


def test_limit_above_run_time_changes_nothing(fake_clock):
    engine = _run(1000, epochs=2)
    assert engine.state.iteration == 8
    assert engine.state.time_limit_reached is False


def test_negative_limit_is_refused():
    with pytest.raises(ValueError, match="limit_s"):
        TrainingTimeLimit(-1)


def test_train_json_has_the_budget_off_by_default():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(Path(__file__).resolve().parents[2] / "configs" / "train.json")
    assert parser["train_time_limit_s"] == 0
    targets = [h["_target_"] for h in parser["train"]["handlers"]]
    assert "bundle.engines.TrainingTimeLimit" in targets
