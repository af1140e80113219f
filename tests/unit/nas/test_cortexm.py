"""The generated C model on emulated Cortex-M cores (issue 15): QEMU's mps2-an386 (Cortex-M4F) and
mps2-an500 (Cortex-M7), the project's own start-up code and linker scripts, semihosting file I/O.

* the counting method counts instructions: a loop of a known number of instructions reads as that
  many (to the timer's resolution, 40 instructions);
* a model exported with ``write_c_model`` runs over a test split on each core and gives the int8
  logits PyTorch gives, logit for logit, and the same logits as the host build;
* ``.bss`` of ``model.o`` built for the M4 is exactly the planned arena;
* (``-m slow``) every coverage arch of the host tests on both cores.

Skipped without the Arm toolchain and QEMU; under CI=true they are required (the tests fail).
"""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

from nas.export.c import cortexm, write_c_model
from nas.export.c.harness import compile_harness, run_harness, torch_int_logits, write_inputs
from tests.fixtures.c_models import COVER_1D, COVER_2D, TRAINED_ARCH, arch_1d, arch_2d, c_report, calibrated

pytestmark = pytest.mark.skipif(
    cortexm.missing() is not None and os.environ.get("CI") != "true",
    reason=f"{cortexm.missing()} (required under CI=true)",
)


CALIBRATION = r"""
#include <stdint.h>
#define VALUE (*(volatile uint32_t *)0x40000004u)
static volatile uint32_t ticks;
int main(void)
{
    uint32_t t0;
    *(volatile uint32_t *)0x40000008u = 0xFFFFFFFFu;
    VALUE = 0xFFFFFFFFu;
    *(volatile uint32_t *)0x40000000u = 1u;
    t0 = VALUE;
    /* 2 instructions per iteration (subs, bne): N_LOOP * 2 instructions */
    __asm volatile("mov r0, %0\n1:\n\tsubs r0, r0, #1\n\tbne 1b" ::"r"(N_LOOP) : "r0", "cc");
    ticks = t0 - VALUE;
    return (int)(ticks / 1000u);
}
"""


@pytest.mark.parametrize("core", ["m4", "m7"])
def test_the_timer_counts_instructions(core, tmp_path):
    """Under -icount shift=0 a tick of the APB timer is 40 instructions: 2,000,000 instructions of a
    counted loop read as 50,000 ticks (the exit status carries ticks / 1000)."""
    c = cortexm.CORES[core]
    sup = cortexm.support_dir()
    src = tmp_path / "cal.c"
    src.write_text(CALIBRATION)
    exe = tmp_path / "cal.elf"
    cmd = [cortexm.CC, "-O2", "-mthumb", *c.flags, "-DN_LOOP=1000000", "-I", str(sup), str(src)]
    cmd += [str(sup / "startup.c"), "-nostartfiles", "-T", str(sup / c.ld), "-lgcc", "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True)
    proc = cortexm.emulate(exe, c, tmp_path, timeout=60)
    assert proc.returncode == 2_000_000 // cortexm.INSTRUCTIONS_PER_TICK // 1000, proc.stderr


@pytest.mark.parametrize("core", ["m4", "m7"])
def test_kernel_sources_compile_for_the_cores(core, tmp_path):
    """The DSP paths (__ARM_FEATURE_DSP) pass the same strict flags as the portable ones."""
    c = cortexm.CORES[core]
    src = cortexm.support_dir().parent / "csrc" / "m2_kernels.c"
    cmd = [cortexm.CC, *cortexm.FLAGS, "-O2", *c.flags, "-DM2_KERNELS_STANDALONE", "-c", str(src)]
    res = subprocess.run([*cmd, "-o", str(tmp_path / "k.o")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (
        "smlad"
        in subprocess.run(
            ["arm-none-eabi-objdump", "-d", str(tmp_path / "k.o")], capture_output=True, text=True, check=True
        ).stdout
    )


def _export(arch, ds, folder, n=None, seed=0):

    model = calibrated(arch, ds, seed)
    report = c_report(arch)
    info = write_c_model(model, arch, report, ds, folder)
    x = {m: v[:n] for m, v in ds.test.x.items()}
    write_inputs(model, x, folder / "inputs.bin")
    return model, report, info, x


def _host_logits(folder, classes):
    proc = compile_harness(folder, folder / "harness")
    assert proc.returncode == 0, proc.stderr[-4000:]
    proc, logits = run_harness(folder / "harness", folder / "inputs.bin", folder / "host.bin", classes)
    assert logits is not None, proc.stderr[-4000:]
    return logits


def _check_on_core(core, arch, ds, folder, n=None, seed=0):
    model, report, info, x = _export(arch, ds, folder, n, seed)
    run = cortexm.run_split(folder, core, folder / "inputs.bin", arch.classes, folder / core)
    torch_logits = torch_int_logits(model, x)
    host = _host_logits(folder, arch.classes)
    assert run.logits.shape == torch_logits.shape
    assert (run.logits == host).all(), "the emulated core and the host disagree"
    exact = float((run.logits == torch_logits).all(1).mean())
    return run, report, exact


def test_watch_model_on_the_m4_whole_test_split(watch, tmp_path):
    """The whole watch test split (1,014 windows) on the Cortex-M4: identical int8 logits."""

    arch = TRAINED_ARCH.validate()
    run, report, exact = _check_on_core("m4", arch, watch, tmp_path)
    print(
        f"\n[cortex-m4] {len(run.logits)} samples in {run.seconds:.1f} s: {run.per_inference:,.0f} instructions per "
        f"inference, {run.per_inference / report.macs:.2f} per MAC ({report.macs:,} MACs)"
    )
    assert len(run.logits) == len(watch.test)
    assert exact == 1.0


def test_avdigits_model_on_the_m7(avdigits, tmp_path):
    """An image + audio model (2D conv, depthwise, pointwise, gate fusion with its sigmoid LUT, 4-bit
    weights) on the Cortex-M7 over the first 64 test samples: identical int8 logits."""

    arch = arch_2d("late", "gate", 4, 8)
    run, report, exact = _check_on_core("m7", arch, avdigits, tmp_path, n=64)
    print(
        f"\n[cortex-m7] {len(run.logits)} samples in {run.seconds:.1f} s: {run.per_inference:,.0f} instructions per "
        f"inference, {run.per_inference / report.macs:.2f} per MAC ({report.macs:,} MACs)"
    )
    assert exact == 1.0


def test_bss_is_the_planned_arena(watch, tmp_path):

    arch = TRAINED_ARCH.validate()
    _, report, _, _ = _export(arch, watch, tmp_path, n=1)
    size = cortexm.object_size(tmp_path, "m4")
    assert size["bss"] == report.arena_bytes
    assert size["data"] == 0


def test_profile_adds_up_to_the_inference(watch, tmp_path):
    """The profiling build's per-step counts sum to the plain build's count (plus the hooks' own
    instructions: a few per step)."""

    arch = arch_1d("intermediate", "concat", 8, 4)
    model, report, info, _ = _export(arch, watch, tmp_path, n=16)
    m = cortexm.measure(tmp_path, tmp_path / "inputs.bin", arch.classes, info["steps"], cores=("m4",))
    c = m["cores"]["m4"]
    assert len(c["per_op"]) == len(info["steps"])
    assert c["samples"] == 16
    plain, prof = c["instructions_per_inference"], c["profile_instructions_per_inference"]
    assert plain <= prof <= plain + 40 * (len(info["steps"]) + 4)
    assert all(op["instructions"] >= 0 for op in c["per_op"])


def _cover_cases():

    return [("watch", c) for c in COVER_1D] + [("avdigits", c) for c in COVER_2D]


@pytest.mark.slow
@pytest.mark.parametrize("core", ["m4", "m7"])
@pytest.mark.parametrize("case", _cover_cases(), ids=lambda c: "-".join(map(str, (c[0], *c[1]))))
def test_operator_coverage_on_both_cores(core, case, request, tmp_path):

    dataset, (point, op, wb, ab) = case
    ds = request.getfixturevalue(dataset)
    arch = (arch_1d if dataset == "watch" else arch_2d)(point, op, wb, ab)
    run, _, exact = _check_on_core(core, arch, ds, tmp_path, n=64)
    assert exact >= 0.95
    assert np.isfinite(run.per_inference)


def test_export_writes_golden_vectors_and_the_measured_cost(watch, tmp_path):
    """What `m2nas export --c` adds (nas.export.trial.write_c, without the ONNX steps before it):
    test_inputs.bin / test_logits.bin, a README that says how to check a port against them, and
    memory.json's `measured`: per core, instructions per inference over the whole test split, per op,
    the logits check, and model.o's size; the model card's section says instructions, not cycles."""
    import json
    from types import SimpleNamespace

    from nas.export.trial import write_c
    from nas.report.model_card import _measured_lines

    arch = TRAINED_ARCH.validate()
    model = calibrated(arch, watch)
    report = c_report(arch)
    (tmp_path / "memory.json").write_text(json.dumps({"arena_bytes": report.arena_bytes}))
    result = SimpleNamespace(model=model, arch=arch, report=report, dataset=watch, out_dir=tmp_path, files=[])
    write_c(result)
    n = len(watch.test)
    assert {"test_inputs.bin", "test_logits.bin", "model.c", "README.md"} <= set(result.files)
    x = np.fromfile(tmp_path / "test_inputs.bin", dtype=np.int8)
    assert x.size == n * sum(int(np.prod(v.shape[1:])) for v in watch.test.x.values())
    gold = np.fromfile(tmp_path / "test_logits.bin", dtype=np.int8).reshape(n, arch.classes)
    vs_torch = result.c_checks["pytorch"]  # the golden logits are the integer reference's
    assert vs_torch["differing"] == int((gold != torch_int_logits(model, watch.test.x)).any(1).sum())
    assert vs_torch["top1_agreement"] >= 0.99
    builds = {b["build"]: b for b in result.c_checks["builds"]}
    assert set(builds) == {"host gcc -O2", "host gcc -Os", "emulated cortex-m4", "emulated cortex-m7"}
    assert all(b["passed"] and b["samples"] == n for b in builds.values())
    assert result.c_checks["trace"]["problem"] is None
    readme = (tmp_path / "README.md").read_text()
    assert "test_inputs.bin" in readme and "test_logits.bin" in readme and "on the board" in readme.lower()
    m = json.loads((tmp_path / "memory.json").read_text())["measured"]
    assert m["available"] and "instructions" in m["method"] and "not cycles" in m["method"]
    for core in ("m4", "m7"):
        c = m["cores"][core]
        assert c["samples"] == n and c["identical_logits"] == n
        assert len(c["per_op"]) == len(report.schedule) and c["profile_samples"] == 64
        assert c["instructions_per_mac"] == round(c["instructions_per_inference"] / report.macs, 3)
    assert m["model_o_m4_Os"]["bss"] == report.arena_bytes
    card = "\n".join(_measured_lines(result))
    assert (
        "instructions executed, not cycles" in card
        and f"{m['cores']['m7']['instructions_per_inference']:,}" in card
    )
