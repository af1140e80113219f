"""Non-volatile bytes: what the model's constants and the runtime's code take.

flash = packed weights (ceil(n * bits / 8) per layer) + int32 biases + requantization parameters
(one (multiplier, shift) pair per output channel of a per-channel layer, per tensor otherwise, per
input of a join; and the lookup table of a fused sigmoid) + one descriptor or call per op (by op
kind) + the code of each kernel unit the graph links (shared kernels and bit-width variants once,
see `Runtime.kernels_bytes`) + the runtime itself.

For the m2nas-c runtime on Cortex-M the device files' figures are arm-none-eabi-gcc's section sizes
of the generated model.c (-Os), so `total` predicts text + data of model.o (issue 15: within 5%).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .buffers import Buffers
from .devices import Runtime


@dataclass(slots=True, frozen=True)
class FlashBreakdown:
    weights: int
    biases: int
    quant_params: int
    op_table: int
    kernels: int
    runtime: int

    @property
    def model_bytes(self) -> int:
        """Constant data that belongs to this model (placed with the weights)."""
        return self.weights + self.biases + self.quant_params + self.op_table

    @property
    def code_bytes(self) -> int:
        return self.kernels + self.runtime

    @property
    def total(self) -> int:
        return self.model_bytes + self.code_bytes

    def to_dict(self) -> dict[str, int]:
        return asdict(self) | {
            "model_bytes": self.model_bytes,
            "code_bytes": self.code_bytes,
            "total": self.total,
        }


def flash_breakdown(bufs: Buffers, runtime: Runtime) -> FlashBreakdown:
    return FlashBreakdown(
        weights=bufs.weight_bytes,
        biases=bufs.bias_bytes,
        quant_params=bufs.requant_pairs * runtime.requant_param_bytes + bufs.lut_bytes,
        op_table=bufs.op_code_bytes,
        kernels=runtime.kernels_bytes(bufs.kernel_kinds, bufs.weighted_bits),
        runtime=runtime.flash_bytes,
    )
