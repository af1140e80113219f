"""What fits where: device catalogue, OpGraph, and the analytical flash/SRAM model. No torch here."""

from .devices import Device, MemoryLevel, Runtime, catalogue, get_device, parse_target
from .errors import InputError
from .graph import Op, OpGraph, Tensor
from .report import MemoryReport, evaluate

__all__ = [
    "Device",
    "InputError",
    "MemoryLevel",
    "MemoryReport",
    "Op",
    "OpGraph",
    "Runtime",
    "Tensor",
    "catalogue",
    "evaluate",
    "get_device",
    "parse_target",
]
