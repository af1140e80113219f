"""Non-volatile bytes: what the model's constants and the runtime's code take.

flash = packed weights (ceil(n * bits / 8) per layer) + int32 biases + requantization parameters
(one (multiplier, shift) pair per output channel of a per-channel layer, per tensor otherwise, per
input of a join) + one descriptor per op + the code of each operator kernel the graph uses + the
runtime itself.
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
    n_ops = bufs.n_ops - sum(bufs.op_is_view)
    return FlashBreakdown(
        weights=bufs.weight_bytes,
        biases=bufs.bias_bytes,
        quant_params=bufs.requant_pairs * runtime.requant_param_bytes,
        op_table=n_ops * runtime.op_table_bytes,
        kernels=sum(runtime.kernel_bytes(k) for k in bufs.kernel_kinds),
        runtime=runtime.flash_bytes,
    )
