"""The op kinds of an OpGraph and the groups every pass asks about.

One vocabulary for the memory model, the search space's graph builder, the ONNX reader and the C
code generator (as tinygrad's `Ops` / `GroupOp`): a pass says "weighted" or "keeps the bits" by
naming a group here, so a new kind is added once and every pass sees it. Kinds are `StrEnum`s, so
the JSON form of an OpGraph (plain strings) and the enum compare equal; the groups hold the plain
string values because the memory model tests membership thousands of times per second.
"""

from __future__ import annotations

from enum import StrEnum

# The quantized bit-widths of weights and activations, end to end: the search space samples them,
# Brevitas trains at them, the memory model packs sub-byte tensors at them, and the C kernels
# address packed elements (2 and 4 divide 8, so no element straddles two bytes).
BITS = (2, 4, 8)


class OpKind(StrEnum):
    CONV1D = "conv1d"
    CONV2D = "conv2d"
    DEPTHWISE_CONV1D = "depthwise_conv1d"
    DEPTHWISE_CONV2D = "depthwise_conv2d"
    POINTWISE_CONV1D = "pointwise_conv1d"
    POINTWISE_CONV2D = "pointwise_conv2d"
    LINEAR = "linear"
    MAXPOOL1D = "maxpool1d"
    MAXPOOL2D = "maxpool2d"
    AVGPOOL1D = "avgpool1d"
    AVGPOOL2D = "avgpool2d"
    GLOBAL_AVGPOOL = "global_avgpool"
    GLOBAL_MAXPOOL = "global_maxpool"
    ADD = "add"
    MUL = "mul"
    ACTIVATION = "activation"
    FLATTEN = "flatten"
    RESHAPE = "reshape"
    CONCAT = "concat"
    RESIZE = "resize"
    TRANSPOSE = "transpose"  # a copy into its own buffer (NHWC <-> NCHW at the edges of converted models)
    PAD = "pad"  # a copy into a larger buffer (explicit padding before a convolution)
    SLICE = "slice"  # a copy of a strided part of the input (TFLite's STRIDED_SLICE / SLICE)


def _group(*kinds: OpKind) -> frozenset[str]:
    return frozenset(k.value for k in kinds)


K = OpKind


class GroupOp:
    """Named sets of kinds (plain strings). Read-only by convention."""

    # Convolutions over positions: MACs are weights x output positions.
    CONV = _group(
        K.CONV1D, K.CONV2D, K.DEPTHWISE_CONV1D, K.DEPTHWISE_CONV2D, K.POINTWISE_CONV1D, K.POINTWISE_CONV2D
    )
    WEIGHTED = CONV | _group(K.LINEAR)
    # Dense convolutions whose kernels unpack input patches into an im2col column.
    IM2COL = _group(K.CONV1D, K.CONV2D)
    POOL = _group(K.MAXPOOL1D, K.MAXPOOL2D, K.AVGPOOL1D, K.AVGPOOL2D, K.GLOBAL_AVGPOOL, K.GLOBAL_MAXPOOL)
    ELEMENTWISE = _group(K.ADD, K.MUL, K.ACTIVATION)
    # Views: the output is the input's bytes under another shape, so they share one buffer.
    ALIAS = _group(K.FLATTEN, K.RESHAPE)
    OTHER = _group(K.CONCAT, K.RESIZE, K.TRANSPOSE, K.PAD, K.SLICE)
    ALL = WEIGHTED | POOL | ELEMENTWISE | ALIAS | OTHER
    # Joins: one requantization pair per input.
    JOIN = _group(K.ADD, K.MUL, K.CONCAT)
    # Ops that change the scale once: one requantization pair.
    RESCALE = _group(K.AVGPOOL1D, K.AVGPOOL2D, K.GLOBAL_AVGPOOL, K.RESIZE, K.ACTIVATION)
    # Ops whose output keeps the input's quantization grid, so its bit-width.
    BITS_PRESERVING = (
        _group(K.MAXPOOL1D, K.MAXPOOL2D, K.GLOBAL_MAXPOOL, K.CONCAT, K.RESIZE, K.TRANSPOSE, K.PAD, K.SLICE)
        | ALIAS
    )
    # What the C code generator has kernels for.
    C_SUPPORTED = (
        WEIGHTED
        | _group(K.MAXPOOL1D, K.MAXPOOL2D, K.AVGPOOL1D, K.AVGPOOL2D, K.GLOBAL_AVGPOOL, K.ADD, K.MUL, K.CONCAT)
        | ALIAS
    )


del K
