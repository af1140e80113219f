"""Fixtures the C-export tests share: the real datasets, split with seed 0."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def watch():
    from nas.data import load_dataset

    return load_dataset("watch", seed=0)


@pytest.fixture(scope="module")
def avdigits():
    from nas.data import load_dataset

    return load_dataset("avdigits", seed=0)
