"""The ETA of a running search: candidates left times the wall time per candidate measured in this
run, epochs of candidates in flight counted as fractions, the deadline when it comes first."""

from __future__ import annotations

import optuna

from nas.engine.progress import SearchWatch
from nas.engine.search import Budget


def _watch(candidates: int, deadline: float | None = None) -> SearchWatch:
    watch = SearchWatch(None, optuna.create_study(), Budget(candidates, deadline, 100), started=1000.0)
    watch.teacher_ready()
    watch.search_started = 1000.0  # the teacher took no time
    return watch


def test_eta_is_unknown_until_a_candidate_has_been_measured():
    assert _watch(4).eta_s(0, [], now=1010.0) is None
    assert _watch(4).eta_s(0, [{"epoch": 0, "epochs": 2}], now=1010.0) is None


def test_eta_counts_epochs_in_flight_and_stops_at_zero():
    # 1 finished + half of one in flight in 30 s: 2.5 candidates left at 20 s each
    assert _watch(4).eta_s(1, [{"epoch": 1, "epochs": 2}], now=1030.0) == 50.0
    assert _watch(4).eta_s(4, [], now=1030.0) == 0.0


def test_eta_is_the_deadline_when_that_comes_first():
    assert _watch(4, deadline=1040.0).eta_s(1, [{"epoch": 1, "epochs": 2}], now=1030.0) == 10.0
    assert _watch(4, deadline=1040.0).eta_s(0, [], now=1030.0) == 10.0  # nothing measured yet


def test_a_resumed_search_measures_only_its_own_candidates():
    watch = _watch(4)
    watch.used_before = 2  # two trained by an earlier run
    assert watch.eta_s(3, [], now=1010.0) == 10.0  # one in 10 s here, one left
