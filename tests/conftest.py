from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd=None, env=None, timeout: float = 600) -> CliResult:
    """Run the real `m2nas` entry point in a subprocess, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "nas.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli():
    return run_cli


def assert_one_line_error(result: CliResult, *fragments: str) -> None:
    """Bad input: exit 2, one line on stderr that names what is wrong, no traceback."""
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("m2nas: error: ")
    assert "Traceback" not in result.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])


SMOKE_TWO_DEVICES = """
[[devices]]
name = "stm32f446re"
target = { weights = "flash", activations = "sram" }
limits = { flash = "5K" }

[[devices]]
name = "nrf52840"
target = { weights = "flash", activations = "sram" }
limits = { sram = "2K" }
"""


def write_smoke_study(folder, trials: int = 4, extra: str = "") -> str:
    """A copy of studies/smoke.toml in `folder` with two devices, each with a tight budget (flash on
    one, SRAM on the other) that some candidates miss: the study has rejected candidates too, and
    the best trial differs per device."""
    from pathlib import Path

    text = (Path(__file__).parent.parent / "studies" / "smoke.toml").read_text()
    head, _, rest = text.partition("[[devices]]")
    rest = rest[rest.index("[objectives]") :]
    text = head + SMOKE_TWO_DEVICES.strip() + "\n\n" + rest
    text = text.replace("trials = 3", f"trials = {trials}") + extra
    path = Path(folder) / "smoke.toml"
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory):
    """A finished smoke study (real watch data, real QAT training): its study file path. Read-only:
    tests that change a study make their own copy."""
    folder = tmp_path_factory.mktemp("smoke_study")
    path = write_smoke_study(folder)
    res = run_cli("search", path, "--json", timeout=600)
    assert res.code == 0, res.stderr
    return path
