"""Latency from measurement (issue 15 part 4): the device files' `[runtime.cost]` tables were fitted
to instruction counts of the generated C on the emulated cores (tests/bench/test_bench_latency.py, its
own archs); here `latency_ms_est` of archs the fit never saw is checked against their measured
instructions x the file's cycles per instruction / clock, within 25%.

The full check (20 sampled archs per preset, both cores) is marked slow; the default run checks a
few per preset on the M4. Skipped without the Arm toolchain; under CI=true it is required.
"""

from __future__ import annotations

import os

import pytest

from memory_models.devices import get_device
from memory_models.latency import coefficient, graph_terms, instructions
from nas.export.c import cortexm

TOLERANCE = 0.25
PRESETS = ("micro", "tiny", "small", "wide")
CORE_DEVICE = {"m4": "stm32f446re", "m7": "stm32f746zg"}
PER_PRESET = 20

needs_toolchain = pytest.mark.skipif(
    cortexm.missing() is not None and os.environ.get("CI") != "true",
    reason=f"{cortexm.missing()} (required under CI=true)",
)


def held_out(core, device, preset, data, tmp_path, n=PER_PRESET):
    """(graph terms, measured instructions per inference) of `n` archs of `preset` (half 1D, half 2D)."""
    from tests.fixtures.c_models import emulated_run, sampled_archs

    for dims in ("1d", "2d"):
        for i, arch in enumerate(sampled_archs(preset, dims, n // 2)):
            d = tmp_path / f"held-{core}-{preset}-{dims}-{i}"
            d.mkdir()
            report, _, run = emulated_run(arch, data[dims], d, core, device)
            yield report, graph_terms(report.graph), run.per_inference


def _check(core, preset, n, tmp_path):
    from nas.data import load_dataset
    from tests.fixtures.c_models import DIMS_DATASET

    device = get_device(CORE_DEVICE[core])
    cost = device.runtime.cost
    assert cost is not None and cost.measured_on == core
    data = {d: load_dataset(name, seed=0) for d, name in DIMS_DATASET.items()}
    bad = []
    for report, _, measured in held_out(core, device.name, preset, data, tmp_path, n):
        want = measured * cost.cycles_per_instruction / (device.clock_mhz * 1e3)
        err = report.latency_ms_est / want - 1
        if abs(err) > TOLERANCE:
            bad.append(
                f"{report.graph.name}: est {report.latency_ms_est:.4f} ms vs {want:.4f} ms ({100 * err:+.0f}%)"
            )
    assert not bad, f"{len(bad)}/{n} archs of {preset} outside 25% on {core}: " + "; ".join(bad)


@needs_toolchain
@pytest.mark.parametrize("preset", PRESETS)
def test_latency_estimate_is_measured_m4(preset, tmp_path):
    _check("m4", preset, 4, tmp_path)


@pytest.mark.slow
@needs_toolchain
@pytest.mark.parametrize("core", tuple(CORE_DEVICE))
@pytest.mark.parametrize("preset", PRESETS)
def test_latency_estimate_is_measured_20_archs(core, preset, tmp_path):
    _check(core, preset, PER_PRESET, tmp_path)


def test_terms_fall_back_to_their_prefix():
    table = {
        "mac": 9.0,
        "mac:conv": 3.0,
        "mac:conv:w8": 2.0,
        "col": 1,
        "out": 1,
        "el": 1,
        "op": 1,
        "inference": 1,
    }
    assert coefficient(table, "mac:conv:w8:x8") == 2.0
    assert coefficient(table, "mac:conv:w4:xlow") == 3.0
    assert coefficient(table, "mac:dw:w4:x8") == 9.0
    assert instructions(table, [("mac:conv:w8:x8", 10.0), ("op:pw", 2.0)]) == 22.0


def test_every_emulated_core_device_has_a_fitted_table():
    # Cortex-M4 / M7 devices run the m2nas C kernels measured on an emulated core; the others keep
    # the MACs-per-cycle estimate and say from what.
    for name in ("stm32f446re", "nrf52840", "generic_m4f_80mhz", "stm32f746zg", "stm32h743"):
        cost = get_device(name).runtime.cost
        assert cost is not None, name
        assert cost.measured_on in ("m4", "m7")
    for name in ("gap8", "esp32", "rp2040", "rpi4b"):
        dev = get_device(name)
        assert dev.runtime.cost is None
        assert "macs_per_cycle" in dev.estimates, name
