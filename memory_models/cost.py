"""Latency and energy figures: measured kernel costs where the device file has them, else estimates.

With a `[runtime.cost]` table (the Cortex-M4 / M7 devices running the m2nas C kernels): cycles =
instructions of the graph's kernels (memory_models.latency: terms fitted to instruction counts on an
emulated core) x the file's cycles per instruction. That CPI is an assumption (QEMU counts
instructions, not cycles), and so is the result's relation to a board.

Otherwise, per op: cycles = MACs / (device MACs per cycle at its narrowest operand's bit-width: the
kernel unpacks sub-byte weights or activations) + weight bytes / bandwidth of the weights' level +
activation bytes read and written / bandwidth of the activations' level + the runtime's per-op
overhead. No overlap of compute and transfers is assumed (in-order MCU cores, no DMA
double-buffering).

Energy = cycles x core energy per cycle + bytes x energy per byte of each level. These rank
candidates; they are not measurements on a board, and every report says so.
"""

from __future__ import annotations

from .buffers import Buffers
from .devices import Device

ESTIMATE_NOTE = (
    "latency_ms_est and energy_uj_est are estimates from the device file's figures, not measurements on a "
    "board: for Cortex-M4 / M7 devices, the C kernels' instruction counts fitted to an emulated core times an "
    "assumed cycles per instruction; elsewhere MACs per cycle by bit-width, bytes per memory level and a "
    "per-op overhead"
)


def latency_energy(bufs: Buffers, device: Device, placement: dict[str, str]) -> tuple[float, float]:
    """The per-op compute terms are summed while the graph is compiled; the transfer terms only
    need the totals, since each placement puts all constants on one level and all activations on
    another."""
    wl = device.level(placement["weights"])
    al = device.level(placement["activations"])
    cost = device.runtime.cost
    if (
        bufs.instructions is not None
        and cost is not None
        and placement.get("runtime", device.runtime.profile) == "m2nas-c"
    ):
        # Measured kernels: their instruction counts already include every load and store.
        cycles = bufs.instructions * cost.cycles_per_instruction
    else:
        cycles = (
            bufs.compute_cycles + bufs.const_bytes / wl.bytes_per_cycle + bufs.act_bytes / al.bytes_per_cycle
        )
    latency_ms = cycles / (device.clock_mhz * 1e3)
    energy_pj = (
        cycles * device.core_pj_per_cycle
        + bufs.const_bytes * wl.energy_pj_per_byte
        + bufs.act_bytes * al.energy_pj_per_byte
    )
    return latency_ms, energy_pj * 1e-6
