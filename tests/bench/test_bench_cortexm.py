"""Instructions per MAC of the generated C on the emulated Cortex-M4 and M7, per op kind and bit-width
(issue 15). Run: ``pytest -m bench -s tests/bench/test_bench_cortexm.py``.

Every coverage arch of the codegen tests (every op kind, every weight / activation bit-width) is
exported, calibrated on real batches, and run in the profiling build on both cores over 16 test
samples, and so are three models with 32 channels in every layer after the 3-channel input, at 8-,
4- and 2-bit weights (``wide-w*``). The per-op instruction counts are grouped by (op kind, weight
bits, input bits, >= 16 input and output channels: the layers the issue's targets are for).
Per-model totals (plain build) are printed for the same archs. With ``M2NAS_BENCH_JSON=path`` the
figures are also written there (the before / after tables of the issue come from two such files).

The shipped studies' chosen models: ``M2NAS_BENCH_EXPORTS=dir1:dir2`` names folders written by
``m2nas export STUDY --device D --c`` (which measures the model on both emulated cores over the whole
test split); their per-model totals are printed as extra rows.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict

import pytest

from nas.export.c import cortexm

pytestmark = [
    pytest.mark.bench,
    pytest.mark.skipif(cortexm.missing() is not None, reason=str(cortexm.missing())),
]

SAMPLES = 16


def _wide(wb: int):
    """A 1D model with >= 16 channels everywhere (the issue's targets are for such layers)."""
    from search_spaces.arch import Arch, Branch, Fusion, Head
    from tests.fixtures.c_models import blk

    blocks = [blk("conv", 7, 32, 2, wb=wb), blk("conv", 5, 32, 1, 2, wb=wb), blk("dwsep", 3, 32, 1, wb=wb)]
    return Arch(
        7,
        [Branch("acc", [3, 100], True, 8, blocks), Branch("gyro", [3, 100], False, 8, [])],
        Fusion("late", "concat", 0, 0, 8, 8),
        [],
        Head([64], [wb, 8], [8, 8]),
    ).validate()


def _cases():
    from tests.fixtures.c_models import COVER_1D, COVER_2D, TRAINED_ARCH, arch_1d, arch_2d

    out = [("watch", f"wide-w{b}", _wide(b)) for b in (8, 4, 2)]
    out += [("watch", "trained-arch", TRAINED_ARCH.validate())]
    out += [("watch", "-".join(map(str, c)), arch_1d(*c)) for c in COVER_1D]
    out += [("avdigits", "-".join(map(str, c)), arch_2d(*c)) for c in COVER_2D]
    return out


def test_bench_instructions_per_mac(tmp_path):
    from nas.data import load_dataset
    from nas.export.c import write_c_model
    from nas.export.c.harness import write_inputs
    from tests.fixtures.c_models import c_report, calibrated

    data = {name: load_dataset(name, seed=0) for name in ("watch", "avdigits")}
    groups: dict = defaultdict(lambda: [0, 0, 0])  # (core, kind, wbits, xbits) -> [instructions, macs, ops]
    elementwise: dict = defaultdict(
        lambda: [0, 0, 0]
    )  # (core, kind, in bits, out bits) -> [instr, outputs, ops]
    models = []
    for ds_name, label, arch in _cases():
        ds = data[ds_name]
        d = tmp_path / label
        d.mkdir()
        model = calibrated(arch, ds)
        report = c_report(arch)
        info = write_c_model(model, arch, report, ds, d)
        write_inputs(model, {m: v[:SAMPLES] for m, v in ds.test.x.items()}, d / "inputs.bin")
        m = cortexm.measure(d, d / "inputs.bin", arch.classes, info["steps"])
        row = {"model": f"{ds_name}:{label}", "macs": report.macs}
        ops, tensors = {o.name: o for o in report.graph.ops}, report.graph.tensors
        for core, c in m["cores"].items():
            row[core] = c["instructions_per_inference"]
            for op in c["per_op"]:
                if not op["macs"] and op["kind"] not in ("reshape", "flatten"):
                    e = elementwise[(core, op["kind"], op["in_bits"][0], op["out_bits"])]
                    e[0] += op["instructions"]
                    e[1] += op["elements"]
                    e[2] += 1
                if op["macs"]:
                    gop = ops[op["op"]]
                    # the targets are for layers with >= 16 input and output channels
                    wide = min(tensors[gop.inputs[0]].shape[0], tensors[gop.outputs[0]].shape[0]) >= 16
                    g = groups[(core, op["kind"], op["weight_bits"], op["in_bits"][0], wide)]
                    g[0] += op["instructions"]
                    g[1] += op["macs"]
                    g[2] += 1
        models.append(row)
    table = [
        {
            "core": k[0],
            "kind": k[1],
            "wbits": k[2],
            "xbits": k[3],
            "wide": k[4],
            "ipm": v[0] / v[1],
            "ops": v[2],
        }
        for k, v in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0])))
    ]
    print(
        "\n| core | op kind | weight bits | input bits | >= 16 ch | ops | instructions / MAC |\n"
        "|---|---|---|---|---|---|---|"
    )
    for r in table:
        print(
            f"| {r['core']} | {r['kind']} | {r['wbits']} | {r['xbits']} | {'yes' if r['wide'] else 'no'} | "
            f"{r['ops']} | {r['ipm']:.2f} |"
        )
    print(
        "\n| core | op kind (no MACs) | input bits | output bits | ops | instructions / output element |\n"
        "|---|---|---|---|---|---|"
    )
    for k, v in sorted(elementwise.items(), key=lambda kv: tuple(map(str, kv[0]))):
        print(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {v[2]} | {v[0] / v[1]:.1f} |")
    print(
        "\n| model | MACs | M4 instructions | M4 / MAC | M7 instructions | M7 / MAC |\n|---|---|---|---|---|---|"
    )
    for r in models:
        print(
            f"| {r['model']} | {r['macs']:,} | {r['m4']:,} | {r['m4'] / r['macs']:.2f} | {r['m7']:,} | "
            f"{r['m7'] / r['macs']:.2f} |"
        )
    exports = [d for d in os.environ.get("M2NAS_BENCH_EXPORTS", "").split(":") if d]
    for d in exports:
        mem = json.loads(open(os.path.join(d, "memory.json")).read())
        m = mem["measured"]
        assert m["available"], f"{d}: {m.get('reason')}"
        r = {"model": f"export:{d}", "macs": m["macs"]}
        r.update({core: c["instructions_per_inference"] for core, c in m["cores"].items()})
        models.append(r)
        print(
            f"| {r['model']} | {r['macs']:,} | {r['m4']:,} | {r['m4'] / r['macs']:.2f} | {r['m7']:,} | "
            f"{r['m7'] / r['macs']:.2f} |"
        )
    path = os.environ.get("M2NAS_BENCH_JSON")
    if path:
        with open(path, "w") as f:
            other = [
                {"key": list(k), "instr_per_output": v[0] / v[1], "ops": v[2]} for k, v in elementwise.items()
            ]
            json.dump({"ops": table, "elementwise": other, "models": models}, f, indent=1)
    assert table and models
