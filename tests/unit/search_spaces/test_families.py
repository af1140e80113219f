"""The hand-designed families (search_spaces/families.py): their shapes, and scaling one to a budget."""

from __future__ import annotations

import pytest

from memory_models import evaluate
from memory_models.devices import catalogue, parse_target
from search_spaces import graph
from search_spaces.families import WEIGHT_BITS, WIDTHS, Family, family, member, scaled_to

WATCH = {"acc": (3, 100), "gyro": (3, 100)}
AVDIGITS = {"image": (1, 8, 8), "audio": (1, 40, 64)}


OPS = {Family.TINYM2NET: ["conv", "dwsep", "dwsep"], Family.LATECONV: ["conv", "conv"]}


@pytest.mark.parametrize("name", list(Family))
@pytest.mark.parametrize("inputs", [WATCH, AVDIGITS])
def test_members_are_per_modality_branches_fused_late(inputs, name):
    members = family(name, inputs, 7)
    assert len(members) == len(WIDTHS) * len(WEIGHT_BITS)
    for arch in members:
        width, bits = arch.used[0].blocks[0].channels, arch.head.weight_bits[0]
        assert arch.fused and [b.modality for b in arch.used] == list(inputs)
        assert arch.fusion.point == "late" and arch.fusion.op == "concat" and len(arch.head.hidden) == 1
        for b in arch.used:
            assert [blk.op for blk in b.blocks] == OPS[name]
            assert [blk.channels for blk in b.blocks] == [width] + [2 * width] * (len(OPS[name]) - 1)
            assert b.blocks[0].weight_bits == [8] and arch.head.weight_bits[-1] == 8  # stem, classifier
            assert all(set(blk.weight_bits) == {bits} for blk in b.blocks[1:])
        g = graph(arch)  # every member is a valid graph of the right size
        assert g.ops[-1].bias == 7  # the classifier has one output per class
    # flash grows with the width at fixed bits
    sizes = [sum(op.weights for op in graph(member(name, inputs, 7, w, 8)).ops) for w in WIDTHS]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)


def test_lateconv_at_width_16_w4_is_the_benches_fixed_student():
    """The training and distillation benches measure this member; their figures are the family's."""
    a = member("lateconv", WATCH, 7, 16, 4)
    for b in a.used:
        assert [(k.op, k.kernel, k.channels, k.pool, k.weight_bits) for k in b.blocks] == [
            ("conv", 5, 16, 2, [8]),
            ("conv", 5, 32, 2, [4]),
        ]
    assert a.head.hidden == [16] and a.head.weight_bits == [4, 8]


def test_unknown_family_is_named():
    with pytest.raises(ValueError, match="unknown family 'resnet'.*tinym2net, lateconv"):
        family("resnet", WATCH, 7)


def test_scaled_to_picks_the_widest_member_that_fits_at_w8_and_w4():
    dev = catalogue()["stm32f446re"]
    target = parse_target({"weights": "flash", "activations": "sram"}, dev, "t")
    members = family("tinym2net", WATCH, 7)
    small = dev.model_copy(
        update={
            "levels": [
                lv.model_copy(update={"capacity_bytes": min(lv.capacity_bytes, 32 * 1024)})
                for lv in dev.levels
            ]
        }
    )

    def fits(a):
        return evaluate(graph(a), small, target).fits

    picked = scaled_to(members, fits)
    assert [a.head.weight_bits[0] for a in picked] == [8, 4]
    for a in picked:
        bits, width = a.head.weight_bits[0], a.used[0].blocks[0].channels
        assert fits(a)
        wider = [m for m in members if m.head.weight_bits[0] == bits and m.used[0].blocks[0].channels > width]
        assert not any(fits(m) for m in wider)
    assert scaled_to(members, lambda a: False) == []
    assert [a.head.weight_bits[0] for a in scaled_to(members, fits, bits=(2,))] == [2]
