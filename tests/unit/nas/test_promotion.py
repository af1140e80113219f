"""Multi-objective successive halving (nas/engine/promotion.py): the rung verdicts."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from nas.engine.promotion import Seen, front_ranks, promote, rungs


def _dominates(a, b):
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


points = st.lists(
    st.tuples(st.integers(0, 20), st.integers(1, 8), st.integers(1, 8)), min_size=1, max_size=25
)


@settings(max_examples=200, deadline=None)
@given(points)
def test_front_ranks_are_a_non_dominated_sorting(pts):
    ranks = front_ranks(pts)
    for i, p in enumerate(pts):
        assert not any(_dominates(pts[j], p) for j in range(len(pts)) if ranks[j] == ranks[i])
        if ranks[i] == 0:
            assert not any(_dominates(q, p) for q in pts)
        else:  # something one front up dominates it
            assert any(_dominates(pts[j], p) for j in range(len(pts)) if ranks[j] == ranks[i] - 1)


def _seen(pts):
    # metric in [0, 1] from the first column; figures from the others; a one-epoch curve
    return [Seen([m / 20], {"dev": (float(f), float(s))}) for m, f, s in pts]


@settings(max_examples=200, deadline=None)
@given(points, st.sampled_from([2.0, 3.0, 4.0]))
def test_at_least_the_best_share_goes_on_and_the_first_front_always_does(pts, eta):
    seen = _seen(pts)
    verdicts = []
    for i, s in enumerate(seen):
        others = seen[:i] + seen[i + 1 :]
        go_on, why = promote(1, s.curve[0], s.figures, others, eta, min_peers=1)
        verdicts.append(go_on)
        assert go_on or why.startswith("epoch 1:")
    if len(seen) > 1:
        assert sum(verdicts) >= math.ceil(len(seen) / eta)
    ranks = front_ranks([(-s.curve[0], *s.figures["dev"]) for s in seen])
    for r, v in zip(ranks, verdicts):
        if r == 0:
            assert v


def test_a_dominated_candidate_stops_once_there_is_evidence_and_not_before():
    better = [Seen([0.9, 0.9], {"dev": (100.0, 100.0)}) for _ in range(5)]
    go_on, _ = promote(1, 0.2, {"dev": (200.0, 200.0)}, better[:2], eta=3, min_peers=3)
    assert go_on  # two peers: not enough evidence
    go_on, why = promote(1, 0.2, {"dev": (200.0, 200.0)}, better, eta=3, min_peers=3)
    assert not go_on and "dev: place 6 of 6" in why
    # the same candidate, smaller than everything seen: it could still reach the front
    go_on, _ = promote(1, 0.2, {"dev": (50.0, 200.0)}, better, eta=3, min_peers=3)
    assert go_on


def test_a_candidate_goes_on_if_any_device_it_fits_lets_it():
    seen = [Seen([0.9], {"a": (10.0,), "b": (10.0,)}) for _ in range(4)] + [
        Seen([0.1], {"b": (1.0,)}) for _ in range(4)
    ]
    # dominated on a; on b it is the most accurate of the small ones
    assert promote(1, 0.5, {"a": (20.0,), "b": (2.0,)}, seen, 3, 3)[0]
    assert not promote(1, 0.5, {"a": (20.0,)}, seen, 3, 3)[0]


def test_rungs_sit_before_the_end():
    assert rungs(12, [0.3, 0.6]) == [4, 7]
    assert rungs(2, [0.3, 0.6]) == [1]
    assert rungs(1, [0.3, 0.6]) == []
    assert rungs(100, [0.11, 0.33]) == [11, 33]
