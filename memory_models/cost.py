"""First-order latency and energy *estimates* from MACs per bit-width and bytes moved per level.

Per op: cycles = MACs / (device MACs per cycle at its narrowest operand's bit-width: the kernel unpacks
sub-byte weights or activations) + weight bytes / bandwidth
of the weights' level + activation bytes read and written / bandwidth of the activations' level +
the runtime's per-op overhead. No overlap of compute and transfers is assumed (in-order MCU cores,
no DMA double-buffering). Energy = cycles x core energy per cycle + bytes x energy per byte of each
level. These rank candidates; they are not measurements, and every report says so.
"""

from __future__ import annotations

from .buffers import Buffers
from .devices import Device

ESTIMATE_NOTE = (
    "latency_ms_est and energy_uj_est are analytical estimates (MACs per cycle by bit-width, bytes per "
    "memory level, per-op overhead) from the device file's figures, not measurements"
)


def latency_energy(bufs: Buffers, device: Device, placement: dict[str, str]) -> tuple[float, float]:
    """The per-op compute terms are summed while the graph is compiled; the transfer terms only
    need the totals, since each placement puts all constants on one level and all activations on
    another."""
    wl = device.level(placement["weights"])
    al = device.level(placement["activations"])
    cycles = bufs.compute_cycles + bufs.const_bytes / wl.bytes_per_cycle + bufs.act_bytes / al.bytes_per_cycle
    latency_ms = cycles / (device.clock_mhz * 1e3)
    energy_pj = (
        cycles * device.core_pj_per_cycle
        + bufs.const_bytes * wl.energy_pj_per_byte
        + bufs.act_bytes * al.energy_pj_per_byte
    )
    return latency_ms, energy_pj * 1e-6
