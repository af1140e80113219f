"""`m2nas memory` on OpGraph JSON: normal answers, non-fitting answers, bad input."""

from __future__ import annotations

import json

from tests.fixtures import assert_one_line_error
from tests.fixtures.graphs import two_branch_graph


def test_memory_json_report(cli, tmp_path):
    f = tmp_path / "g.json"
    f.write_text(two_branch_graph().to_json())
    r = cli("memory", f, "--device", "stm32f446re", "--json")
    assert r.code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["fits"] is True and d["device"] == "stm32f446re"
    # the default im2col column (int8, C_in x 3 x 3 = 9 -> 12 B) sits on top of the 2308 B of tensors
    assert d["peak_sram_bytes"] == 2308 + 12
    assert d["schedule"][:2] == ["aud_conv", "aud_pool"]
    assert d["levels"][0]["name"] == "sram" and d["levels"][0]["holds"] == ["activations"]
    r = cli("memory", f, "--device", "stm32f446re")
    assert r.code == 0 and "fits" in r.stdout and "aud_conv -> aud_pool" in r.stdout


def test_memory_not_fitting_is_a_normal_answer(cli, tmp_path):
    f = tmp_path / "g.json"
    f.write_text(two_branch_graph().to_json())
    r = cli("memory", f, "-d", "gap8", "--target", "all=fc_L1", "--json")
    assert r.code == 0
    d = json.loads(r.stdout)
    assert d["fits"] is True  # 2 KB of tensors fit even the 16 KB FC L1
    big = json.loads(two_branch_graph().to_json())
    for t in big["tensors"]:
        if t["name"] == "a1":
            t["shape"] = [64, 16, 16]  # 16 KB alone
    f.write_text(json.dumps(big))
    r = cli("memory", f, "-d", "gap8", "--target", '{ all = "fc_L1" }', "--json")
    assert r.code == 0
    d = json.loads(r.stdout)
    assert d["fits"] is False and "fc_L1 needs" in d["reason"]


def test_memory_bad_input(cli, tmp_path):
    f = tmp_path / "g.json"
    f.write_text(two_branch_graph().to_json())
    assert_one_line_error(cli("memory", f, "-d", "stm32f999"), "unknown device 'stm32f999'")
    assert_one_line_error(cli("memory", f, "-d", "stm32"), "'stm32' is ambiguous", "stm32f446re, stm32f746zg")
    assert cli("memory", f, "-d", "f746", "--json").code == 0  # an alias, as people type it
    assert_one_line_error(
        cli("memory", f, "-d", "stm32f446re", "-t", "all=L1"), "target.all: 'L1' is not a memory level"
    )
    assert_one_line_error(
        cli("memory", tmp_path / "nope.json", "-d", "stm32f446re"), "nope.json: no such file"
    )
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    assert_one_line_error(cli("memory", bad, "-d", "stm32f446re"), "bad.json: not valid JSON")
    bad.write_text(
        json.dumps(
            {"format": "m2nas.opgraph", "tensors": [], "ops": [{"name": "x"}], "inputs": [], "outputs": []}
        )
    )
    assert_one_line_error(cli("memory", bad, "-d", "stm32f446re"), "bad.json: ops[0].kind: missing")
    assert_one_line_error(cli("memory", f), "Missing option '--device'")
