"""Which family members a `[[seed_archs]]` entry seeds: the widest that fit by default, or the listed
widths and weight bit-widths (issue 14: small members are cheap to train and sit where the front is
thin)."""

from __future__ import annotations

from pathlib import Path

import pytest

from memory_models import evaluate
from memory_models.errors import InputError
from nas.config.study import load_study
from nas.engine.warm_start import seed_archs
from search_spaces import graph
from tests.fixtures import write_smoke_study

ROOMY = 'limits = { flash = "64K" }', 'limits = { sram = "32K" }'


def _study(tmp_path, entry: str, roomy: bool = True) -> Path:
    path = Path(write_smoke_study(tmp_path, trials=2, extra="\n[[seed_archs]]\n" + entry + "\n"))
    text = path.read_text()
    if roomy:
        text = text.replace('limits = { flash = "6K" }', ROOMY[0]).replace(
            'limits = { sram = "1700" }', ROOMY[1]
        )
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "name, ops", [("tinym2net", ["conv", "dwsep", "dwsep"]), ("lateconv", ["conv", "conv"])]
)
def test_listed_widths_and_bits_pick_those_members(tmp_path, name, ops):
    study = load_study(_study(tmp_path, f'family = "{name}"\nwidths = [4, 8, 1024]\nbits = [4]'))
    seeds = seed_archs(study)
    # 4 and 8 fit both roomy budgets; 1024 channels fits neither; each member once over the devices
    assert [a.used[0].blocks[0].channels for a in seeds] == [4, 8]
    assert all(a.head.weight_bits[0] == 4 and a.fused for a in seeds)
    assert all([blk.op for blk in b.blocks] == ops for a in seeds for b in a.used)
    for a in seeds:
        assert any(evaluate(graph(a), d, study.targets[n]).fits for n, d in study.devices.items())


def test_default_is_the_widest_member_that_fits_at_w8_and_w4(tmp_path):
    from search_spaces.families import WIDTHS, member

    path = _study(tmp_path, 'family = "tinym2net"', roomy=False)
    path.write_text(
        path.read_text()
        .replace('limits = { flash = "6K" }', 'limits = { flash = "16K" }')
        .replace('limits = { sram = "1700" }', 'limits = { sram = "4K" }')
    )
    study = load_study(path)
    seeds = seed_archs(study)
    assert sorted({a.head.weight_bits[0] for a in seeds}) == [4, 8]
    shapes = study.dataset_shapes()
    for a in seeds:
        w, b = a.used[0].blocks[0].channels, a.head.weight_bits[0]
        wider = member("tinym2net", shapes["modalities"], shapes["classes"], WIDTHS[WIDTHS.index(w) + 1], b)
        # some device holds this member but not the next wider one at the same bits
        assert any(
            evaluate(graph(a), d, study.targets[n]).fits
            and not evaluate(graph(wider), d, study.targets[n]).fits
            for n, d in study.devices.items()
        )


@pytest.mark.parametrize(
    "entry, msg",
    [
        ('file = "x.json"\nwidths = [8]', "need family"),
        ('family = "tinym2net"\nwidths = [0]', "widths"),
        ('family = "tinym2net"\nbits = [3]', "bits"),
        ('family = "tinym2net"\nbits = []', "bits"),
        ('family = "resnet"', "family"),
    ],
)
def test_bad_member_choices_are_refused_at_load(tmp_path, entry, msg):
    with pytest.raises(InputError, match=msg):
        load_study(_study(tmp_path, entry))
