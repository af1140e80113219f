"""Bit packing and fixed-point arithmetic shared by the C generator and its tests."""

from __future__ import annotations

import math
import re

import numpy as np

from memory_models.errors import InputError
from memory_models.ops import BITS


def pack(values, bits: int) -> bytes:
    """Pack integers at `bits` (2, 4 or 8) per element, element i at bits (i*bits) % 8 of byte
    i*bits // 8 (low bits first), two's complement for negatives: ``ceil(n * bits / 8)`` bytes."""
    v = np.asarray(values).astype(np.int64).reshape(-1)
    if bits not in BITS:
        raise ValueError(f"cannot pack {bits}-bit values (2, 4 or 8)")
    u = (v & ((1 << bits) - 1)).astype(np.uint8)
    per = 8 // bits
    pad = (-len(u)) % per
    if pad:
        u = np.concatenate([u, np.zeros(pad, np.uint8)])
    u = u.reshape(-1, per)
    out = np.zeros(len(u), np.uint8)
    for j in range(per):
        out |= (u[:, j] << (j * bits)).astype(np.uint8)
    return out.tobytes()


def unpack(data: bytes, bits: int, n: int, signed: bool) -> np.ndarray:
    """Inverse of :func:`pack`."""
    b = np.frombuffer(data, np.uint8)
    per = 8 // bits
    fields = np.stack([(b >> (j * bits)) & ((1 << bits) - 1) for j in range(per)], axis=1).reshape(-1)[:n]
    v = fields.astype(np.int64)
    if signed:
        v = np.where(v >= 1 << (bits - 1), v - (1 << bits), v)
    return v


def fixed_point(m: float, mant_bits: int = 31, max_shift: int = 62, where: str = "") -> tuple[int, int]:
    """``(mult, shift)`` with ``mult / 2^shift ~= m``, ``mult < 2^mant_bits``, ``1 <= shift <= max_shift``
    (TFLite's QuantizeMultiplier, with the shift folded into one right shift)."""
    if not (m > 0 and math.isfinite(m)):
        if m == 0:
            return 0, 1
        raise InputError(f"C export: {where}: requantization multiplier {m!r} is not a positive number")
    frac, exp = math.frexp(m)  # m = frac * 2^exp, 0.5 <= frac < 1
    mult = round(frac * (1 << mant_bits))
    if mult == 1 << mant_bits:
        mult //= 2
        exp += 1
    shift = mant_bits - exp
    if shift > max_shift:  # tiny multiplier: fewer mantissa bits (the result is ~0 anyway)
        mult = round(m * 2.0**max_shift)
        shift = max_shift
    if shift < 1:
        raise InputError(f"C export: {where}: requantization multiplier {m:.3g} is too large for fixed point")
    return int(mult), int(shift)


def shared_shift(ms: list[float], mant_bits: int = 31, where: str = "") -> tuple[list[int], int]:
    """Several multipliers over one shift: the largest gets ``mant_bits`` bits."""
    _, shift = fixed_point(max(ms), mant_bits, where=where)
    return [round(m * 2.0**shift) for m in ms], shift


def requant_mode(shifts, biases) -> int:
    """The ``ushift`` argument of ``m2_conv`` / ``m2_pwconv``: which requantization the speed build's
    widened-lane kernels may fuse into their loops (see ``m2_rq_fast`` in m2_kernels.h). The shift when
    every channel has the same one from 33 to 54, -1 when they differ but all lie there, 0 otherwise;
    with any bias of magnitude 2^30 or more, 0 (a bias plus those kernels' sums must not overflow).
    Decided here, once per layer, not per call on the target: a linear layer's scan of its channels
    cost the kernel a quarter of an instruction per MAC."""
    shifts, biases = [int(s) for s in shifts], [int(b) for b in biases]
    if not shifts or any(not 33 <= s <= 54 for s in shifts) or any(abs(b) >= 1 << 30 for b in biases):
        return 0
    return shifts[0] if len(set(shifts)) == 1 else -1


_RESERVED = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if inline int "
    "long register restrict return short signed sizeof static struct switch typedef union unsigned void "
    "volatile while logits inputs".split()
)


def c_ident(name: str) -> str:
    """A C identifier made from `name` (modality names): not a keyword nor a parameter of the API."""
    s = re.sub(r"[^0-9a-zA-Z_]", "_", name)
    if not s or s[0].isdigit():
        s = f"m_{s}"
    return f"{s}_in" if s in _RESERVED or s.startswith("m2") else s


def c_array(values, per_line: int = 16) -> str:
    vals = [str(int(v)) for v in values]
    if not vals:
        return "0"
    lines = [", ".join(vals[i : i + per_line]) for i in range(0, len(vals), per_line)]
    return "\n    " + ",\n    ".join(lines) + "\n"


def c_bytes(data: bytes, per_line: int = 20) -> str:
    hexes = [f"0x{b:02x}" for b in data]
    lines = [", ".join(hexes[i : i + per_line]) for i in range(0, len(hexes), per_line)]
    return "\n    " + ",\n    ".join(lines) + "\n"
