"""Memory screening: every candidate is analysed on every study device before anything is built.

This is what makes the search cheap: a candidate that fits no device target costs microseconds of
analysis and is recorded as rejected; the overshoot is handed to Optuna as a constraint so its
samplers learn where the feasible region is.
"""

from __future__ import annotations

from typing import Any

from memory_models import MemoryReport, evaluate
from search_spaces import Arch, graph


def figures(r: MemoryReport) -> dict[str, Any]:
    """The key numbers of one device's report, as stored in a trial's user attributes."""
    return {
        "fits": r.fits,
        "flash": r.flash_bytes,
        "model_flash": r.flash.model_bytes,
        "sram": r.sram_bytes,
        "arena": r.arena_bytes,
        "peak": r.peak_sram_bytes,
        "latency": r.latency_ms_est,
        "energy": r.energy_uj_est,
        "margins": r.margins(),
        "reason": r.reason,
    }


def overshoot(r: MemoryReport) -> float:
    """Largest relative overshoot over the levels that hold something (<= 0 when it fits)."""
    return max((lv.used_bytes - lv.capacity_bytes) / lv.capacity_bytes for lv in r.levels if lv.holds)


class MemoryScreen:
    """The study's devices and targets, and the verdict on one arch."""

    def __init__(self, study) -> None:
        self.devices = study.devices
        self.targets = study.targets

    def analyse(self, arch: Arch) -> dict[str, MemoryReport]:
        g = graph(arch)
        return {name: evaluate(g, dev, self.targets[name]) for name, dev in self.devices.items()}

    @staticmethod
    def constraint(reports: dict[str, MemoryReport]) -> float:
        """Optuna's constraint value: <= 0 when the arch fits at least one device."""
        return min(overshoot(r) for r in reports.values())

    @staticmethod
    def fits_any(reports: dict[str, MemoryReport]) -> bool:
        return any(r.fits for r in reports.values())

    @staticmethod
    def rejection(reports: dict[str, MemoryReport]) -> str:
        return "; ".join(f"{n}: {r.reason}" for n, r in reports.items())
