"""evaluate(graph, device, target) -> MemoryReport: everything the search, the reports and the
exporter need to know about where a candidate's bytes go.

Three SRAM figures, so users can see what each formula gets wrong:
- `per_layer_peak_bytes`: max over ops of input + output (the usual formula; it ignores branch outputs
  and inputs held while other branches run, so it underestimates multi-branch nets);
- `peak_sram_bytes`: the true peak of live tensor bytes under the chosen schedule (a lower bound for
  any allocator);
- `arena_bytes`: the planned arena, the number the exported C code allocates and fits are checked on;
  `arena_over_peak` says how far the planner is from the peak, its lower bound (1.0: optimal).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .arena import ArenaPlan, plan_arena
from .buffers import Buffers, compile_buffers
from .cost import ESTIMATE_NOTE, latency_energy
from .devices import Device, parse_target
from .flash import FlashBreakdown, flash_breakdown
from .graph import OpGraph
from .schedule import Schedule, best_schedule, peak_of_order
from .tflm import TflmArena, TflmSizes, tflm_arena


@dataclass(slots=True)
class LevelUse:
    name: str
    capacity_bytes: int
    holds: list[str]
    used_bytes: int

    @property
    def margin_bytes(self) -> int:
        return self.capacity_bytes - self.used_bytes

    @property
    def fits(self) -> bool:
        return self.used_bytes <= self.capacity_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "capacity_bytes": self.capacity_bytes,
            "used_bytes": self.used_bytes,
            "holds": self.holds,
            "margin_bytes": self.margin_bytes,
            "fits": self.fits,
        }


@dataclass(slots=True)
class MemoryReport:
    device: str
    target: dict[str, str]
    flash: FlashBreakdown
    peak_sram_bytes: int
    arena_bytes: int
    runtime_ram_bytes: int
    per_layer_peak_bytes: int
    levels: list[LevelUse]
    latency_ms_est: float
    energy_uj_est: float
    macs: int
    params: int
    # Kept for serialisation and for the exporter; not needed to decide fit.
    graph: OpGraph = field(repr=False)
    buffers: Buffers = field(repr=False)
    schedule_: Schedule = field(repr=False)
    plan: ArenaPlan = field(repr=False)
    # The runtime profile the fit is checked for, and TFLite Micro's arena (computed on first use).
    runtime: str = "m2nas-c"
    pointer_bytes: int = 4
    tflm_: TflmArena | None = field(default=None, repr=False)

    @property
    def tflm(self) -> TflmArena:
        """TFLite Micro's head + tail for this graph, run in its listed order."""
        if self.tflm_ is None:
            sizes = TflmSizes.host64() if self.pointer_bytes == 8 else TflmSizes.cortex_m()
            self.tflm_ = tflm_arena(self.graph, sizes)
        return self.tflm_

    def runtimes(self) -> dict[str, dict[str, int]]:
        """SRAM each runtime needs for this model: m2nas-c (its arena plan + runtime RAM) and TFLM
        (its whole arena, planned buffers and persistent part, + the same runtime RAM)."""
        t = self.tflm
        return {
            "m2nas-c": {
                "sram_bytes": self.arena_bytes + self.runtime_ram_bytes,
                "arena_bytes": self.arena_bytes,
                "runtime_ram_bytes": self.runtime_ram_bytes,
            },
            "tflm": {
                "sram_bytes": t.arena_bytes + self.runtime_ram_bytes,
                "arena_bytes": t.arena_bytes,
                "head_bytes": t.head_bytes,
                "tail_bytes": t.tail_bytes,
                "runtime_ram_bytes": self.runtime_ram_bytes,
            },
        }

    @property
    def fits(self) -> bool:
        return all(lv.fits for lv in self.levels)

    @property
    def flash_bytes(self) -> int:
        return self.flash.total

    @property
    def sram_bytes(self) -> int:
        """What the activations' level must hold at run time: the arena (TFLM's whole arena under the
        tflm profile) plus the runtime's own RAM."""
        if self.runtime == "tflm":
            return self.tflm.arena_bytes + self.runtime_ram_bytes
        return self.arena_bytes + self.runtime_ram_bytes

    @property
    def arena_over_peak(self) -> float:
        return self.plan.over_lower_bound

    @property
    def schedule(self) -> list[str]:
        ops = self.graph.ops
        return [ops[i].name for i in self.schedule_.order]

    @property
    def naive_peak_sram_bytes(self) -> int:
        """Peak in the order the graph lists its ops, for comparison with the chosen schedule."""
        return peak_of_order(self.buffers, list(range(self.buffers.n_ops)))

    def level(self, name: str) -> LevelUse:
        return next(lv for lv in self.levels if lv.name == name)

    def margins(self) -> dict[str, int]:
        """Bytes left (negative: over) on each level that holds something."""
        return {lv.name: lv.margin_bytes for lv in self.levels if lv.holds}

    @property
    def reason(self) -> str:
        """Why it does not fit, in one line ('' when it fits)."""
        over = [
            f"{lv.name} needs {lv.used_bytes:,} B for {'+'.join(lv.holds)} but has {lv.capacity_bytes:,} B "
            f"({-lv.margin_bytes:,} B over)"
            for lv in self.levels
            if not lv.fits
        ]
        return "; ".join(over)

    def arena_table(self) -> list[dict[str, Any]]:
        b, p = self.buffers, self.plan
        return [
            {
                "buffer": b.names[i],
                "offset": p.offset[i],
                "bytes": p.size[i],
                "first_step": p.first[i],
                "last_step": p.last[i],
                "scratch": b.is_scratch[i],
            }
            for i in range(len(b.names))
        ]

    def to_dict(self, detail: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "device": self.device,
            "target": self.target,
            "fits": self.fits,
            "reason": self.reason,
            "flash_bytes": self.flash_bytes,
            "flash": self.flash.to_dict(),
            "peak_sram_bytes": self.peak_sram_bytes,
            "arena_bytes": self.arena_bytes,
            "arena_lower_bound_bytes": self.plan.lower_bound,
            "arena_over_peak": round(self.arena_over_peak, 4),
            "arena_planner": self.plan.method,
            "sram_bytes": self.sram_bytes,
            "runtime_ram_bytes": self.runtime_ram_bytes,
            "naive_peak_sram_bytes": self.naive_peak_sram_bytes,
            "per_layer_peak_bytes": self.per_layer_peak_bytes,
            "tensor_alignment": self.buffers.alignment,
            "scheduler": self.schedule_.method,
            "schedule": self.schedule,
            "levels": [lv.to_dict() for lv in self.levels],
            "latency_ms_est": round(self.latency_ms_est, 6),
            "energy_uj_est": round(self.energy_uj_est, 6),
            "estimates": ESTIMATE_NOTE,
            "macs": self.macs,
            "params": self.params,
        }
        if detail:
            d["arena"] = self.arena_table()
            d["runtime"] = self.runtime
            d["runtimes"] = self.runtimes()
            d["tflm"] = self.tflm.to_dict()
        return d


def evaluate(graph: OpGraph, device: Device, target: dict[str, str] | str | None = None) -> MemoryReport:
    placement = parse_target(target if target is not None else device.default_target, device)
    runtime = device.runtime
    bufs = compile_buffers(graph, device)
    sched = best_schedule(bufs)
    plan = plan_arena(bufs, sched.order, sched.peak)
    flash = flash_breakdown(bufs, runtime)
    profile = placement.get("runtime", runtime.profile)
    tflm = (
        tflm_arena(graph, TflmSizes.host64() if runtime.pointer_bytes == 8 else TflmSizes.cortex_m())
        if profile == "tflm"
        else None
    )
    arena = tflm.arena_bytes if tflm is not None else plan.arena_bytes

    parts = {
        "weights": flash.model_bytes,
        "activations": arena + runtime.ram_bytes,
        "code": flash.code_bytes,
    }
    levels = []
    for lv in device.levels:
        holds = [k for k in ("weights", "activations", "code") if placement[k] == lv.name]
        levels.append(LevelUse(lv.name, lv.capacity_bytes, holds, sum(parts[k] for k in holds)))
    latency, energy = latency_energy(bufs, device, placement)
    return MemoryReport(
        device=device.name,
        target=placement,
        flash=flash,
        peak_sram_bytes=sched.peak,
        arena_bytes=plan.arena_bytes,
        runtime_ram_bytes=runtime.ram_bytes,
        per_layer_peak_bytes=bufs.per_layer_peak_bytes,
        levels=levels,
        latency_ms_est=latency,
        energy_uj_est=energy,
        macs=graph.macs,
        params=graph.params,
        graph=graph,
        buffers=bufs,
        schedule_=sched,
        plan=plan,
        runtime=profile,
        pointer_bytes=runtime.pointer_bytes,
        tflm_=tflm,
    )
