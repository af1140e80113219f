"""The final stage's validation folds (nas.data.folds): drawn from train + validation only, of the
validation split's shape, whole subjects where samples have them, disjoint while there is data."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nas.data.base import Split
from nas.data.folds import fold, fold_indices


def _assert_partition(tr, va, train, val):
    """The two parts are train + validation, each sample once."""
    assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(len(train) + len(val)))


def _split(y, groups):
    y = np.asarray(y, np.int64)
    x = {"a": np.arange(len(y), dtype=np.float32)[:, None, None]}  # each sample's own index
    return Split(x, y, None if groups is None else np.asarray(groups, np.int64))


@st.composite
def _splits(draw, grouped: bool):
    """Train and validation parts as a dataset loader leaves them: disjoint subjects when grouped."""
    n_classes = draw(st.integers(2, 5))
    n_groups = draw(st.integers(2, 12))
    n_val_groups = draw(st.integers(1, n_groups - 1))
    sizes = draw(st.lists(st.integers(1, 9), min_size=n_groups, max_size=n_groups))
    groups = np.repeat(np.arange(n_groups), sizes)
    y = np.array(draw(st.lists(st.integers(0, n_classes - 1), min_size=len(groups), max_size=len(groups))))
    is_val = np.isin(groups, np.arange(n_val_groups))
    g = groups if grouped else None
    train = _split(y[~is_val], None if g is None else g[~is_val])
    val = _split(y[is_val], None if g is None else g[is_val])
    return train, val


@settings(max_examples=200, deadline=None)
@given(_splits(grouped=True), st.integers(0, 6), st.integers(0, 2**32 - 1))
def test_grouped_folds_hold_out_whole_subjects_as_many_as_validation(parts, index, seed):
    train, val = parts
    tr, va = fold_indices(train, val, index, seed)
    pool_groups = np.concatenate([train.groups, val.groups])
    _assert_partition(tr, va, train, val)
    # whole subjects: none on both sides
    assert not set(pool_groups[tr]) & set(pool_groups[va])
    if index == 0:
        assert np.array_equal(va, len(train) + np.arange(len(val)))
    else:
        n_subjects = len(np.unique(train.groups))
        assert len(np.unique(pool_groups[va])) == min(len(np.unique(val.groups)), n_subjects)
        assert set(pool_groups[va]) <= set(train.groups)  # never the search's validation subjects
    assert np.array_equal(fold_indices(train, val, index, seed)[1], va)  # the same fold every time


@settings(max_examples=200, deadline=None)
@given(_splits(grouped=True), st.integers(0, 2**32 - 1))
def test_folds_are_disjoint_while_there_are_subjects_left(parts, seed):
    train, val = parts
    k, n = len(np.unique(val.groups)), len(np.unique(train.groups))
    held = [set(fold_indices(train, val, i, seed)[1]) for i in range(1, n // k + 1)]
    assert all(not a & b for i, a in enumerate(held) for b in held[i + 1 :])


@settings(max_examples=200, deadline=None)
@given(_splits(grouped=False), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_ungrouped_folds_take_validation_class_counts_from_train(parts, index, seed):
    train, val = parts
    tr, va = fold_indices(train, val, index, seed)
    pool_y = np.concatenate([train.y, val.y])
    _assert_partition(tr, va, train, val)
    assert np.all(va < len(train))
    for c in range(pool_y.max() + 1):
        want = min(int(np.sum(val.y == c)), int(np.sum(train.y == c)))
        assert np.sum(pool_y[va] == c) == want


def test_watch_folds_are_other_subjects_and_leave_the_test_split_alone(watch):
    folded, train_idx = fold(watch, 1, seed=0)
    assert folded.test is watch.test
    subjects = {int(g) for g in np.unique(folded.val.groups)}
    assert len(subjects) == len(np.unique(watch.val.groups))
    assert not subjects & {int(g) for g in np.unique(watch.val.groups)}
    assert not subjects & {int(g) for g in np.unique(folded.train.groups)}
    assert not subjects & {int(g) for g in np.unique(watch.test.groups)}
    # the search's validation subjects train in this fold; the arrays follow the indices
    assert set(np.unique(watch.val.groups)) <= set(np.unique(folded.train.groups))
    pool_y = np.concatenate([watch.train.y, watch.val.y])
    assert np.array_equal(folded.train.y, pool_y[train_idx])
    assert len(folded.train) + len(folded.val) == len(watch.train) + len(watch.val)
    assert fold(watch, 0, seed=0)[0] is watch
    other = {int(g) for g in np.unique(fold(watch, 2, seed=0)[0].val.groups)}
    assert not other & subjects  # watch trains on 6 subjects: folds 1-3 are disjoint
