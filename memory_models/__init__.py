"""What fits where: device catalogue, OpGraph (and its ONNX reader, `onnx_import`), the op-kind
vocabulary (`ops`), and the analytical flash/SRAM model. No torch here."""

from .devices import Device, MemoryLevel, Runtime, catalogue, get_device, parse_target
from .errors import InputError
from .graph import Op, OpGraph, Tensor
from .ops import BITS, GroupOp, OpKind
from .report import MemoryReport, evaluate

__all__ = [
    "BITS",
    "Device",
    "GroupOp",
    "InputError",
    "MemoryLevel",
    "MemoryReport",
    "Op",
    "OpGraph",
    "OpKind",
    "Runtime",
    "Tensor",
    "catalogue",
    "evaluate",
    "get_device",
    "parse_target",
]
