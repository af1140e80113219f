"""Other validation folds of a dataset, for the final stage's runs.

Retraining a finalist with fresh seeds on the same split averages out the seed but not the
split: where the validation split is two subjects (watch) or nearly saturated (avdigits), the
finalists are still ranked by the same few people or samples. Fold `i > 0` holds out a different
part of train + validation of the same shape as the validation split (as many whole subjects
where samples have groups, otherwise as many samples per class), so `n` final runs judge each
finalist on up to `n` times as much held-out data. Fold 0 is the dataset's own split, and the
test split is never touched: every fold is drawn from train + validation only.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .base import Dataset, Split

_SALT = 0xF01D  # keeps the fold draw apart from every other use of the study seed


def _concat(a: Split, b: Split) -> Split:
    groups = None if a.groups is None or b.groups is None else np.concatenate([a.groups, b.groups])
    return Split({k: np.concatenate([a.x[k], b.x[k]]) for k in a.x}, np.concatenate([a.y, b.y]), groups)


def _cyclic_chunk(order: np.ndarray, size: int, chunk: int) -> np.ndarray:
    """The `chunk`-th run of `size` items of `order`, wrapping: disjoint while `order` lasts."""
    size = min(size, len(order))
    return order[(np.arange(size) + chunk * size) % len(order)]


def fold_indices(train: Split, val: Split, index: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fold `index`'s train and validation parts as indices into train + val (train first)."""
    n_t, n_v = len(train), len(val)
    if index == 0:
        return np.arange(n_t), n_t + np.arange(n_v)
    rng = np.random.default_rng([seed, _SALT])
    if train.groups is not None and val.groups is not None:
        subjects = np.unique(train.groups)
        held = _cyclic_chunk(rng.permutation(subjects), len(np.unique(val.groups)), index - 1)
        out = np.isin(train.groups, held)
    else:
        out = np.zeros(n_t, bool)
        for c in np.unique(val.y):  # as many samples of each class as the validation split has
            members = rng.permutation(np.flatnonzero(train.y == c))
            if len(members):
                out[_cyclic_chunk(members, int(np.sum(val.y == c)), index - 1)] = True
    return np.concatenate([np.flatnonzero(~out), n_t + np.arange(n_v)]), np.flatnonzero(out)


def fold(data: Dataset, index: int, seed: int) -> tuple[Dataset, np.ndarray]:
    """The dataset with fold `index` as its train / val split, and its train part's pool indices
    (to carry per-sample arrays such as teacher logits over train + val along)."""
    train_idx, val_idx = fold_indices(data.train, data.val, index, seed)
    if index == 0:
        return data, train_idx
    pool = _concat(data.train, data.val)
    return replace(data, train=pool.subset(train_idx), val=pool.subset(val_idx)), train_idx
