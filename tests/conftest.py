"""Session fixtures: the CLI runner and one finished smoke study shared read-only by the tests.
Helpers live in tests/fixtures."""

from __future__ import annotations

import pytest

from tests.fixtures import run_cli, write_smoke_study


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory):
    """A finished smoke study (real watch data, real QAT training): its study file path. Read-only:
    tests that change a study make their own copy."""
    folder = tmp_path_factory.mktemp("smoke_study")
    path = write_smoke_study(folder)
    res = run_cli("search", path, "--json", timeout=600)
    assert res.code == 0, res.stderr
    return path
