"""The engine's shared vocabulary: parsed objectives, trial records and statuses, hypervolume."""

from __future__ import annotations

import numpy as np
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from nas.config import Objective
from nas.engine.record import STATUSES, Attr, Status, TrialRecord, status_of
from nas.engine.results import hypervolume_2d_plus


def test_objective_parses_figure_and_device():
    assert Objective.parse("flash") == Objective("flash", None)
    o = Objective.parse("latency@gap8")
    assert (o.figure, o.device, str(o)) == ("latency", "gap8", "latency@gap8")
    assert Objective.parse("sram").name("stm32f446re") == "sram@stm32f446re"
    assert o.on("stm32f446re") == "gap8"
    with pytest.raises(ValueError, match="'bogus@x': must be one of"):
        Objective.parse("bogus@x")


def _trial(state, attrs, values=None):
    return create_trial(
        state=state,
        values=values,
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0, 1)},
        user_attrs=attrs,
    )


def test_trial_record_derives_the_status_from_state_and_attribute():
    mem = {"dev": {"flash": 10, "sram": 5, "fits": True}}
    done = _trial(
        TrialState.COMPLETE, {Attr.STATUS: "trained", Attr.MEMORY: mem, Attr.VAL: {"accuracy": 0.5}}, [0.5]
    )
    rec = TrialRecord(done)
    assert (
        rec.status == Status.TRAINED == "trained"
        and rec.figures("dev") == mem["dev"]
        and rec.val["accuracy"] == 0.5
    )
    assert status_of(_trial(TrialState.PRUNED, {Attr.STATUS: "rejected"})) == "rejected"
    assert status_of(_trial(TrialState.PRUNED, {Attr.STATUS: "stopped_early"})) == "stopped_early"
    assert status_of(_trial(TrialState.PRUNED, {Attr.STATUS: "training"})) == "failed"
    assert status_of(_trial(TrialState.FAIL, {})) == "failed"
    assert TrialRecord(_trial(TrialState.FAIL, {})).artifacts == {} and "training" not in STATUSES


def test_hypervolume_is_exact():
    ref = np.ones(2)
    assert hypervolume_2d_plus(np.array([[0.0, 0.5], [0.5, 0.0]]), ref) == pytest.approx(0.75)
    assert hypervolume_2d_plus(np.array([[0.0, 0.5], [0.5, 0.0], [0.6, 0.6]]), ref) == pytest.approx(0.75)
    assert hypervolume_2d_plus(np.array([[1.0, 0.0]]), ref) == 0.0  # not better than the reference
    a, b = np.array([0.2, 0.5, 0.1]), np.array([0.5, 0.1, 0.3])
    vol = lambda p: float(np.prod(1 - p))  # noqa: E731
    both = vol(a) + vol(b) - vol(np.maximum(a, b))
    assert hypervolume_2d_plus(np.array([a, b]), np.ones(3)) == pytest.approx(both)
    assert hypervolume_2d_plus(np.empty((0, 3)), np.ones(3)) == 0.0
