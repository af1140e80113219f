"""The analytical memory model: hand-worked cases (arithmetic in the comments) and properties."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings

from memory_models import InputError, Op, OpGraph, Tensor, evaluate, get_device
from memory_models.arena import overlaps, plan_arena
from memory_models.buffers import compile_buffers
from memory_models.latency import coefficient
from memory_models.schedule import best_schedule, peak_of_order
from tests.fixtures.graphs import all_topological_orders, late_fusion, random_dags, two_branch_graph

STM = get_device("stm32f446re")


def device_with(alignment: int = 4, im2col: int = 0, base=STM):
    """The STM32F446RE with a chosen tensor alignment and no im2col scratch unless asked."""
    runtime = base.runtime.model_copy(update={"tensor_alignment": alignment, "im2col_columns": im2col})
    return base.model_copy(update={"runtime": runtime})


def chain_graph() -> OpGraph:
    t = {
        "x": Tensor("x", (1, 32, 32), 8),  # 1024 B
        "c1": Tensor("c1", (8, 32, 32), 8),  # 8192 B
        "c2": Tensor("c2", (16, 16, 16), 8),  # 4096 B
        "gap": Tensor("gap", (16,), 8),  # 16 B
        "y": Tensor("y", (10,), 8),  # 10 B -> 12 B aligned to 4
    }
    ops = [
        Op(
            "conv1",
            "conv2d",
            ("x",),
            ("c1",),
            weights=72,
            bias=8,
            scales=8,
            macs=72 * 1024,
            attrs={"kernel": [3, 3]},
        ),
        Op(
            "conv2",
            "conv2d",
            ("c1",),
            ("c2",),
            weights=1152,
            bias=16,
            scales=16,
            macs=1152 * 256,
            attrs={"kernel": [3, 3], "stride": [2, 2]},
        ),
        Op("pool", "global_avgpool", ("c2",), ("gap",)),
        Op("fc", "linear", ("gap",), ("y",), weights=160, bias=10, scales=10, macs=160),
    ]
    return OpGraph(t, ops, ["x"], ["y"], name="chain").validate()


def test_plain_chain_peak_is_max_of_input_plus_output():
    r = evaluate(chain_graph(), device_with(im2col=0))
    # conv1: 1024 + 8192 = 9216; conv2: 8192 + 4096 = 12288; pool: 4096 + 16; fc: 16 + 12.
    assert r.peak_sram_bytes == 12288
    assert r.per_layer_peak_bytes == 12288
    # Greedy by size: c1 at 0, c2 (alive with c1 at conv2) at 8192, x (alive with c1) at 8192 too
    # (x and c2 never live together), gap and y fit below: the arena equals the peak.
    assert r.arena_bytes == 12288
    assert r.schedule == ["conv1", "conv2", "pool", "fc"]
    assert r.schedule_.method == "forced"


def test_im2col_scratch_is_counted():
    r = evaluate(chain_graph(), device_with(im2col=1))
    # One int8 column of C_in x 3 x 3: conv1 9 B -> 12 aligned, conv2 72 B. At conv2:
    # 8192 + 4096 + 72 = 12360 > 12288.
    assert r.peak_sram_bytes == 12360
    names = {row["buffer"]: row for row in r.arena_table()}
    assert names["conv2.scratch"]["bytes"] == 72 and names["conv1.scratch"]["bytes"] == 12
    assert names["conv2.scratch"]["first_step"] == names["conv2.scratch"]["last_step"] == 1


def test_late_fusion_best_order_beats_listed_order_and_the_formula():
    r = evaluate(two_branch_graph(), device_with(im2col=0))
    # Listed order, at img_conv: img 256 + a1 2048 + mfcc 64 (waiting its turn) = 2368.
    assert r.naive_peak_sram_bytes == 2368
    # Audio first: aud_conv 256 + 64 + 256 = 576, then img_conv holds img 256 + a1 2048 + b2 4 = 2308.
    assert r.peak_sram_bytes == 2308
    assert r.schedule[:2] == ["aud_conv", "aud_pool"]
    # The per-layer formula says max(in + out) = 256 + 2048 = 2304: below even the best order.
    assert r.per_layer_peak_bytes == 2304 < r.peak_sram_bytes
    assert r.schedule_.method == "exact"


def test_sub_byte_tensors_and_weights_are_packed():
    t = {"x": Tensor("x", (3, 5, 5), 4), "y": Tensor("y", (5, 5, 5), 2)}
    op = Op(
        "c",
        "conv2d",
        ("x",),
        ("y",),
        weights=135,
        weight_bits=4,
        bias=5,
        scales=5,
        macs=135 * 25,
        attrs={"kernel": [3, 3]},
    )
    g = OpGraph(t, [op], ["x"], ["y"]).validate()
    assert t["x"].nbytes == 38  # 75 x 4 bits = 300 bits -> 37.5 -> 38 B
    assert t["y"].nbytes == 32  # 125 x 2 bits = 250 bits -> 31.25 -> 32 B
    r = evaluate(g, device_with(alignment=4, im2col=0))
    pair = STM.runtime.requant_param_bytes  # m2nas-c: int32 multiplier + int8 shift
    assert r.peak_sram_bytes == 40 + 32  # 38 -> 40 aligned, 32 stays
    assert r.flash.weights == 68  # 135 x 4 bits = 540 bits = 67.5 -> 68 B
    assert r.flash.biases == 20  # 5 int32
    assert r.flash.quant_params == 5 * pair  # per-channel (multiplier, shift) pairs
    op2 = Op(
        "c",
        "conv2d",
        ("x",),
        ("y",),
        weights=135,
        weight_bits=2,
        bias=5,
        quant="per_tensor",
        macs=1,
        attrs={"kernel": [3, 3]},
    )
    r2 = evaluate(OpGraph(t, [op2], ["x"], ["y"]).validate(), device_with(im2col=0))
    assert r2.flash.weights == 34  # 270 bits -> 33.75 -> 34 B
    assert r2.flash.quant_params == pair  # one pair per tensor


def test_alignment_rounds_every_buffer_and_offset():
    t = {"x": Tensor("x", (10,), 8), "h": Tensor("h", (6,), 8), "y": Tensor("y", (3,), 8)}
    ops = [
        Op("fc1", "linear", ("x",), ("h",), weights=60, bias=6, macs=60),
        Op("fc2", "linear", ("h",), ("y",), weights=18, bias=3, macs=18),
    ]
    g = OpGraph(t, ops, ["x"], ["y"]).validate()
    assert evaluate(g, device_with(alignment=1)).peak_sram_bytes == 16  # 10 + 6
    assert evaluate(g, device_with(alignment=4)).peak_sram_bytes == 12 + 8  # 10 -> 12, 6 -> 8
    r16 = evaluate(g, device_with(alignment=16))
    assert r16.peak_sram_bytes == 32  # 16 + 16
    assert all(row["offset"] % 16 == 0 and row["bytes"] % 16 == 0 for row in r16.arena_table())


def test_views_share_their_source_buffer():
    t = {"x": Tensor("x", (4, 5), 8), "f": Tensor("f", (20,), 8), "y": Tensor("y", (2,), 8)}
    ops = [
        Op("flat", "flatten", ("x",), ("f",)),
        Op("fc", "linear", ("f",), ("y",), weights=40, bias=2, macs=40),
    ]
    r = evaluate(OpGraph(t, ops, ["x"], ["y"]).validate(), device_with())
    assert r.peak_sram_bytes == 20 + 4  # no copy for the flatten
    assert [row["buffer"] for row in r.arena_table()] == ["x", "y"]


def test_level_fit_margins_and_reason():
    gap8 = get_device("gap8")
    r = evaluate(chain_graph(), gap8, {"all": "cluster_L1"})
    l1 = r.level("cluster_L1")
    assert l1.holds == ["weights", "activations"]
    assert l1.used_bytes == r.flash.model_bytes + r.arena_bytes + gap8.runtime.ram_bytes
    assert r.level("L2").holds == ["code"] and r.level("L2").used_bytes == r.flash.code_bytes
    assert r.fits and l1.margin_bytes == 65536 - l1.used_bytes
    tiny = gap8.model_copy(
        update={
            "levels": [
                lv.model_copy(update={"capacity_bytes": 4096}) if lv.name == "cluster_L1" else lv
                for lv in gap8.levels
            ]
        }
    )
    r2 = evaluate(chain_graph(), tiny, "all=cluster_L1")
    assert not r2.fits
    assert r2.margins()["cluster_L1"] == 4096 - r2.level("cluster_L1").used_bytes < 0
    assert r2.reason.startswith("cluster_L1 needs") and "over" in r2.reason


@pytest.mark.parametrize(
    "target, message",
    [
        ({"weights": "flash"}, "says nothing about activations"),
        ({"all": "flash"}, "read-only"),
        ({"weights": "flash", "activations": "dram"}, "'dram' is not a memory level of stm32f446re"),
        ({"weigths": "flash", "activations": "sram"}, "unknown key 'weigths'"),
        ("weights:flash", "expected KEY=LEVEL pairs"),
    ],
)
def test_bad_targets_are_input_errors(target, message):
    with pytest.raises(InputError, match=message):
        evaluate(chain_graph(), STM, target)


def test_latency_and_energy_estimates_by_hand():
    t = {"x": Tensor("x", (100,), 8), "y": Tensor("y", (10,), 8)}
    g = OpGraph(
        t,
        [Op("fc", "linear", ("x",), ("y",), weights=1000, weight_bits=4, bias=10, scales=10, macs=1000)],
        ["x"],
        ["y"],
    ).validate()
    assert STM.runtime.requant_param_bytes == 5
    energy = lambda cycles: (cycles * 330.0 + 590 * 15.0 + 110 * 2.0) * 1e-6  # noqa: E731
    # The STM32F446RE runs the m2nas C kernels, whose cost was measured: instructions of the terms
    # (1000 MACs of a 4-bit pointwise / linear layer on byte inputs, a 100-element column, 10
    # outputs, one call; 100 input elements loaded, one inference) x the file's CPI / 180 MHz.
    cost = STM.runtime.cost
    c = lambda term: coefficient(cost.instructions, term)  # noqa: E731  (a term or its nearest prefix)
    instr = (
        1000 * c("mac:pw:w4:x8") + 100 * c("col:pw:x8") + 10 * c("out:pw:y8") + c("op:pw")
        + 100 * c("el:load") + c("inference")
    )  # fmt: skip
    r = evaluate(g, STM)
    cycles = instr * cost.cycles_per_instruction
    assert r.latency_ms_est == pytest.approx(cycles / 180e3)
    # energy: those cycles at 330 pJ, weights 500 B + bias 40 + 10 pairs x 5 = 590 B of flash at
    # 15 pJ/B, activations 100 + 10 B of SRAM at 2 pJ/B
    assert r.energy_uj_est == pytest.approx(energy(cycles))
    # TFLite Micro's kernels were not measured: the first-order estimate. Compute 1000 MACs / 0.45
    # (4-bit rate); 590 B from flash at 2.7 B/cycle; activations 110 B at 4 B/cycle; 150 cycles of
    # op overhead.
    r = evaluate(g, STM, {"weights": "flash", "activations": "sram", "runtime": "tflm"})
    cycles = 1000 / 0.45 + 590 / 2.7 + 110 / 4.0 + 150
    assert r.latency_ms_est == pytest.approx(cycles / 180e3)
    assert r.energy_uj_est == pytest.approx(energy(cycles))
    # the same when the device file itself selects TFLite Micro
    tflm = STM.model_copy(update={"runtime": STM.runtime.model_copy(update={"profile": "tflm"})})
    assert evaluate(g, tflm).latency_ms_est == pytest.approx(cycles / 180e3)
    assert "estimate" in r.to_dict()["estimates"]


def test_report_json_has_the_contract_fields():
    d = evaluate(two_branch_graph(), STM).to_dict()
    for key in (
        "flash_bytes",
        "peak_sram_bytes",
        "arena_bytes",
        "schedule",
        "fits",
        "levels",
        "latency_ms_est",
        "energy_uj_est",
    ):
        assert key in d
    json.dumps(d)


def test_opgraph_json_round_trip_is_exact():
    g = two_branch_graph()
    again = OpGraph.from_json(g.to_json())
    assert again == g
    assert again.to_json() == g.to_json()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["ops"][0].update(kind="conv3d"), "ops[0] (img_conv).kind: unknown op kind 'conv3d'"),
        (lambda d: d["ops"][1].update(inputs=["nope"]), "ops[1] (img_pool).inputs[0]: unknown tensor 'nope'"),
        (lambda d: d["ops"].reverse(), "is used before it is produced"),
        (lambda d: d["tensors"][0].update(shape=[1, 0, 16]), "tensors['img'].shape"),
        (lambda d: d["ops"][0].update(weights=-1), "ops[0] (img_conv).weights"),
        (lambda d: d["ops"][0].update(colour="red"), "ops[0]: unknown field 'colour'"),
        (lambda d: d.update(outputs=[]), "outputs: a graph needs at least one output"),
        (lambda d: d.update(version=9), "version"),
    ],
)
def test_malformed_graphs_name_the_field(mutate, message):
    d = json.loads(two_branch_graph().to_json())
    mutate(d)
    with pytest.raises(
        InputError,
        match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]"),
    ):
        OpGraph.from_dict(d, "g.json")


# ---- properties ---------------------------------------------------------------------------------

DEVICE = device_with(im2col=1)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(random_dags(max_ops=8))
def test_scheduler_matches_brute_force_over_all_topological_orders(g):
    bufs = compile_buffers(g, DEVICE)
    s = best_schedule(bufs)
    assert sorted(s.order) == list(range(bufs.n_ops))
    valid = {tuple(o) for o in all_topological_orders(bufs.op_preds)}
    assert tuple(s.order) in valid
    assert peak_of_order(bufs, s.order) == s.peak
    assert s.peak == min(peak_of_order(bufs, list(o)) for o in valid)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(random_dags(max_ops=14, max_inputs=4))
def test_arena_plan_never_overlaps_live_buffers(g):
    bufs = compile_buffers(g, DEVICE)
    s = best_schedule(bufs)
    plan = plan_arena(bufs, s.order)
    assert overlaps(plan) == []
    assert plan.arena_bytes >= s.peak  # no allocator beats the live-bytes peak
    assert plan.arena_bytes == max(
        o + z for o, z in zip(plan.offset, plan.size)
    )  # tight: nothing past the last buffer
    assert all(o % bufs.alignment == 0 for o in plan.offset)


def test_overlap_check_catches_a_bad_plan():
    bufs = compile_buffers(two_branch_graph(), DEVICE)
    s = best_schedule(bufs)
    plan = plan_arena(bufs, s.order)
    a1 = bufs.names.index("a1")
    img = bufs.names.index("img")
    plan.offset[img] = plan.offset[a1]  # img and a1 are both alive during img_conv
    assert (img, a1) in overlaps(plan) or (a1, img) in overlaps(plan)


def test_exact_on_a_realistic_three_branch_net():
    g = late_fusion(
        {
            "image": ((1, 32, 32), [("conv", 8, 3, 2), ("dw", 16, 3, 2)]),
            "audio": ((1, 20, 16), [("conv", 8, 3, 1), ("dw", 16, 3, 2)]),
            "imu": ((6, 50), [("conv", 16, 5, 2)]),
        },
        classes=5,
        hidden=16,
    )
    bufs = compile_buffers(g, DEVICE)
    s = best_schedule(bufs)
    assert s.method == "exact"
    orders = list(all_topological_orders(bufs.op_preds))
    assert len(orders) > 1000  # many interleavings, one optimum
    assert s.peak == min(peak_of_order(bufs, o) for o in orders)


def test_many_parallel_branches_fall_back_to_the_stated_heuristic():
    branches = {
        f"s{i}": ((2, 40), [("conv", 4, 3, 1), ("conv", 8, 3, 2), ("conv", 4, 3, 1)]) for i in range(12)
    }
    g = late_fusion(branches, classes=3)
    bufs = compile_buffers(g, DEVICE)
    s = best_schedule(bufs, state_limit=500)
    assert s.method.startswith("heuristic")
    assert s.peak == peak_of_order(bufs, s.order) <= peak_of_order(bufs, list(range(bufs.n_ops)))


def test_op_kind_groups_are_one_vocabulary():
    """Every group names known kinds; the graph validator, the C generator and the ONNX reader share them."""
    from memory_models.ops import GroupOp, OpKind
    from nas.export.c import emit

    assert {k.value for k in OpKind} == GroupOp.ALL
    for name in ("CONV", "WEIGHTED", "IM2COL", "POOL", "JOIN", "RESCALE", "BITS_PRESERVING", "C_SUPPORTED"):
        assert getattr(GroupOp, name) <= GroupOp.ALL, name
    assert emit._SUPPORTED is GroupOp.C_SUPPORTED
    assert OpKind.CONV1D == "conv1d" and "conv1d" in GroupOp.IM2COL


def test_kernel_units_are_linked_once_with_their_bit_width_variants():
    """A kernel shared by several op kinds counts once; the dot product of a weight bit-width (and its
    call sites in the kernels, the `a+b` entries) only when some dense layer has that width."""
    rt = STM.runtime
    k = rt.kernel_flash_bytes
    conv_pw = k["conv"] + k["pwconv"]
    only8 = rt.kernels_bytes({"conv1d", "pointwise_conv1d", "linear"}, {"conv1d@8", "linear@8"})
    assert only8 == conv_pw + k["dot8"] + k["conv+dot8"] + k["pwconv+dot8"]
    with4 = rt.kernels_bytes({"conv1d", "linear"}, {"conv1d@4", "linear@8"})
    low = k["dotlow"] + k["dot4"] + k["conv+dotlow"] + k["pwconv+dotlow"] + k["conv+dot4"] + k["pwconv+dot4"]
    assert with4 == only8 + low
    # a depthwise layer's bit-width links no dot product; a kind without a unit of its own: default
    assert rt.kernels_bytes({"depthwise_conv2d"}, {"depthwise_conv2d@2"}) == k["dwconv"]
    assert rt.kernels_bytes({"resize"}) == k["default"]
