"""The convolution and pointwise / linear kernels' Arm paths against their portable C, layer by layer
(issue 15): every fast path of a Cortex-M build (DSP dot products, the widened-lane kernels of the
speed build, hand-scheduled loops, blocked requantization) must give the portable loops' bytes.

Property-based: hypothesis draws batches of layers across the cases those paths split on (weight,
input and output bit-widths, signedness, column lengths on both sides of every stack limit, rows
that start inside a byte, output channel counts around the blocks of 2 / 4 / 16, odd position
counts, per-channel or shared shifts on both sides of 32, multipliers that make exact ties of the
rounding, biases near the int32 limits, output
ranges that saturate or not, sigmoid LUTs). Each batch runs once through the host build and once
through the M4 (-O2 and -Os) and M7 (-O2) builds on QEMU; the outputs must be identical.

Skipped without the Arm toolchain and QEMU; under CI=true they are required (the tests fail).
"""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas.export.c import cortexm
from nas.export.c.packing import requant_mode

pytestmark = pytest.mark.skipif(
    cortexm.missing() is not None and os.environ.get("CI") != "true",
    reason=f"{cortexm.missing()} (required under CI=true)",
)

DRIVER = Path(__file__).resolve().parents[2] / "fixtures" / "kernel_check.c"
CSRC = cortexm.support_dir().parent / "csrc"
BUILDS = [("m4", "-O2"), ("m4", "-Os"), ("m7", "-O2")]


@pytest.fixture(scope="module")
def binaries(tmp_path_factory):
    d = tmp_path_factory.mktemp("kcheck")
    host = d / "host"
    cmd = [
        "gcc",
        "-std=c99",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-O2",
        "-I",
        str(CSRC),
        str(DRIVER),
        "-o",
        str(host),
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    arm = {}
    sup = cortexm.support_dir()
    for core, opt in BUILDS:
        c = cortexm.CORES[core]
        exe = d / f"{core}{opt}.elf"
        cmd = [cortexm.CC, *cortexm.FLAGS, opt, *c.flags, "-I", str(CSRC), "-I", str(sup), str(DRIVER)]
        cmd += [str(sup / "startup.c"), "-nostartfiles", "-T", str(sup / c.ld), "-Wl,--gc-sections", "-lgcc"]
        proc = subprocess.run([*cmd, "-o", str(exe)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-4000:]
        arm[(core, opt)] = exe
    return host, arm


def _pack(fields: np.ndarray, bits: int) -> bytes:
    """Fields (already in range, two's complement for signed) packed low bits first."""
    per = 8 // bits
    u = np.asarray(fields, np.int64) & ((1 << bits) - 1)
    u = np.concatenate([u, np.zeros(-len(u) % per, np.int64)]).reshape(-1, per)
    return (u << (bits * np.arange(per))).sum(1).astype(np.uint8).tobytes()


@st.composite
def layer(draw):
    kind = draw(st.sampled_from(["conv", "pw", "dw"]))
    wbits, xbits, ybits = (draw(st.sampled_from([2, 4, 8])) for _ in range(3))
    xsgn = draw(st.booleans())
    # column lengths around M2_PW_CHUNK (64), M2_PW_LANES (128) and M2_MV_K (320); odd ones too
    cin = draw(
        st.one_of(st.integers(1, 12), st.sampled_from([16, 21, 32, 33, 63, 64, 65, 96, 127, 128, 129, 160]))
    )
    if kind == "dw":
        # filters inside and outside the speed build's pair limits (up to 32 pairs, 64 taps), rows
        # longer than one staged tile (96 elements), strides and padding up to the filter's half
        kh, kw = draw(st.sampled_from([(1, 3), (1, 5), (1, 7), (1, 9), (3, 3), (5, 5), (2, 3), (3, 5), (8, 8),
                                       (9, 9), (1, 1), (1, 66)]))  # fmt: skip
        cin = min(cin, 24)
        ih = draw(st.integers(kh, kh + (2 if kh == 1 else 7)))
        iw = draw(st.integers(kw, kw + (130 if kh == 1 else 12)))
        sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
        oh, ow = (ih + 2 * ph - kh) // sh + 1, (iw + 2 * pw - kw) // sw + 1
    elif kind == "conv":
        kh, kw = draw(st.sampled_from([(1, 3), (1, 5), (1, 7), (1, 9), (3, 3), (1, 1), (2, 3)]))
        cin = min(cin, 400 // (kh * kw))
        ih = draw(st.integers(kh, kh + 2))
        iw = draw(st.integers(kw, kw + 6))
        sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
        ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
        oh, ow = (ih + 2 * ph - kh) // sh + 1, (iw + 2 * pw - kw) // sw + 1
    else:
        kh = kw = sh = sw = 1
        ph = pw = 0
        ih, iw = 1, draw(st.sampled_from([1, 1, 2, 3, 5, 8]))  # linear layers are one position
        oh, ow = ih, iw
    cout = cin if kind == "dw" else draw(st.sampled_from([1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33]))
    signed_out = draw(st.booleans())
    top = 1 << (ybits - 1 if signed_out else ybits)
    lo, hi = (-top, top - 1) if signed_out else (0, top - 1)
    if draw(st.booleans()):  # a narrower range: the generic clamp
        lo, hi = lo + draw(st.integers(0, 1)), hi - draw(st.integers(0, 2))
    has_lut = kind == "pw" and hi - lo < 256 and draw(st.integers(0, 4)) == 0
    shared = draw(st.booleans())  # one shift for every channel (per-tensor weights) or per channel
    return dict(
        kind=kind, cin=cin, ih=ih, iw=iw, cout=cout, kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw,
        xbits=xbits, xsgn=int(xsgn), wbits=wbits, ybits=ybits, lo=lo, hi=hi, lut=has_lut,
        oh=oh, ow=ow, shared=shared, seed=draw(st.integers(0, 2**32 - 1)),
        big_bias=draw(st.integers(0, 6)) == 0, small_shift=draw(st.integers(0, 5)) == 0,
        ties=draw(st.integers(0, 4)) == 0,
    )  # fmt: skip


def _case(c) -> bytes:
    rng = np.random.default_rng(c["seed"])
    K = (1 if c["kind"] == "dw" else c["cin"]) * c["kh"] * c["kw"]  # weights per output channel
    xb, wb = c["xbits"], c["wbits"]
    x = rng.integers(-(1 << (xb - 1)), 1 << (xb - 1), c["cin"] * c["ih"] * c["iw"])
    if not c["xsgn"]:
        x = rng.integers(0, 1 << xb, c["cin"] * c["ih"] * c["iw"])
    w = rng.integers(-(1 << (wb - 1)) + 1, 1 << (wb - 1), c["cout"] * K)  # narrow range
    if c["big_bias"]:
        bias = rng.choice([2**31 - 1 - 5, -(2**31) + 3, 2**30, -(2**30) - 1], c["cout"])
    else:
        bias = rng.integers(-3000, 3000, c["cout"])
    mult = rng.integers(1 << 30, 1 << 31, c["cout"])
    if c["shared"]:
        shift = np.full(
            c["cout"], int(rng.integers(33, 45)) if not c["small_shift"] else int(rng.integers(8, 33))
        )
    else:
        # half the time all above 32: the speed build's fused requantization with a shift per channel
        shift = rng.integers(8 if c["small_shift"] else int(rng.choice([30, 33])), 45, c["cout"])
    if c["ties"]:  # zero low words, a quarter of them exact ties (the round-half-even path), in range
        x = rng.integers(-2 if c["xsgn"] else 0, 2, x.size)
        w = rng.integers(-1, 2, w.size)
        bias = rng.integers(-8, 9, c["cout"])
        mult = np.full(c["cout"], 1 << 30)
        a, b = c.get("tie_shifts", (33, 35))
        shift = np.full(c["cout"], int(rng.integers(a, b))) if c["shared"] else rng.integers(a, b, c["cout"])
    lut = rng.integers(c["lo"], c["hi"] + 1, 256) if c["lut"] else None
    head = [
        {"conv": 0, "pw": 1, "dw": 2}[c["kind"]],
        c["cin"],
        c["ih"],
        c["iw"],
        c["cout"],
        c["kh"],
        c["kw"],
        c["sh"],
        c["sw"],
    ]
    head += [
        c["ph"],
        c["pw"],
        xb,
        c["xsgn"],
        wb,
        c["ybits"],
        c["lo"],
        c["hi"],
        int(c["lut"]),
        c["lo"],
        c["oh"],
        c["ow"],
        requant_mode(shift, bias),  # what the exporter passes for these constants
    ]
    out = struct.pack("<22i", *head) + _pack(x, xb) + _pack(w, wb)
    out += (
        np.asarray(bias, "<i4").tobytes()
        + np.asarray(mult, "<i4").tobytes()
        + np.asarray(shift, "i1").tobytes()
    )
    if lut is not None:
        out += _pack(lut, 8)
    return out


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(layer(), min_size=30, max_size=30))
def test_arm_kernels_give_the_portable_bytes(binaries, tmp_path_factory, layers):
    _check(binaries, tmp_path_factory.mktemp("case"), layers)


def _tie_layer(
    kind: str,
    cin: int,
    iw: int,
    cout: int,
    kw: int,
    xsgn: int,
    signed_out: bool,
    shared: bool,
    seed: int,
    ybits: int = 8,
) -> dict:
    top = 1 << (ybits - 1 if signed_out else ybits)
    lo, hi = (-top, top - 1) if signed_out else (0, top - 1)
    ow = iw if kind == "pw" else (iw + 2 * (kw // 2) - kw) + 1
    return dict(
        kind=kind, cin=cin, ih=1, iw=iw, cout=cout, kh=1, kw=kw, sh=1, sw=1, ph=0, pw=kw // 2,
        xbits=8, xsgn=xsgn, wbits=8, ybits=ybits, lo=lo, hi=hi, lut=False, oh=1, ow=ow, shared=shared,
        seed=seed, big_bias=False, small_shift=False, ties=True,
        # depthwise also scales the sum of a shift up to 32 to a shift of 33
        tie_shifts=(30, 35) if kind == "dw" else (33, 35),
    )  # fmt: skip


def test_fused_requantization_rounds_ties_to_even(binaries, tmp_path):
    """The speed paths requantize with a shortcut that is exact except on a zero low word (in assembly
    for byte weights, in C for depthwise): layers built to land on that case (multiplier 2^30, shift 33
    or 34; depthwise also 30 to 32, which it scales to 33) on each of them (two-position pointwise,
    linear, im2col conv, depthwise with 1-D filters of 2 to 4 pairs kept in registers and with 8-, 4-
    and 2-bit outputs; uint8 and int8 outputs; one shift or one a channel)."""
    layers = [
        _tie_layer(kind, cin, iw, cout, kw, xsgn, signed_out, shared, seed, ybits)
        for seed, (kind, cin, iw, cout, kw, ybits) in enumerate(
            [
                ("pw", 32, 5, 7, 1, 8),
                ("pw", 64, 4, 16, 1, 8),
                ("pw", 32, 1, 17, 1, 8),
                ("pw", 60, 1, 9, 1, 8),
                ("conv", 8, 9, 9, 5, 8),
                ("dw", 6, 40, 6, 3, 8),
                ("dw", 6, 70, 6, 7, 8),
                ("dw", 5, 33, 5, 5, 4),
                ("dw", 5, 21, 5, 3, 2),
            ]
        )
        for xsgn in (0, 1)
        for signed_out in (False, True)
        for shared in (True, False)
    ]
    _check(binaries, tmp_path, layers)


def _check(binaries, d: Path, layers: list[dict]) -> None:
    host, arm = binaries
    cases = b"".join(_case(c) for c in layers)
    assert len(cases) <= 1 << 20  # the driver's buffer
    (d / "cases.bin").write_bytes(cases)
    proc = subprocess.run([str(host)], cwd=d, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    want = (d / "out.bin").read_bytes()
    assert want, "no outputs"
    for (core, opt), exe in arm.items():
        (d / "out.bin").unlink()
        proc = cortexm.emulate(exe, core, d, timeout=120)
        assert proc.returncode == 0, f"{core} {opt}: exit {proc.returncode} {proc.stderr[-2000:]}"
        got = (d / "out.bin").read_bytes()
        assert len(got) == len(want)
        if got != want:
            # name the first layer that differs
            at = 0
            for c in layers:
                n = (c["cout"] * c["oh"] * c["ow"] * c["ybits"] + 7) // 8
                if got[at : at + n] != want[at : at + n]:
                    pytest.fail(f"{core} {opt}: the outputs of {c} differ from the portable C")
                at += n
