"""The generated C model: it runs in exactly the planned arena and reproduces the integer reference.

* A model trained on the real watch data (late concat fusion, conv / dwsep / mbconv with a residual,
  max pooling, 2 / 4 / 8-bit weights, 4 / 8-bit activations, a hidden dense layer) is exported with
  ``write_c_model``, compiled with ``gcc -std=c99 -O2 -Wall -Wextra -Werror
  -fsanitize=address,undefined`` together with the host harness, and run on the whole test split:
  its logits are the integer reference's (``nas.export.c.reference``) on every sample; top-1
  agreement with the PyTorch model >= 99%, accuracy within 0.5 points.
* The compiled weight arrays (``nm -S`` on the object file) add up to the memory report's packed
  weight bytes, and ``size`` shows ``bss`` = the planned arena.
* Tightness: the same code built with an arena one alignment unit smaller is stopped by
  AddressSanitizer (every tensor is at its planned offset, so the buffer that ends at
  ``arena_bytes`` writes past the shrunken array): the plan is tight, not padded.
* Coverage: untrained (but calibrated) models of hand-picked archs covering every operator the search
  spaces produce -- every fusion point x operator, 1D and 2D, gate (sigmoid LUT) and low-rank fusion,
  residuals, alignment pooling, bits 2 / 4 / 8 --, archs drawn by hypothesis from every preset's
  whole space, and the arch GCC 12.2 miscompiled: built with -O2 and -Os (no sanitizer, as a user
  builds), each equals the integer reference exactly on real test samples, and the arena trace shows
  every step writing only its planned outputs and scratch.
* An op the generator cannot lower is an ``InputError`` naming it.
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory_models.errors import InputError
from nas.export.c import lower, reference, verify, write_c_model
from nas.export.c.harness import compile_harness, quantize_inputs, run_harness, torch_int_logits, write_inputs
from nas.export.c.packing import fixed_point, pack, requant_mode, unpack
from search_spaces import graph, load_space, sample_random
from tests.fixtures.c_models import (
    COVER_1D,
    COVER_2D,
    MISCOMPILED_ARCH,
    TRAINED_ARCH,
    arch_1d,
    arch_2d,
    c_report,
    calibrated,
)

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None and os.environ.get("CI") != "true",
    reason="needs gcc (required under CI=true)",
)

DEVICE = "stm32f446re"


def _report(arch):
    return c_report(arch, DEVICE)


@pytest.fixture(scope="module")
def trained(watch, tmp_path_factory):
    """The trained model, its report, the C files, and the strict (sanitized) harness build."""
    from nas.train import TrainConfig, load_trained, train_candidate

    arch = TRAINED_ARCH.validate()
    res = train_candidate(arch, watch, TrainConfig(epochs=12, seed=0, threads=1))
    model = load_trained(arch, res.state_dict)
    report = _report(arch)
    out = tmp_path_factory.mktemp("c_trained")
    info = write_c_model(model, arch, report, watch, out)
    proc = compile_harness(out, out / "harness")
    assert proc.returncode == 0, proc.stderr
    return arch, model, report, info, out


def _run_c(c_dir, exe, model, x, classes):
    write_inputs(model, x, c_dir / "inputs.bin")
    return run_harness(exe, c_dir / "inputs.bin", c_dir / "logits.bin", classes)


def test_c_model_matches_brevitas_on_the_whole_test_split(trained, watch):
    arch, model, report, info, out = trained
    proc, c_logits = _run_c(out, out / "harness", model, watch.test.x, arch.classes)
    assert proc.returncode == 0, proc.stderr[-4000:]
    t_logits = torch_int_logits(model, watch.test.x)
    assert c_logits.shape == t_logits.shape == (len(watch.test), arch.classes)
    c_pred, t_pred = c_logits.argmax(1), t_logits.argmax(1)
    agreement = float((c_pred == t_pred).mean())
    acc_c = 100 * float((c_pred == watch.test.y).mean())
    acc_t = 100 * float((t_pred == watch.test.y).mean())
    exact = float((c_logits == t_logits).all(1).mean())
    prog = info["program"]
    ref = reference.logits(prog.calls, quantize_inputs(model, watch.test.x), prog.output_tensor)
    assert (c_logits == ref).all()  # the sanitized build too reproduces the integer reference exactly
    print(
        f"\n[codegen] {len(watch.test)} test samples: top-1 agreement {100 * agreement:.2f}%, identical logits "
        f"{100 * exact:.2f}%, accuracy C {acc_c:.2f}% vs torch {acc_t:.2f}%; arena {info['arena_bytes']} B, "
        f"weights {info['weight_bytes']} B"
    )
    assert agreement >= 0.99
    assert abs(acc_c - acc_t) <= 0.5
    # it learned something, so the comparison is not vacuous: 12 epochs, seeds 0-4 reach test
    # 74.65 / 74.16 / 82.35 / 72.39 / 74.75 % in PyTorch (chance + 10 = 24.3)
    assert acc_t > 100 / arch.classes + 10  # it learned something: the comparison is not vacuous


def test_weight_arrays_are_the_reports_packed_weight_bytes(trained, tmp_path):
    arch, model, report, info, out = trained
    obj = tmp_path / "model.o"
    proc = subprocess.run(
        ["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-c", str(out / "model.c"), "-o", str(obj)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    nm = subprocess.run(["nm", "-S", "--defined-only", str(obj)], capture_output=True, text=True, check=True)
    sizes = {}
    for line in nm.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3].startswith("m2nas_w_"):
            sizes[parts[3]] = int(parts[1], 16)
    weighted = [op for op in report.graph.ops if op.weights]
    assert len(sizes) == len(weighted)
    assert sum(sizes.values()) == report.flash.weights == report.to_dict()["flash"]["weights"]
    assert sizes == info["weight_arrays"]
    # The only RAM the model takes is the planned arena.
    size = subprocess.run(["size", str(obj)], capture_output=True, text=True, check=True)
    text, data, bss = (int(v) for v in size.stdout.splitlines()[1].split()[:3])
    assert bss == report.arena_bytes
    print(
        f"\n[codegen] weight arrays {sum(sizes.values())} B == report {report.flash.weights} B; size: {size.stdout}"
    )


def test_arena_one_alignment_unit_smaller_is_caught(trained, watch):
    arch, model, report, info, out = trained
    a = report.buffers.alignment
    exe = out / "harness_small"
    proc = compile_harness(out, exe, defines={"M2NAS_ARENA_SIZE": report.arena_bytes - a})
    assert proc.returncode == 0, proc.stderr
    x = {m: v[:4] for m, v in watch.test.x.items()}
    # UBSan (object-size) flags the access too; let it go on so that AddressSanitizer names the array.
    write_inputs(model, x, out / "inputs.bin")
    proc, logits = run_harness(
        exe, out / "inputs.bin", out / "logits.bin", arch.classes, env={"UBSAN_OPTIONS": "halt_on_error=0"}
    )
    assert proc.returncode != 0 and logits is None
    assert "AddressSanitizer: global-buffer-overflow" in proc.stderr, proc.stderr[-2000:]
    assert "global variable 'm2nas_arena'" in proc.stderr, proc.stderr[-2000:]
    # ... while the planned size runs those samples cleanly (the whole split: the test above).
    proc, logits = _run_c(out, out / "harness", model, x, arch.classes)
    assert proc.returncode == 0 and logits is not None


def test_unsupported_operator_is_named(trained):
    arch, model, report, info, out = trained
    ops = [dataclasses.replace(op) for op in report.graph.ops]
    i = next(i for i, op in enumerate(ops) if op.kind == "global_avgpool")
    ops[i] = dataclasses.replace(ops[i], kind="global_maxpool")
    bad = dataclasses.replace(report, graph=dataclasses.replace(report.graph, ops=ops))
    with pytest.raises(InputError, match=rf"C export: unsupported operator global_maxpool \({ops[i].name}\)"):
        lower(model, arch, bad)


def test_packing_and_fixed_point():
    rng = np.random.default_rng(0)
    for bits in (2, 4, 8):
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        v = rng.integers(lo, hi + 1, size=37)
        data = pack(v, bits)
        assert len(data) == (37 * bits + 7) // 8
        assert (unpack(data, bits, 37, signed=True) == v).all()
        u = rng.integers(0, 2**bits, size=11)
        assert (unpack(pack(u, bits), bits, 11, signed=False) == u).all()
    for m in (1e-9, 3.3e-4, 0.5, 0.9999999, 1.0, 7.25, 1000.0):
        mult, shift = fixed_point(m)
        assert 0 < mult < 2**31 and 1 <= shift <= 62
        assert abs(mult / 2.0**shift - m) <= m * 2.0**-29 + 2.0**-62


def test_requant_mode_admits_only_what_the_fused_requantization_handles():
    """The speed build fuses requantization when the exporter says so; its assembly assumes every shift
    in 33..54 and biases below 2^30 (the fused paths themselves: tests/unit/nas/test_kernels_cortexm.py)."""
    assert requant_mode([33] * 4, [0, 5, -7, (1 << 30) - 1]) == 33
    assert requant_mode([54, 54], [-(1 << 30) + 1, 0]) == 54
    assert requant_mode([35, 36, 35], [1, 2, 3]) == -1
    assert requant_mode([32, 35], [0, 0]) == 0  # a shift of 32 or less: the general path
    assert requant_mode([33, 55], [0, 0]) == 0  # past 54 the uint8 offset would not fit
    assert requant_mode([40, 40], [0, 1 << 30]) == 0
    assert requant_mode([40, 40], [-(1 << 30), 0]) == 0
    assert requant_mode([], []) == 0


# ---------------------------------------------------------------------------------------------
# Operator coverage: calibrated untrained models, C vs PyTorch logit for logit
# ---------------------------------------------------------------------------------------------


def _check_arch(arch, ds, tmp_path, n=128, seed=0):
    """The C of a calibrated `arch`, built as a user builds it (-O2 and -Os, no sanitizer), equals the
    integer reference on `n` real test samples exactly; the arena trace is clean (every step writes
    only its planned outputs and scratch, and its outputs are the reference's); PyTorch agrees with
    the reference on top-1 (its float requantization may round a tie the other way)."""
    model = calibrated(arch, ds, seed)
    report = _report(arch)
    x = {m: v[:n] for m, v in ds.test.x.items()}
    info = write_c_model(model, arch, report, ds, tmp_path, golden=x)
    prog = info["program"]
    gold = np.fromfile(tmp_path / "test_logits.bin", dtype=np.int8).reshape(-1, arch.classes).astype(np.int64)
    for check in verify.host_builds(tmp_path, prog, tmp_path / "test_inputs.bin", gold, tmp_path / "builds"):
        assert check.passed, (arch.to_json(), check.describe())
    assert verify.trace_check(tmp_path, prog, quantize_inputs(model, x), tmp_path / "trace") is None, (
        arch.to_json()
    )
    vs_torch = reference.compare_logits(torch_int_logits(model, x), gold)
    assert vs_torch["top1_agreement"] >= 0.95, (arch.summary(), vs_torch)
    return report, info


@pytest.mark.parametrize("point,op,wb,ab", COVER_1D)
def test_operator_coverage_1d(watch, tmp_path, point, op, wb, ab):
    _check_arch(arch_1d(point, op, wb, ab), watch, tmp_path)


@pytest.mark.parametrize("point,op,wb,ab", COVER_2D)
def test_operator_coverage_2d(avdigits, tmp_path, point, op, wb, ab):
    _check_arch(arch_2d(point, op, wb, ab), avdigits, tmp_path)


def test_the_coverage_cases_cover_every_operator():
    """Every op kind (and activation, and bit-width) the search spaces produce is in the cases above."""
    kinds, acts, wbits, abits = set(), set(), set(), set()
    archs = [arch_1d(*c) for c in COVER_1D] + [arch_2d(*c) for c in COVER_2D]
    for a in archs:
        g = graph(a)
        for op in g.ops:
            kinds.add(op.kind)
            acts.add(op.attrs.get("activation"))
            if op.weights:
                wbits.add(op.weight_bits)
        abits |= {t.bits for t in g.tensors.values()}
    expected = {
        "conv1d",
        "conv2d",
        "depthwise_conv1d",
        "depthwise_conv2d",
        "pointwise_conv1d",
        "pointwise_conv2d",
        "linear",
        "maxpool1d",
        "maxpool2d",
        "avgpool1d",
        "avgpool2d",
        "global_avgpool",
        "add",
        "mul",
        "concat",
        "reshape",
    }
    assert kinds == expected
    assert {"relu", "none", "sigmoid"} <= acts
    assert wbits == abits == {2, 4, 8}
    residual = any(
        op.name.endswith(".add") and "b" in op.name.split(".")[-2] for a in archs for op in graph(a).ops
    )
    assert residual


@pytest.mark.parametrize("seed", [0, 1])
def test_the_arch_whose_c_was_silently_wrong_is_exact(watch, tmp_path, seed):
    from search_spaces import Arch

    arch = Arch.from_json(MISCOMPILED_ARCH)
    report = _report(arch)
    pools = [
        c
        for c in lower(calibrated(arch, watch, seed), arch, report, watch).source.splitlines()
        if "m2_maxpool(A" in c
    ]
    assert len(pools) == 2 and pools[0] == pools[1]  # the trigger: identical calls, arena reuse
    _check_arch(arch, watch, tmp_path, n=256, seed=seed)


PRESETS = ["micro", "tiny", "small", "wide"]


@settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    space=st.sampled_from(PRESETS),
    dims=st.sampled_from(["watch", "avdigits"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_archs_of_every_preset_match_the_reference(space, dims, seed, request, tmp_path_factory):
    """Archs drawn from a preset's whole space (any op kind, bit-width, fusion): C == reference."""
    ds = request.getfixturevalue(dims)
    arch = sample_random(random.Random(seed), load_space(space), ds.modalities, ds.n_classes)
    _check_arch(arch, ds, tmp_path_factory.mktemp("arch"), n=48, seed=seed % 1000)


@pytest.mark.slow
@pytest.mark.parametrize("space", ["micro", "tiny", "small", "wide"])
@pytest.mark.parametrize("dataset", ["watch", "avdigits"])
def test_random_archs_of_every_preset(space, dataset, request, tmp_path):
    ds = request.getfixturevalue(dataset)
    rng = random.Random(f"{space}-{dataset}")
    done = 0
    for seed in range(200):
        arch = sample_random(rng, load_space(space), ds.modalities, ds.n_classes)
        d = tmp_path / f"a{seed}"
        d.mkdir()
        _check_arch(arch, ds, d, n=64, seed=seed)
        done += 1
        if done == 6:
            break


def test_kernel_sources_compile_on_their_own(tmp_path):
    """The kernels are real C files shipped with the package: strict C99 accepts them standalone."""
    from importlib import resources

    csrc = resources.files("nas.export.c").joinpath("csrc")
    for name in ("m2_kernels.h", "m2_kernels.c", "harness.c"):
        assert csrc.joinpath(name).is_file(), name
    cc = shutil.which("gcc") or shutil.which("cc")
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-DM2_KERNELS_STANDALONE", "-c"]
    res = subprocess.run(
        [cc, *flags, str(csrc.joinpath("m2_kernels.c")), "-o", str(tmp_path / "k.o")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
