"""`m2nas export --c` on a finished study: the generated C runs the test split in the planned arena."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from nas.export.c.harness import compile_harness, run_harness, torch_int_logits, write_inputs
from search_spaces import Arch, build

DEVICE = "stm32f446re"

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None and os.environ.get("CI") != "true",
    reason="needs gcc (required under CI=true)",
)


def test_m2nas_export_c_runs_the_test_split_in_the_planned_arena(smoke_study, tmp_path):
    """The user's path: `m2nas export --c` on a finished study; the C model it writes, built with the
    strict flags, reproduces the exported model's test accuracy and fits its memory report."""
    import json

    from tests.fixtures import run_cli

    out = tmp_path / "c"
    res = run_cli("export", smoke_study, "--device", DEVICE, "--c", "--out", out, timeout=600)
    assert res.code == 0, res.stderr
    for name in ("model.h", "model.c", "model.onnx", "memory.json", "arch.json", "weights.pt"):
        assert (out / name).is_file(), name
    arch = Arch.from_json((out / "arch.json").read_text())
    model = build(arch)
    model.load_state_dict(torch.load(out / "weights.pt", weights_only=True))
    model.eval()
    memory = json.loads((out / "memory.json").read_text())
    assert f"{memory['arena_bytes']}" in (out / "model.h").read_text()
    assert f"`M2NAS_ARENA_SIZE` = {memory['arena_bytes']:,} B" in (out / "MODEL_CARD.md").read_text()
    exe = tmp_path / "harness"
    proc = compile_harness(out, exe)
    assert proc.returncode == 0, proc.stderr
    from nas.data import load_dataset

    test = load_dataset("watch", seed=0).test
    n = write_inputs(model, test.x, tmp_path / "in.bin")
    run, logits = run_harness(exe, tmp_path / "in.bin", tmp_path / "out.bin", arch.classes)
    assert logits is not None, run.stderr
    expected = torch_int_logits(model, test.x)
    agree = float((logits.argmax(1) == expected.argmax(1)).mean())
    acc_c = float((logits.argmax(1) == test.y).mean())
    summary = json.loads((out / "export.json").read_text())
    assert n == len(test.y) and agree >= 0.99
    assert abs(acc_c - summary["test"]["accuracy"]) <= 0.005
    # Golden vectors: the test split as the harness reads it, and PyTorch's int8 logits for it.
    import numpy as np

    assert (out / "test_inputs.bin").read_bytes() == (tmp_path / "in.bin").read_bytes()
    gold = np.fromfile(out / "test_logits.bin", dtype=np.int8).reshape(-1, arch.classes)
    assert (gold == expected).all()
    assert "test_inputs.bin" in (out / "README.md").read_text()
    # The measured cost on the emulated cores, labelled as instructions (issue 15).
    from nas.export.c import cortexm

    if cortexm.missing() is not None:
        assert os.environ.get("CI") != "true", cortexm.missing()
        assert memory["measured"]["available"] is False
        return
    m = memory["measured"]
    assert set(m["cores"]) == {"m4", "m7"} and "instructions" in m["method"]
    same_on_host = int((logits == expected).all(1).sum())  # the emulated cores compute what the host does
    for c in m["cores"].values():
        assert c["samples"] == n and c["identical_logits"] == same_on_host >= 0.99 * n
        assert c["instructions_per_inference"] > memory["macs"]
        assert len(c["per_op"]) == len(memory["schedule"])
    assert m["model_o_m4_Os"]["bss"] == memory["arena_bytes"]
    card = (out / "MODEL_CARD.md").read_text()
    assert "instructions executed, not cycles" in card
    assert f"{m['cores']['m4']['instructions_per_inference']:,}" in card
    assert "instructions per inference" in res.stdout
