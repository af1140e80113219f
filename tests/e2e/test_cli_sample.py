"""`m2nas sample` and `m2nas memory ARCH.json`: sampled archs as JSON lines, analysed from the CLI."""

from __future__ import annotations

import json

from search_spaces import Arch, graph
from tests.fixtures import assert_one_line_error
from tests.fixtures.archs import sampled


def test_cli_sample_prints_arch_json_lines(cli, tmp_path):
    args = (
        "sample",
        "micro",
        "--n",
        "5",
        "--seed",
        "3",
        "--input",
        "acc=3x100",
        "--input",
        "gyro=3x100",
        "--classes",
        "7",
    )
    r = cli(*args)
    assert r.code == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 5
    archs = [Arch.from_json(line) for line in lines]
    again = cli(*args)
    assert again.stdout == r.stdout
    f = tmp_path / "space.toml"
    f.write_text("preset = 'micro'\nclasses = 3\n[inputs]\nimage = [1, 8, 8]\naudio = [1, 40, 32]\n")
    r = cli("sample", f, "--n", "2")
    assert r.code == 0 and all(Arch.from_json(x).classes == 3 for x in r.stdout.splitlines())
    assert_one_line_error(cli("sample", "micro", "--input", "acc=3"), "--input 'acc=3'")
    assert archs


def test_cli_memory_reads_arch_json(cli, tmp_path):
    a = sampled(1)[0][2]
    f = tmp_path / "arch.json"
    f.write_text(a.to_json())
    r = cli("memory", f, "-d", "stm32f446re", "--json")
    assert r.code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["fits"] is True and d["flash"]["weights"] == sum(
        (o.weights * o.weight_bits + 7) // 8 for o in graph(a).ops
    )
