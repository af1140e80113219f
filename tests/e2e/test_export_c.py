"""`m2nas export --c` on a finished study: the generated C runs the test split in the planned arena."""

from __future__ import annotations

import os
import shutil
import subprocess

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
    proc = compile_harness(out, exe)  # the strict build: -O2 with AddressSanitizer and UBSan
    assert proc.returncode == 0, proc.stderr
    from nas.data import load_dataset

    test = load_dataset("watch", seed=0).test
    n = write_inputs(model, test.x, tmp_path / "in.bin")
    run, logits = run_harness(exe, tmp_path / "in.bin", tmp_path / "out.bin", arch.classes)
    assert logits is not None, run.stderr
    torch_logits = torch_int_logits(model, test.x)
    agree = float((logits.argmax(1) == torch_logits.argmax(1)).mean())
    acc_c = float((logits.argmax(1) == test.y).mean())
    summary = json.loads((out / "export.json").read_text())
    assert n == len(test.y) and agree >= 0.99
    assert abs(acc_c - summary["test"]["accuracy"]) <= 0.005
    # Golden vectors: the test split as the harness reads it, and the integer reference's logits,
    # which every build reproduces byte for byte -- step 1 of the export's README, as a user runs it.
    import numpy as np

    assert (out / "test_inputs.bin").read_bytes() == (tmp_path / "in.bin").read_bytes()
    assert (out / "test_logits.bin").read_bytes() == (tmp_path / "out.bin").read_bytes()
    readme = (out / "README.md").read_text()
    readme_build = [
        "gcc",
        "-std=c99",
        "-O2",
        "-Wall",
        "-Wextra",
        "-Werror",
        "model.c",
        "harness.c",
        "-o",
        "model",
    ]
    assert " ".join(readme_build) in readme
    subprocess.run(readme_build, cwd=out, check=True)
    subprocess.run(["./model", "test_inputs.bin", "out.bin"], cwd=out, check=True)
    assert subprocess.run(["cmp", "out.bin", "test_logits.bin"], cwd=out).returncode == 0
    checks = summary["c_checks"]
    assert {b["build"] for b in checks["builds"]} >= {"host gcc -O2", "host gcc -Os"}
    assert all(b["passed"] and b["differing"] == 0 and b["samples"] == n for b in checks["builds"])
    assert checks["trace"]["problem"] is None
    gold = np.fromfile(out / "test_logits.bin", dtype=np.int8).reshape(-1, arch.classes).astype(np.int64)
    vs_torch = checks["pytorch"]
    assert vs_torch["differing"] == int((gold != torch_logits).any(1).sum())
    assert vs_torch["top1_agreement"] >= 0.99
    assert "reproduces test_logits.bin" in res.stdout and "PyTorch differs from it on" in res.stdout
    # The measured cost on the emulated cores, labelled as instructions (issue 15).
    from nas.export.c import cortexm

    if cortexm.missing() is not None:
        assert os.environ.get("CI") != "true", cortexm.missing()
        assert memory["measured"]["available"] is False
        return
    m = memory["measured"]
    assert set(m["cores"]) == {"m4", "m7"} and "instructions" in m["method"]
    assert {b["build"] for b in checks["builds"]} == {"host gcc -O2", "host gcc -Os"} | {
        f"emulated {c['cpu']}" for c in m["cores"].values()
    }
    for c in m["cores"].values():
        assert c["samples"] == n and c["identical_logits"] == n
        assert c["instructions_per_inference"] > memory["macs"]
        assert len(c["per_op"]) == len(memory["schedule"])
    assert m["model_o_m4_Os"]["bss"] == memory["arena_bytes"]
    card = (out / "MODEL_CARD.md").read_text()
    assert "instructions executed, not cycles" in card
    assert f"{m['cores']['m4']['instructions_per_inference']:,}" in card


def test_a_c_build_that_differs_from_the_reference_fails_the_export(smoke_study, tmp_path, monkeypatch):
    """A build whose logits differ from test_logits.bin on one sample fails the export: exit 1, one
    line naming the sample, and model.c / model.h renamed *.failed so nobody ships them. (Here the
    golden vectors are made to disagree on sample 3; the C is what it always is.)"""
    import numpy as np

    from nas.export.c import reference
    from tests.fixtures import run_cli_here

    real = reference.logits

    def off_by_one(*args, **kwargs):
        out = real(*args, **kwargs).copy()
        out[3, 0] += 1 if out[3, 0] < 127 else -1
        return out

    monkeypatch.setattr(reference, "logits", off_by_one)
    from nas.export.c import cortexm

    monkeypatch.setattr(cortexm, "missing", lambda: "not needed here")  # the host builds fail first
    out = tmp_path / "c"
    res = run_cli_here("export", smoke_study, "--device", DEVICE, "--c", "--out", out)
    assert res.code == 1, (res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "model.c.failed" in lines[0] and "differ from the integer reference on 1 / " in lines[0]
    assert "first: sample 3, max 1 LSB" in lines[0]
    assert (out / "model.c.failed").is_file() and (out / "model.h.failed").is_file()
    assert not (out / "model.c").exists() and not (out / "model.h").exists()
    assert not (out / "export.json").exists()
    assert np.fromfile(out / "test_logits.bin", dtype=np.int8).size > 0


def test_a_c_compiler_that_cannot_run_fails_the_export_in_one_line(smoke_study, tmp_path, monkeypatch):
    """$CC names no program: the host builds cannot run, so the C is unchecked: exit 1, one line
    naming the compiler, model.c renamed *.failed (never a traceback)."""
    from nas.export.c import cortexm
    from tests.fixtures import run_cli_here

    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setattr(cortexm, "missing", lambda: "not needed here")
    out = tmp_path / "c"
    res = run_cli_here("export", smoke_study, "--device", DEVICE, "--c", "--out", out)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.code == 1 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "a host build failed" in lines[0] and "no-such-cc" in lines[0]
    assert (out / "model.c.failed").is_file() and not (out / "model.c").exists()
