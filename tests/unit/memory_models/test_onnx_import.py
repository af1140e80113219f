"""ONNX -> OpGraph (`memory_models.onnx_import`, `m2nas memory MODEL.onnx`).

* Hand-built float models (onnx.helper, no torch) whose figures are worked out here by hand: op kinds,
  parameters, MACs, flash breakdown, tensor bytes, peak activations and the arena.
* A hand-built QCDQ model: bit-widths from the QuantizeLinear type and the Clip ranges, per-channel
  weight scales.
* Brevitas QCDQ exports of search-space archs (every fusion point and operator): the imported graph
  gives the same memory report as `search_spaces.graph(arch)` (figures; names differ).
* Bad files: a corrupt file and an unsupported operator are one clear line and exit code 2.
"""

from __future__ import annotations

import random

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from memory_models import evaluate, get_device
from memory_models.errors import InputError
from memory_models.onnx_import import graph_from_onnx
from tests.fixtures import assert_one_line_error, run_cli

DEVICE = "stm32f446re"  # m2nas-c runtime: 4-byte alignment, im2col of 1 column, 5-byte requant pairs


def _init(name: str, shape, dtype=np.float32, fill=None) -> onnx.TensorProto:
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape).astype(dtype) if fill is None else np.full(shape, fill, dtype=dtype)
    return numpy_helper.from_array(a, name)


def _save(tmp_path, nodes, inputs, outputs, inits, name="m.onnx", opset=13) -> str:
    g = helper.make_graph(nodes, "hand", inputs, outputs, inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / name
    onnx.save(model, str(path))
    return str(path)


def _vi(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


@pytest.fixture
def float_1d(tmp_path):
    """x (N, 2, 16) -> Conv k3 p1 (4 ch) -> Relu -> MaxPool 2 -> Flatten -> Gemm (3 classes)."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c"], name="conv", kernel_shape=[3], pads=[1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2], strides=[2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flat", axis=1),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["logits"], name="fc", transB=1),
    ]
    inits = [_init("w1", (4, 2, 3)), _init("b1", (4,)), _init("w2", (3, 32)), _init("b2", (3,))]
    return _save(tmp_path, nodes, [_vi("x", ["N", 2, 16])], [_vi("logits", ["N", 3])], inits)


def test_float_1d_figures_worked_out_by_hand(float_1d):
    g = graph_from_onnx(float_1d)
    assert [(op.kind, op.attrs.get("activation")) for op in g.ops] == [
        ("conv1d", "relu"),  # the Relu is fused into the convolution
        ("maxpool1d", None),
        ("flatten", None),
        ("linear", "none"),
    ]
    conv = g.ops[0]
    assert (conv.weights, conv.bias, conv.weight_bits) == (4 * 2 * 3, 4, 32)
    assert conv.attrs["kernel"] == [3] and conv.attrs["stride"] == [1] and conv.attrs["groups"] == 1
    assert g.params == 24 + 4 + 96 + 3 == 127
    assert g.macs == 24 * 16 + 32 * 3 == 480
    assert all(t.bits == 32 for t in g.tensors.values())  # float model: 32-bit activations
    assert {n: t.shape for n, t in g.tensors.items()} == {
        "x": (2, 16),
        "conv": (4, 16),
        "pool": (4, 8),
        "flat": (32,),
        "logits": (3,),
    }
    assert g.inputs == ["x"] and g.outputs == ["logits"]

    rt = get_device(DEVICE).runtime
    k, code = rt.kernel_flash_bytes, rt.op_code_bytes
    r = evaluate(g, get_device(DEVICE))
    f = r.flash
    assert f.weights == (24 + 96) * 4  # float32 weights
    assert f.biases == 7 * 4
    assert f.quant_params == 2 * 5  # one (multiplier, shift) pair per weighted op (per-tensor, float)
    # one call per op; the flatten is a view: no op of its own
    assert f.op_table == code["conv1d"] + code["maxpool1d"] + code["linear"]
    # conv1d links the convolution, linear the pointwise kernel; 32-bit weights no dot product
    assert f.kernels == k["conv"] + k["maxpool"] + k["pwconv"]
    assert r.flash_bytes == 480 + 28 + 10 + f.op_table + f.kernels + rt.flash_bytes
    # bytes: x 128, conv 256, pool 128 (flatten shares it), logits 12, conv im2col 1 x 2 x 3 = 6 -> 8
    assert r.per_layer_peak_bytes == 128 + 256
    assert r.peak_sram_bytes == 128 + 256 + 8  # the convolution step
    assert r.arena_bytes == 392
    assert r.sram_bytes == 392 + 1024
    assert len(r.schedule) == 4


@pytest.fixture
def float_2d(tmp_path):
    """x (N, 4, 6, 6) -> depthwise 3x3 + Relu -> pointwise 1x1 -> + x -> GlobalAveragePool -> Reshape
    -> MatMul + Add (bias) -> Softmax."""
    nodes = [
        helper.make_node(
            "Conv", ["x", "wd", "bd"], ["d"], name="dw", kernel_shape=[3, 3], pads=[1] * 4, group=4
        ),
        helper.make_node("Relu", ["d"], ["dr"], name="dw_relu"),
        helper.make_node("Conv", ["dr", "wp", "bp"], ["pw"], name="pw", kernel_shape=[1, 1]),
        helper.make_node("Add", ["pw", "x"], ["res"], name="res"),
        helper.make_node("GlobalAveragePool", ["res"], ["gap"], name="gap"),
        helper.make_node("Reshape", ["gap", "shape"], ["vec"], name="vec"),
        helper.make_node("MatMul", ["vec", "wf"], ["mm"], name="fc"),
        helper.make_node("Add", ["mm", "bf"], ["z"], name="fc_bias"),
        helper.make_node("Softmax", ["z"], ["probs"], name="softmax", axis=1),
    ]
    inits = [
        _init("wd", (4, 1, 3, 3)),
        _init("bd", (4,)),
        _init("wp", (4, 4, 1, 1)),
        _init("bp", (4,)),
        numpy_helper.from_array(np.array([-1, 4], dtype=np.int64), "shape"),
        _init("wf", (4, 5)),
        _init("bf", (5,)),
    ]
    return _save(tmp_path, nodes, [_vi("x", ["N", 4, 6, 6])], [_vi("probs", ["N", 5])], inits)


def test_float_2d_kinds_and_figures(float_2d):
    g = graph_from_onnx(float_2d)
    assert [op.kind for op in g.ops] == [
        "depthwise_conv2d",
        "pointwise_conv2d",
        "add",
        "global_avgpool",
        "reshape",
        "linear",  # MatMul with its constant Add as the bias
        "activation",  # softmax is its own kernel
    ]
    dw, pw, _, _, _, fc, sm = g.ops
    assert dw.attrs["groups"] == 4 and dw.attrs["activation"] == "relu"
    assert (dw.weights, pw.weights, fc.weights, fc.bias) == (36, 16, 20, 5)
    assert sm.attrs["function"] == "softmax"
    assert g.params == (36 + 4) + (16 + 4) + (20 + 5) == 85
    assert g.macs == 36 * 36 + 16 * 36 + 20 == 1892
    assert g.tensors[g.ops[3].outputs[0]].shape == (4, 1, 1)
    r = evaluate(g, get_device(DEVICE))
    assert r.flash.weights == (36 + 16 + 20) * 4
    assert r.flash.biases == (4 + 4 + 5) * 4
    # x (576 B) stays live until the add; pw output 576, add output 576: 3 x 576 at the add
    assert r.per_layer_peak_bytes == 3 * 576
    assert r.peak_sram_bytes == 3 * 576
    k = get_device(DEVICE).runtime.kernel_flash_bytes
    # pointwise and linear share one kernel; softmax has no m2nas-c kernel (the default estimate)
    assert r.flash.kernels == k["dwconv"] + k["pwconv"] + k["add"] + k["avgpool"] + k["default"]


def test_qcdq_bits_from_quantize_type_and_clip_range(tmp_path):
    """x -> Q(int8)/DQ -> Conv(weights int8 clipped to [-7, 7]: 4 bits, per-channel scales) -> Relu ->
    Q(uint8) -> Clip [0, 15] (4 bits) -> DQ."""
    i8, u8 = np.int8, np.uint8
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"], name="in_q"),
        helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"], name="in_dq"),
        helper.make_node("Clip", ["wq", "wlo", "whi"], ["wc"], name="w_clip"),
        helper.make_node("DequantizeLinear", ["wc", "sw", "zw"], ["wd"], name="w_dq", axis=0),
        helper.make_node("Conv", ["xd", "wd"], ["c"], name="conv", kernel_shape=[3], pads=[1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("QuantizeLinear", ["r", "sy", "zy"], ["yq"], name="out_q"),
        helper.make_node("Clip", ["yq", "ylo", "yhi"], ["yc"], name="out_clip"),
        helper.make_node("DequantizeLinear", ["yc", "sy", "zy"], ["y"], name="out_dq"),
    ]
    inits = [
        _init("sx", (), fill=0.05),
        _init("zx", (), i8, 0),
        numpy_helper.from_array(np.clip(np.arange(18).reshape(3, 2, 3) - 9, -7, 7).astype(i8), "wq"),
        _init("wlo", (), i8, -7),
        _init("whi", (), i8, 7),
        numpy_helper.from_array(np.array([0.1, 0.2, 0.3], np.float32), "sw"),
        _init("zw", (3,), i8, 0),
        _init("sy", (), fill=0.1),
        _init("zy", (), u8, 0),
        _init("ylo", (), u8, 0),
        _init("yhi", (), u8, 15),
    ]
    path = _save(tmp_path, nodes, [_vi("x", ["N", 2, 8])], [_vi("y", ["N", 3, 8])], inits)
    import onnxruntime as ort

    (y,) = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(
        None, {"x": np.ones((1, 2, 8), np.float32)}
    )
    assert y.shape == (1, 3, 8) and y.max() <= 1.5 + 1e-6  # a real QCDQ graph (15 x 0.1 at most)

    g = graph_from_onnx(path)
    assert len(g.ops) == 1  # quantize / clip / dequantize chains are not ops
    (conv,) = g.ops
    assert conv.kind == "conv1d" and conv.attrs["activation"] == "relu"
    assert (conv.weights, conv.weight_bits, conv.quant, conv.scales, conv.bias) == (
        18,
        4,
        "per_channel",
        3,
        0,
    )
    assert g.tensors["x"].bits == 8
    assert g.tensors["y"].bits == 4
    r = evaluate(g, get_device(DEVICE))
    assert r.flash.weights == 9  # 18 weights x 4 bits
    assert r.flash.quant_params == 3 * 5  # per output channel
    assert r.per_layer_peak_bytes == 16 + 12  # 16 int8 inputs, 24 4-bit outputs


# ---- Brevitas exports of search-space archs -------------------------------------------------------


SHAPES = [
    {"acc": (3, 32), "gyro": (2, 32), "img": (1, 12, 12)},
    {"a": (1, 10, 10), "b": (2, 8, 8)},
    {"x": (3, 24), "y": (2, 24), "z": (1, 24)},
]
WANTED = ["single", "late-concat", "late-add", "late-gate", "late-lowrank", "intermediate", "early"]


def _kind(arch) -> str:
    if not arch.fused:
        return "single"
    f = arch.fusion
    return f"late-{f.op}" if f.point == "late" else f.point


def _archs_covering_fusions():
    from search_spaces import load_space, sample_random

    space = load_space("tiny")
    found = {}
    for seed in range(400):
        arch = sample_random(random.Random(seed), space, SHAPES[seed % 3], 5)
        k = _kind(arch)
        # prefer three modalities for the n-ary joins
        if k not in found or (len(arch.used) > len(found[k].used)):
            found[k] = arch
        if set(WANTED) <= set(found) and all(len(found[k].used) == 3 for k in ("late-add", "late-gate")):
            break
    return [found[k] for k in WANTED if k in found]


def _export_qcdq(arch, path) -> None:
    import torch
    from brevitas.export import export_onnx_qcdq

    from search_spaces.builder import Positional, build

    torch.manual_seed(0)
    model = build(arch).eval()
    xs = [torch.randn(2, *b.input_shape) for b in arch.used]
    export_onnx_qcdq(
        Positional(model),
        args=tuple(xs),
        export_path=str(path),
        input_names=model.modalities,
        output_names=["logits"],
        dynamo=False,
    )


def _figures(report) -> dict:
    d = report.to_dict(detail=False)
    d["schedule_length"] = len(d.pop("schedule"))
    return d


def test_brevitas_exports_give_the_search_time_report(tmp_path):
    import warnings

    from search_spaces import graph

    archs = _archs_covering_fusions()
    assert {_kind(a) for a in archs} >= {"single", "late-gate", "late-lowrank", "intermediate", "early"}
    devices = [get_device("stm32f446re"), get_device("nrf52840")]
    for i, arch in enumerate(archs):
        path = tmp_path / f"arch{i}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _export_qcdq(arch, path)
        imported, analytic = graph_from_onnx(path), graph(arch)
        assert sorted(op.kind for op in imported.ops) == sorted(op.kind for op in analytic.ops), (
            arch.summary()
        )
        assert imported.params == analytic.params and imported.macs == analytic.macs
        assert sorted((t.shape, t.bits) for t in imported.tensors.values()) == sorted(
            (t.shape, t.bits) for t in analytic.tensors.values()
        ), arch.summary()
        for dev in devices:
            assert _figures(evaluate(imported, dev)) == _figures(evaluate(analytic, dev)), (
                arch.summary(),
                dev.name,
            )


# ---- bad files ------------------------------------------------------------------------------------


def test_corrupt_file_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07this is not a protobuf \xff\xfe" * 10)
    with pytest.raises(InputError, match="broken.onnx"):
        graph_from_onnx(bad)
    res = run_cli("memory", str(bad), "--device", DEVICE)
    assert_one_line_error(res, "broken.onnx", "not a valid ONNX model")


def test_unsupported_operator_is_named_exit_2(tmp_path):
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Einsum", ["r"], ["t"], name="swap_axes", equation="bij->bji"),
        helper.make_node("Flatten", ["t"], ["y"], name="flat"),
    ]
    path = _save(tmp_path, nodes, [_vi("x", ["N", 2, 8])], [_vi("y", ["N", 16])], [], name="es.onnx")
    with pytest.raises(InputError, match="unsupported operator Einsum .*swap_axes"):
        graph_from_onnx(path)
    res = run_cli("memory", path, "--device", DEVICE)
    assert_one_line_error(res, "es.onnx", "unsupported operator Einsum", "'swap_axes'")


def test_a_tf_converted_nhwc_model_is_read(tmp_path):
    """What tf2onnx makes of an int8 TFLite CNN, in float: NHWC input transposed to NCHW, an explicit Pad
    for "same" padding, a BatchNormalization that nothing folded, the transpose back before a Flatten in
    NHWC order, a MatMul without bias. Transposes and pads are copies with buffers of their own."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], name="to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Pad", ["t", "pads"], ["p"], name="pad", mode="constant"),
        helper.make_node("Conv", ["p", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("BatchNormalization", ["r", "g", "beta", "mu", "var"], ["bn"], name="bn"),
        helper.make_node("Transpose", ["bn"], ["back"], name="to_nhwc", perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["back", "shape"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "wf"], ["z"], name="fc"),
        helper.make_node("Softmax", ["z"], ["probs"], name="softmax", axis=1),
    ]
    inits = [
        numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64), "pads"),
        _init("w", (4, 3, 3, 3)),
        _init("b", (4,)),
        _init("g", (4,), fill=1.0),
        _init("beta", (4,), fill=0.0),
        _init("mu", (4,), fill=0.0),
        _init("var", (4,), fill=1.0),
        numpy_helper.from_array(np.array([-1, 256], dtype=np.int64), "shape"),
        _init("wf", (256, 5)),
    ]
    path = _save(tmp_path, nodes, [_vi("x", ["N", 8, 8, 3])], [_vi("probs", ["N", 5])], inits, name="tf.onnx")
    g = graph_from_onnx(path)
    kinds = [op.kind for op in g.ops]
    assert kinds == ["transpose", "pad", "conv2d", "mul", "transpose", "reshape", "linear", "activation"]
    shapes = {op.kind: g.tensors[op.outputs[0]].shape for op in g.ops[:2]}
    assert shapes == {"transpose": (3, 8, 8), "pad": (3, 10, 10)}
    bn = g.ops[3]
    assert bn.weights == 8 and bn.attrs["onnx_op"] == "BatchNormalization"  # scale + shift per channel
    assert g.ops[6].weights == 256 * 5 and not g.ops[6].bias
    r = evaluate(g, get_device(DEVICE))
    # float32: the input (768 B) and its transposed copy (768 B) are alive together, then that copy and
    # the padded tensor (1,200 B): neither is a view of the other
    assert r.peak_sram_bytes >= 768 + 1200
    res = run_cli("memory", path, "--device", DEVICE, "--json")
    assert res.code == 0, res.stderr


def test_a_transpose_of_size_one_axes_is_a_view(tmp_path):
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], name="swap", perm=[0, 2, 1]),
        helper.make_node("Flatten", ["t"], ["y"], name="flat"),
    ]
    path = _save(tmp_path, nodes, [_vi("x", ["N", 1, 16])], [_vi("y", ["N", 16])], [], name="v.onnx")
    g = graph_from_onnx(path)
    assert [op.kind for op in g.ops] == ["reshape", "flatten"]


def test_a_transpose_of_the_batch_axis_is_refused(tmp_path):
    nodes = [helper.make_node("Transpose", ["x"], ["y"], name="swap", perm=[1, 0, 2])]
    path = _save(tmp_path, nodes, [_vi("x", [2, 3, 16])], [_vi("y", [3, 2, 16])], [], name="b.onnx")
    with pytest.raises(InputError, match="swap.*moves the batch axis"):
        graph_from_onnx(path)


def test_custom_domain_operator_is_named(tmp_path):
    """A QONNX file (Quant nodes in the qonnx domain) is not read: the message says so."""
    node = helper.make_node(
        "Quant", ["x", "s", "z", "b"], ["y"], name="q0", domain="qonnx.custom_op.general", narrow=0, signed=1
    )
    g = helper.make_graph(
        [node],
        "q",
        [_vi("x", ["N", 4])],
        [_vi("y", ["N", 4])],
        [_init("s", (), fill=0.1), _init("z", (), fill=0.0), _init("b", (), fill=8.0)],
    )
    model = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)]
    )
    path = tmp_path / "q.qonnx.onnx"
    onnx.save(model, str(path))
    with pytest.raises(
        InputError, match=r"unsupported operator Quant \(domain qonnx.custom_op.general.*QCDQ"
    ):
        graph_from_onnx(path)


def test_cli_memory_reads_float_onnx(float_1d):
    import json

    res = run_cli("memory", float_1d, "--device", DEVICE, "--json")
    assert res.code == 0, res.stderr
    d = json.loads(res.stdout)
    assert (d["params"], d["macs"], d["peak_sram_bytes"], d["arena_bytes"]) == (127, 480, 392, 392)
