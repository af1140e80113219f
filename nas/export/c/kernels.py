"""The C99 operator kernels of the generated code, as source text (emitted into ``model.c``).

Conventions (all kernels):

* tensors live in the static arena, channel-first (``(C, L)`` or ``(C, H, W)``; 1D runs as 2D with
  ``H = 1``), elements *packed* at their bit-width (2, 4 or 8): element ``i`` of a ``b``-bit tensor is
  bits ``(i*b) % 8 ..`` of byte ``i*b / 8`` (low bits first; 2 and 4 divide 8, so no element straddles
  two bytes). Signed tensors hold ``b``-bit two's complement fields, unsigned ones plain fields;
* weights are packed the same way (signed, narrow range), PyTorch order ``(C_out, C_in/groups, k...)``;
* accumulators are int32 (bias added in int64, so a saturated int32 bias cannot overflow);
* requantization is fixed point as in TFLite Micro / CMSIS-NN: ``q = round(acc * mult / 2^shift)``
  with a 31-bit ``mult``, evaluated exactly in int64 and rounded half to even (the rounding of
  ``torch.round`` in the Brevitas model), then clamped to the output quantizer's range. ReLU is that
  clamp at 0 (an unsigned output quantizer).

Speed (issue 15): the multiply-accumulate loops are shared dot products of one column against four
weight rows at a time (``m2_dot_8``, ``m2_dot_low`` in ``common``); with ``__ARM_FEATURE_DSP``
(Cortex-M4 / M7) they use the ACLE intrinsics of ``arm_acle.h`` (SXTB16 / UXTB16 to widen, SMLAD for
two MACs an instruction; 4-bit weights widened as 16 x their value and divided back exactly), and
requantization rounds with shifts instead of a 64-bit division. Speed builds (Arm DSP, not -Os) add
the widened-lane kernels: a column widened once into 16-bit lanes in the order the weight rows unpack
in registers, against every output channel (4- and 2-bit rows of any alignment; byte rows of
pointwise layers two positions a pass, of linear layers four rows a pass, the inner loops of the
last two and of aligned 4-bit rows in inline assembly). Their requantization is fused into those
loops, in assembly, where the exporter's ``requant_mode`` (``packing.py``) allows it: byte outputs
clamped to the whole int8 / uint8 range, every shift above 32, biases below 2^30 (10
instructions an output with one shift for the layer, 14 with one a channel); otherwise the sums are
requantized eight channels at a time. Depthwise layers (speed builds, filters up to 64 taps and 32
pairs): each channel's filter as 16-bit pairs, the input rows under a run of outputs staged once as
16-bit lanes with the padding written as zeros (any input bit-width), every output SMLADs of whole
words with no bounds tests, and its requantization in registers where the clamp is the output type's
whole range (a shift up to 32 is scaled to 33 when the sum allows). Every path
computes the same integers as the portable C, bit for bit (checked on x86 and on both emulated
cores, layer by layer in tests/unit/nas/test_kernels_cortexm.py and model by model). Stack: the
-Os build up to 64 B (a sub-byte pointwise input's column chunk) or 256 B (a depthwise filter)
besides a few scalars; a speed build up to 320 B of lanes (im2col columns up to 160 elements),
64 + 256 B (a pointwise column and two positions' lanes) or 128 + 128 B (a depthwise filter as
16-bit pairs and its staged input rows), besides the frames; the export measures
the whole inference's stack on the emulated cores (``stack_bytes``: about 0.7-0.9 KB measured).

Each kernel is delimited by ``/*@kernel NAME*/`` ... ``/*@end*/`` so that the generator emits only
the kernels a model uses (``-Wall -Wextra -Werror`` rejects unused static functions, and unused code
would inflate the size figures). ``common`` is always emitted.

The source lives in real files shipped as package data, ``csrc/m2_kernels.h`` (``common``) and
``csrc/m2_kernels.c`` (the operators), so a C compiler and linter can check them on their own:
``gcc -std=c99 -Wall -Wextra -Werror -DM2_KERNELS_STANDALONE -c m2_kernels.c``.
"""

from __future__ import annotations

import re
from importlib import resources


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("csrc", name).read_text()


SOURCE = _read("m2_kernels.h") + _read("m2_kernels.c")
_KERNEL = re.compile(r"/\*@kernel (\w+)\*/\n(.*?)/\*@end\*/\n", re.S)
KERNELS: dict[str, str] = {m.group(1): m.group(2) for m in _KERNEL.finditer(SOURCE)}


def kernel_source(names) -> str:
    """C source of the ``common`` helpers and the named kernels, in a fixed order."""
    unknown = set(names) - set(KERNELS)
    if unknown:
        raise KeyError(f"no C kernel named {sorted(unknown)}")
    return "\n".join(KERNELS[k] for k in KERNELS if k == "common" or k in names)
