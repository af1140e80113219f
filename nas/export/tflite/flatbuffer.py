"""A TFLite model as tensors and operators, serialised with the flatbuffers builder and the `tflite`
package's generated functions (no TensorFlow): tensors of the integer and float types, per-tensor
or per-channel quantization, and the builtin options of the operators m2nas writes (the tests'
fixtures write other operators, without options)."""

from __future__ import annotations

from dataclasses import dataclass, field

import flatbuffers
import numpy as np
import tflite

_TYPES = {
    np.dtype(np.int8): tflite.TensorType.INT8,
    np.dtype(np.uint8): tflite.TensorType.UINT8,
    np.dtype(np.int16): tflite.TensorType.INT16,
    np.dtype(np.int32): tflite.TensorType.INT32,
    np.dtype(np.float32): tflite.TensorType.FLOAT32,
}


@dataclass
class TfTensor:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: list[float] = field(default_factory=list)  # empty: not quantized (shapes, axes)
    zero_point: list[int] = field(default_factory=list)
    axis: int = 0  # quantized dimension of a per-channel tensor
    data: np.ndarray | None = None  # constants
    variable: bool = False  # persistent state (TFLite's variable tensors)


@dataclass
class TfModel:
    tensors: list[TfTensor] = field(default_factory=list)
    ops: list[tuple[str, list[int], list[int], dict]] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    description: str = "m2nas"

    def tensor(self, t: TfTensor) -> int:
        self.tensors.append(t)
        return len(self.tensors) - 1

    def const(self, name: str, data: np.ndarray, scale=(), zero_point=(), axis: int = 0) -> int:
        data = np.ascontiguousarray(data)
        return self.tensor(
            TfTensor(name, tuple(data.shape), data.dtype, list(scale), list(zero_point), axis, data)
        )

    def op(self, builtin: str, inputs: list[int], outputs: list[int], **options) -> None:
        self.ops.append((builtin, inputs, outputs, options))

    def to_bytes(self) -> bytes:
        return _Writer(self).write()


def _vector(b, start, items, prepend):
    start(b, len(items))
    for x in reversed(items):
        prepend(x)
    return b.EndVector()


class _Writer:
    def __init__(self, m: TfModel) -> None:
        self.m = m
        self.b = flatbuffers.Builder(1 << 16)

    def options(self, builtin: str, o: dict):
        b = self.b
        if builtin == "CONV_2D":
            tflite.Conv2DOptionsStart(b)
            tflite.Conv2DOptionsAddPadding(b, o["padding"])
            tflite.Conv2DOptionsAddStrideH(b, o["stride"][0])
            tflite.Conv2DOptionsAddStrideW(b, o["stride"][1])
            tflite.Conv2DOptionsAddDilationHFactor(b, 1)
            tflite.Conv2DOptionsAddDilationWFactor(b, 1)
            tflite.Conv2DOptionsAddFusedActivationFunction(b, o.get("act", 0))
            return tflite.BuiltinOptions.Conv2DOptions, tflite.Conv2DOptionsEnd(b)
        if builtin == "DEPTHWISE_CONV_2D":
            tflite.DepthwiseConv2DOptionsStart(b)
            tflite.DepthwiseConv2DOptionsAddPadding(b, o["padding"])
            tflite.DepthwiseConv2DOptionsAddStrideH(b, o["stride"][0])
            tflite.DepthwiseConv2DOptionsAddStrideW(b, o["stride"][1])
            tflite.DepthwiseConv2DOptionsAddDepthMultiplier(b, 1)
            tflite.DepthwiseConv2DOptionsAddDilationHFactor(b, 1)
            tflite.DepthwiseConv2DOptionsAddDilationWFactor(b, 1)
            return tflite.BuiltinOptions.DepthwiseConv2DOptions, tflite.DepthwiseConv2DOptionsEnd(b)
        if builtin == "FULLY_CONNECTED":
            tflite.FullyConnectedOptionsStart(b)
            tflite.FullyConnectedOptionsAddFusedActivationFunction(b, o.get("act", 0))
            return tflite.BuiltinOptions.FullyConnectedOptions, tflite.FullyConnectedOptionsEnd(b)
        if builtin in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            tflite.Pool2DOptionsStart(b)
            tflite.Pool2DOptionsAddPadding(b, tflite.Padding.VALID)
            tflite.Pool2DOptionsAddFilterHeight(b, o["kernel"][0])
            tflite.Pool2DOptionsAddFilterWidth(b, o["kernel"][1])
            tflite.Pool2DOptionsAddStrideH(b, o["stride"][0])
            tflite.Pool2DOptionsAddStrideW(b, o["stride"][1])
            return tflite.BuiltinOptions.Pool2DOptions, tflite.Pool2DOptionsEnd(b)
        if builtin == "MEAN":
            tflite.ReducerOptionsStart(b)
            tflite.ReducerOptionsAddKeepDims(b, False)
            return tflite.BuiltinOptions.ReducerOptions, tflite.ReducerOptionsEnd(b)
        if builtin == "CONCATENATION":
            tflite.ConcatenationOptionsStart(b)
            tflite.ConcatenationOptionsAddAxis(b, o["axis"])
            return tflite.BuiltinOptions.ConcatenationOptions, tflite.ConcatenationOptionsEnd(b)
        if builtin == "ADD":
            tflite.AddOptionsStart(b)
            return tflite.BuiltinOptions.AddOptions, tflite.AddOptionsEnd(b)
        if builtin == "MUL":
            tflite.MulOptionsStart(b)
            return tflite.BuiltinOptions.MulOptions, tflite.MulOptionsEnd(b)
        if builtin == "RESHAPE" and "shape" in o:
            shape = _vector(b, tflite.ReshapeOptionsStartNewShapeVector, list(o["shape"]), b.PrependInt32)
            tflite.ReshapeOptionsStart(b)
            tflite.ReshapeOptionsAddNewShape(b, shape)
            return tflite.BuiltinOptions.ReshapeOptions, tflite.ReshapeOptionsEnd(b)
        if builtin == "PAD":
            tflite.PadOptionsStart(b)
            return tflite.BuiltinOptions.PadOptions, tflite.PadOptionsEnd(b)
        return 0, None  # QUANTIZE, LOGISTIC: no options

    def buffers(self) -> tuple[list, dict[int, int]]:
        b = self.b
        tflite.BufferStart(b)
        out, index = [tflite.BufferEnd(b)], {}  # buffer 0: the empty sentinel
        for i, t in enumerate(self.m.tensors):
            if t.data is None:
                continue
            b.StartVector(1, t.data.nbytes, 16)  # 16-byte aligned constants, as converters write
            for byte in reversed(t.data.tobytes()):
                b.PrependByte(byte)
            data = b.EndVector()
            tflite.BufferStart(b)
            tflite.BufferAddData(b, data)
            index[i] = len(out)
            out.append(tflite.BufferEnd(b))
        return out, index

    def tensors(self, buffer_of: dict[int, int]) -> list:
        b, out = self.b, []
        for i, t in enumerate(self.m.tensors):
            name = b.CreateString(t.name)
            shape = _vector(b, tflite.TensorStartShapeVector, list(t.shape), b.PrependInt32)
            quant = None
            if t.scale:
                scale = _vector(b, tflite.QuantizationParametersStartScaleVector, t.scale, b.PrependFloat32)
                zp = _vector(
                    b, tflite.QuantizationParametersStartZeroPointVector, t.zero_point, b.PrependInt64
                )
                tflite.QuantizationParametersStart(b)
                tflite.QuantizationParametersAddScale(b, scale)
                tflite.QuantizationParametersAddZeroPoint(b, zp)
                tflite.QuantizationParametersAddQuantizedDimension(b, t.axis)
                quant = tflite.QuantizationParametersEnd(b)
            tflite.TensorStart(b)
            tflite.TensorAddShape(b, shape)
            tflite.TensorAddType(b, _TYPES[np.dtype(t.dtype)])
            tflite.TensorAddBuffer(b, buffer_of.get(i, 0))
            tflite.TensorAddName(b, name)
            if quant is not None:
                tflite.TensorAddQuantization(b, quant)
            tflite.TensorAddIsVariable(b, t.variable)
            out.append(tflite.TensorEnd(b))
        return out

    def operators(self, codes: list[str]) -> list:
        b, out = self.b, []
        for builtin, ins, outs, o in self.m.ops:
            opt_type, opt = self.options(builtin, o)
            iv = _vector(b, tflite.OperatorStartInputsVector, ins, b.PrependInt32)
            ov = _vector(b, tflite.OperatorStartOutputsVector, outs, b.PrependInt32)
            tflite.OperatorStart(b)
            tflite.OperatorAddOpcodeIndex(b, codes.index(builtin))
            tflite.OperatorAddInputs(b, iv)
            tflite.OperatorAddOutputs(b, ov)
            if opt is not None:
                tflite.OperatorAddBuiltinOptionsType(b, opt_type)
                tflite.OperatorAddBuiltinOptions(b, opt)
            out.append(tflite.OperatorEnd(b))
        return out

    def write(self) -> bytes:
        b, m = self.b, self.m
        codes = sorted({op[0] for op in m.ops})
        buffers, buffer_of = self.buffers()
        tv = _vector(b, tflite.SubGraphStartTensorsVector, self.tensors(buffer_of), b.PrependUOffsetTRelative)
        iv = _vector(b, tflite.SubGraphStartInputsVector, m.inputs, b.PrependInt32)
        ov = _vector(b, tflite.SubGraphStartOutputsVector, m.outputs, b.PrependInt32)
        opv = _vector(
            b, tflite.SubGraphStartOperatorsVector, self.operators(codes), b.PrependUOffsetTRelative
        )
        gname = b.CreateString("main")
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, tv)
        tflite.SubGraphAddInputs(b, iv)
        tflite.SubGraphAddOutputs(b, ov)
        tflite.SubGraphAddOperators(b, opv)
        tflite.SubGraphAddName(b, gname)
        graph = tflite.SubGraphEnd(b)
        code_offsets = []
        for c in codes:
            num = getattr(tflite.BuiltinOperator, c)
            tflite.OperatorCodeStart(b)
            tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(num, 127))
            tflite.OperatorCodeAddBuiltinCode(b, num)
            tflite.OperatorCodeAddVersion(b, 1)
            code_offsets.append(tflite.OperatorCodeEnd(b))
        cv = _vector(b, tflite.ModelStartOperatorCodesVector, code_offsets, b.PrependUOffsetTRelative)
        sv = _vector(b, tflite.ModelStartSubgraphsVector, [graph], b.PrependUOffsetTRelative)
        bv = _vector(b, tflite.ModelStartBuffersVector, buffers, b.PrependUOffsetTRelative)
        desc = b.CreateString(m.description)
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, 3)
        tflite.ModelAddOperatorCodes(b, cv)
        tflite.ModelAddSubgraphs(b, sv)
        tflite.ModelAddBuffers(b, bv)
        tflite.ModelAddDescription(b, desc)
        b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())
