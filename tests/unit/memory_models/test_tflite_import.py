""".tflite -> OpGraph (`memory_models.tflite_import`) and the `tflm` runtime profile
(`memory_models.tflm`), on flatbuffers written by `tests.fixtures.tflite_models` (no TensorFlow).

Every figure is worked out by hand in the comments: weights, peak SRAM, op count, TFLM's plan.
"""

from __future__ import annotations

import json
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memory_models import OpGraph, evaluate, get_device
from memory_models.devices import load_device_file, parse_target
from memory_models.errors import InputError
from memory_models.tflite_import import graph_from_tflite
from memory_models.tflm import TflmSizes, greedy_plan, tflm_arena
from tests.fixtures import assert_one_line_error, run_cli_here
from tests.fixtures.tflite_models import TfliteBuilder, small_cnn


@pytest.fixture
def cnn(tmp_path):
    return small_cnn().write(tmp_path / "cnn.tflite")


def test_small_cnn_figures_worked_out_by_hand(cnn):
    g = graph_from_tflite(cnn)
    assert [op.kind for op in g.ops] == [
        "conv2d",
        "maxpool2d",
        "depthwise_conv2d",
        "reshape",
        "linear",
        "activation",
    ]
    conv, _, dw, _, fc, sm = g.ops
    assert (conv.weights, conv.bias, conv.quant, conv.scales) == (216, 8, "per_channel", 8)
    assert (dw.weights, dw.quant, dw.scales) == (72, "per_channel", 8)
    assert (fc.weights, fc.bias, fc.quant, fc.scales, fc.macs) == (512, 4, "per_tensor", 1, 512)
    assert conv.attrs["activation"] == "relu" and sm.attrs["function"] == "softmax"
    assert g.tensors["input"].shape == (3, 8, 8)  # NHWC (1, 8, 8, 3) -> per-sample CHW
    assert g.tensors["conv"].bits == 8
    r = evaluate(g, get_device("stm32f446re"))
    assert r.flash.weights == 216 + 72 + 512
    assert r.flash.biases == 4 * (8 + 8 + 4)
    # peak at the conv: input 192 + output 512 + im2col column 3*9 = 27 -> 28 (4-byte aligned)
    assert r.peak_sram_bytes == 192 + 512 + 28
    assert len(r.schedule) == 6


def test_tflm_plan_worked_out_by_hand(cnn):
    # 16-byte buffers: input 192 [0,1], conv 512 [1,2], pool 128 [2,3], dw 128 [3,4], flat 128
    # [4,5] (TFLM copies a reshape), logits 16 [5,6], probs 16 [6,6]. Greedy, largest first, ties to
    # the higher tensor index: conv@0, input@512, flat@0, dw@128, pool@512, logits@128, probs@0.
    a = tflm_arena(graph_from_tflite(cnn), TflmSizes.host64())
    assert a.offsets == {
        "input": 512,
        "conv": 0,
        "pool": 512,
        "dw": 128,
        "flat": 0,
        "logits": 128,
        "probs": 0,
    }
    assert a.planned_bytes == 704
    assert a.tail["eval_tensors"] == 24 * 14  # every tensor of the file, constants included
    assert a.tail["nodes"] == 64 * 6
    assert a.tail["per_channel_quant"] == 2 * (2 * 32)  # conv and depthwise: 8 int32 mults + shifts
    assert a.arena_bytes == a.head_bytes + a.tail_bytes


def test_greedy_plan_ties_go_to_the_later_buffer():
    # two equal buffers alive together: the later one is placed first, at 0
    offsets, total = greedy_plan([32, 32], [0, 0], [1, 1])
    assert offsets == [32, 0] and total == 64
    # a small buffer fills the gap that lifetimes leave below a big one
    offsets, total = greedy_plan([64, 16, 48], [0, 2, 2], [1, 3, 3])
    assert offsets == [0, 48, 0] and total == 64


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 8), st.integers(0, 6), st.integers(0, 3)), min_size=1, max_size=9))
def test_greedy_plan_never_overlaps_live_buffers(spec):
    sizes = [16 * s for s, _, _ in spec]
    first = [f for _, f, _ in spec]
    last = [f + d for _, f, d in spec]
    off, total = greedy_plan(sizes, first, last)
    for i in range(len(sizes)):
        for j in range(i):
            if first[i] <= last[j] and first[j] <= last[i]:
                assert off[i] + sizes[i] <= off[j] or off[j] + sizes[j] <= off[i]
    assert total == max(o + s for o, s in zip(off, sizes))


def test_element_types_and_per_channel(tmp_path):
    m = TfliteBuilder()
    x = m.tensor("x", (1, 10), "uint8")
    q = m.tensor("q", (1, 10), "int16")
    w = m.tensor("w", (6, 10), "int8", const=True, scales=6)
    y = m.tensor("y", (1, 6), "int16")
    z = m.tensor("z", (1, 6), "float32")
    m.op("QUANTIZE", [x], [q])
    m.op("FULLY_CONNECTED", [q, w], [y])
    m.op("DEQUANTIZE", [y], [z])
    m.inputs, m.outputs = [x], [z]
    g = graph_from_tflite(m.write(tmp_path / "t.tflite"))
    assert [g.tensors[n].bits for n in ("x", "q", "y", "z")] == [8, 16, 16, 32]
    assert [op.attrs.get("function") for op in g.ops] == ["quantize", None, "dequantize"]
    fc = g.ops[1]
    assert (fc.quant, fc.scales, fc.bias) == ("per_channel", 6, 0)
    dev = get_device("stm32f446re")
    r = evaluate(g, dev)
    assert r.flash.weights == 60
    # 6 requantization pairs for the dense layer, 1 each for quantize and dequantize, at the device
    # runtime's bytes a pair (m2nas-c on Cortex-M: int32 multiplier + int8 shift)
    assert r.flash.quant_params == dev.runtime.requant_param_bytes * (6 + 1 + 1)


def test_variable_tensor_is_persistent_state(tmp_path):
    m = TfliteBuilder()
    x = m.tensor("x", (1, 100))
    s = m.tensor("memory", (1, 12), variable=True)
    a = m.tensor("a", (1, 100))
    y = m.tensor("y", (1, 100))
    m.op("ADD", [x, s], [a])
    m.op("TANH", [a], [y])
    m.inputs, m.outputs = [x], [y]
    path = m.write(tmp_path / "v.tflite")
    g = graph_from_tflite(path)
    assert g.state == ["memory"] and "memory" in g.inputs
    assert OpGraph.from_dict(json.loads(g.to_json())).state == ["memory"]
    r = evaluate(g, get_device("stm32f446re"))
    # at TANH: a + y + the state, which never dies (it would be dead after ADD otherwise)
    assert r.peak_sram_bytes == 12 + 100 + 100
    assert r.buffers.pinned[r.buffers.tensor_info["memory"][0]]
    t = tflm_arena(g)
    assert t.tail["variables"] == 16  # TFLM keeps variables in its tail, 16-aligned
    assert "memory" not in t.offsets


def test_not_a_flatbuffer(tmp_path):
    p = tmp_path / "junk.tflite"
    p.write_bytes(b"hello, this is not a model")
    with pytest.raises(InputError, match="not a TFLite flatbuffer"):
        graph_from_tflite(p)


@pytest.mark.parametrize("keep", [12, 40, 200, 600])
def test_truncated_file_is_one_line(cnn, tmp_path, keep):
    data = cnn.read_bytes()
    p = tmp_path / "cut.tflite"
    p.write_bytes(data[:keep])
    with pytest.raises(InputError) as e:
        graph_from_tflite(p)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


def test_unsupported_op_is_named(tmp_path):
    m = TfliteBuilder()
    x = m.tensor("x", (1, 4))
    y = m.tensor("y", (1, 4))
    m.op("FLOOR", [x], [y])
    m.inputs, m.outputs = [x], [y]
    path = m.write(tmp_path / "floor.tflite")
    with pytest.raises(InputError, match="unsupported operator FLOOR"):
        graph_from_tflite(path)
    assert_one_line_error(run_cli_here("memory", path, "--device", "f446"), "unsupported operator FLOOR")


def test_cli_reads_tflite_and_prints_both_runtimes(cnn):
    r = run_cli_here("memory", cnn, "--device", "f446", "--json")
    assert r.code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["peak_sram_bytes"] == 732 and d["flash"]["weights"] == 800
    assert set(d["runtimes"]) == {"m2nas-c", "tflm"}
    assert d["runtime"] == "m2nas-c"
    text = run_cli_here("memory", cnn, "--device", "f446")
    assert "TFLM" in text.stdout and "m2nas-c needs" in text.stdout
    bad = run_cli_here("memory", cnn, "--device", "f446", "--target", "all=sram,runtime=tvm")
    assert_one_line_error(bad, "runtime", "tvm")


def test_target_or_device_selects_tflm(cnn, tmp_path):
    dev = get_device("stm32f446re")
    assert parse_target("weights=flash,activations=sram,runtime=tflm", dev)["runtime"] == "tflm"
    g = graph_from_tflite(cnn)
    r = evaluate(g, dev, "weights=flash,activations=sram,runtime=tflm")
    assert r.runtime == "tflm"
    assert r.sram_bytes == r.tflm.arena_bytes + dev.runtime.ram_bytes
    assert r.level("sram").used_bytes == r.sram_bytes
    assert r.tflm.sizes == "tflm-cortex-m"  # a 32-bit MCU build
    # a device file can make TFLM its runtime (and say its build's pointer width)
    text = resources.files("memory_models").joinpath("devices/stm32f446re.toml").read_text()
    text = text.replace('name = "m2nas-c"', 'name = "tflm"\nprofile = "tflm"\npointer_bytes = 8')
    text = text.replace('name = "stm32f446re"', 'name = "f446-tflm"').replace("aliases = [", "aliases = [] #")
    p = tmp_path / "d.toml"
    p.write_text(text)
    d = load_device_file(p)[0]
    r2 = evaluate(g, d)
    assert r2.runtime == "tflm" and r2.tflm.sizes == "tflm-host64"
    assert r2.sram_bytes == r2.tflm.arena_bytes + d.runtime.ram_bytes
