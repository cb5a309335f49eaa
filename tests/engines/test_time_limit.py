"""Specification of TrainingTimeLimit: training ends at an epoch boundary within the budget."""

from __future__ import annotations

import time

from ignite.engine import Engine

from hirescam_ext.engines import TrainingTimeLimit


def _engine(step_s: float) -> Engine:
    return Engine(lambda engine, batch: time.sleep(step_s))


def test_stops_at_the_last_epoch_boundary_that_fits():
    engine = _engine(0.01)
    limit = TrainingTimeLimit(seconds=0.35)  # an epoch of 10 steps takes about 0.1 s
    limit.attach(engine)
    start = time.perf_counter()
    state = engine.run(range(10), max_epochs=50)
    assert limit.stopped_early and 1 <= state.epoch < 50
    assert state.iteration == state.epoch * 10  # whole epochs only
    assert time.perf_counter() - start < 0.35 + 0.15


def test_no_limit_runs_every_epoch():
    engine = _engine(0.0)
    limit = TrainingTimeLimit(seconds=None)
    limit.attach(engine)
    assert engine.run(range(3), max_epochs=4).epoch == 4 and not limit.stopped_early
