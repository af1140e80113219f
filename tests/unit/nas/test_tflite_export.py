"""`model.tflite` from the integer program of model.c, run in TFLite Micro's own interpreter.

For calibrated models of the operator-coverage archs with 8-bit activations (every fusion point and
operator, 1D and 2D, residuals, alignment pooling, gate sigmoids, low-rank) and archs drawn by
hypothesis from a preset restricted to 8-bit activations: the file is read back by m2nas's own
.tflite reader, TFLite Micro runs it on real test samples with top-1 agreement >= 99.9% with the
integer reference (the rest reported: its rounding is its own), and the smallest arena at which it
invokes is within 2% of what `m2nas memory model.tflite` predicts for the file. Sub-byte
activations are refused in one line naming the layer and the study option.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory_models.errors import InputError
from nas.export.c import lower, reference
from nas.export.c.harness import quantize_inputs
from search_spaces import sample_random
from tests.fixtures import require_tflm
from tests.fixtures.c_models import COVER_1D, COVER_2D, arch_1d, arch_2d, c_report, calibrated

EIGHT_BIT_1D = [c for c in COVER_1D if c[3] == 8]
EIGHT_BIT_2D = [c for c in COVER_2D if c[3] == 8]
EMITTED: set[str] = set()


def _check(arch, ds, tmp_path, n=200, seed=0):
    from memory_models.tflite_import import graph_from_tflite
    from nas.export.tflite import write_tflite
    from nas.export.tflite.check import check_tflite

    require_tflm()
    model = calibrated(arch, ds, seed)
    prog = lower(model, arch, c_report(arch), ds)
    q = quantize_inputs(model, {m: v[:n] for m, v in ds.test.x.items()})
    ref = reference.logits(prog.calls, q, prog.output_tensor)
    path = tmp_path / "model.tflite"
    info = write_tflite(prog, path)
    EMITTED.update(info["ops"])
    graph_from_tflite(path)  # m2nas reads its own file back
    r = check_tflite(path, prog, q, ref)
    print(
        f"\n[tflite] {arch.summary()}: top-1 {100 * r['top1_agreement']:.2f}%, identical "
        f"{r['samples'] - r['differing']}/{r['samples']} (max {r['max_lsb']} LSB); arena "
        f"{r['arena_measured_bytes']} B measured, {r['arena_predicted_bytes']} B predicted ({100 * r['arena_error']:+.2f}%)"
    )
    assert r["top1_agreement"] >= 0.999, r
    assert abs(r["arena_error"]) <= 0.02, r
    return r


@pytest.mark.parametrize("point,op,wb,ab", EIGHT_BIT_1D)
def test_tflite_of_the_coverage_archs_1d(watch, tmp_path, point, op, wb, ab):
    _check(arch_1d(point, op, wb, ab), watch, tmp_path)


@pytest.mark.parametrize("point,op,wb,ab", EIGHT_BIT_2D)
def test_tflite_of_the_coverage_archs_2d(avdigits, tmp_path, point, op, wb, ab):
    _check(arch_2d(point, op, wb, ab), avdigits, tmp_path)


def test_the_coverage_archs_emit_every_tflite_operator_of_the_writer():
    """Runs after the cases above: together they emit every operator the lowering can write."""
    if not EMITTED:
        pytest.skip("the coverage cases did not run")
    assert EMITTED == {
        "PAD",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "FULLY_CONNECTED",
        "MAX_POOL_2D",
        "AVERAGE_POOL_2D",
        "MEAN",
        "QUANTIZE",
        "CONCATENATION",
        "ADD",
        "MUL",
        "LOGISTIC",
        "RESHAPE",
    }


@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    space=st.sampled_from(["tiny", "small", "wide"]),
    dims=st.sampled_from(["watch", "avdigits"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_tflite_of_random_8bit_archs(space, dims, seed, request, tmp_path_factory):
    from search_spaces.space import space_from_dict

    ds = request.getfixturevalue(dims)
    sp = space_from_dict({"preset": space, "act_bits": [8]}, "test")
    arch = sample_random(random.Random(seed), sp, ds.modalities, ds.n_classes)
    _check(arch, ds, tmp_path_factory.mktemp("tfl"), n=64, seed=seed % 1000)


def test_sub_byte_activations_are_refused_naming_the_layer(watch, tmp_path):
    from nas.export.tflite import write_tflite

    arch = arch_1d("late", "concat", 2, 4)
    prog = lower(calibrated(arch, watch), arch, c_report(arch), watch)
    with pytest.raises(
        InputError, match=r"is 4-bit; TFLite Micro's kernels take int8 activations.*act_bits = \[8\]"
    ):
        write_tflite(prog, tmp_path / "m.tflite")
    assert not (tmp_path / "m.tflite").exists()
