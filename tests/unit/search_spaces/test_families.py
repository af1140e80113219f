"""The seed paper's family (search_spaces/families.py): its shape, and scaling it to a budget."""

from __future__ import annotations

import pytest

from memory_models import evaluate
from memory_models.devices import catalogue, parse_target
from search_spaces import graph
from search_spaces.families import WEIGHT_BITS, WIDTHS, family, scaled_to, tinym2net

WATCH = {"acc": (3, 100), "gyro": (3, 100)}
AVDIGITS = {"image": (1, 8, 8), "audio": (1, 40, 64)}


@pytest.mark.parametrize("inputs", [WATCH, AVDIGITS])
def test_members_are_conv_then_two_depthwise_separable_blocks_per_modality(inputs):
    members = family("tinym2net", inputs, 7)
    assert len(members) == len(WIDTHS) * len(WEIGHT_BITS)
    for arch in members:
        assert arch.fused and [b.modality for b in arch.used] == list(inputs)
        assert arch.fusion.point == "late" and arch.fusion.op == "concat" and len(arch.head.hidden) == 1
        for b in arch.used:
            assert [blk.op for blk in b.blocks] == ["conv", "dwsep", "dwsep"]
            assert b.blocks[0].weight_bits == [8] and arch.head.weight_bits[-1] == 8  # stem, classifier
        g = graph(arch)  # every member is a valid graph of the right size
        assert g.ops[-1].bias == 7  # the classifier has one output per class
    # flash grows with the width at fixed bits
    sizes = [sum(op.weights for op in graph(tinym2net(inputs, 7, w, 8)).ops) for w in WIDTHS]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)


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
