"""The integer reference: the lowered program run in numpy, the oracle every C build must reproduce.

The C generator (:mod:`nas.export.c.emit`) records each kernel call it emits as a :class:`Call`: the
kernel, the tensors it reads and writes, and exactly the integer constants it passes (packed weights
unpacked, int32 biases, fixed-point multipliers and shifts, clamps, sigmoid tables). :func:`run`
executes those calls on a batch of quantized inputs with the kernels' arithmetic -- int32 sums,
bias added in int64, ``round(acc * mult / 2^shift)`` half to even, the clamp -- so its logits are
what any correct build of ``model.c`` gives, on any compiler and core. ``test_logits.bin`` is its
output, and the export requires every C build to equal it on the whole test split.

Where PyTorch (Brevitas) and this reference differ, the cause is the float requantization of the
former (``round(x * s_in * s_w / s_out)`` in float32) against the fixed-point multiplier here: a
value that lands within float rounding of a half step goes one way in one and the other way in the
other. Those are reported, not hidden (``compare_logits``).

Sums are formed in float64 matrix products: every partial sum is an integer far below 2^53, so
they are exact, and an int32 overflow (undefined in the C) is refused before it could matter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from memory_models.errors import InputError

_I32 = 2**31


@dataclass
class Call:
    """One kernel call of the generated program (``kernel`` is the C kernel's name without ``m2_``)."""

    kernel: str  # load, conv (any groups), maxpool, avgpool, concat, add, mul, view
    inputs: list[str]
    output: str
    params: dict[str, Any] = field(default_factory=dict)


def rshift_round(p: np.ndarray, shift: int | np.ndarray) -> np.ndarray:
    """``round(p / 2^shift)`` half to even on int64, as ``m2_rshift``."""
    p = np.asarray(p, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    q = p >> s
    r = p & ((np.int64(1) << s) - 1)
    half = np.int64(1) << (s - 1)
    return q + ((r > half) | ((r == half) & ((q & 1) == 1)))


def requant(acc: np.ndarray, mult, shift, lo: int, hi: int) -> np.ndarray:
    """``clamp(round(acc * mult / 2^shift), lo, hi)``; `mult` / `shift` broadcast against `acc`."""
    acc = np.asarray(acc, dtype=np.int64)
    if acc.size and np.abs(acc).max() >= 2**32:
        raise InputError("C export: a sum plus its bias exceeds the kernels' 64-bit requantization range")
    return np.clip(rshift_round(acc * np.asarray(mult, dtype=np.int64), shift), lo, hi)


def _check_i32(acc: np.ndarray, where: str) -> None:
    if acc.size and (acc.max() >= _I32 or acc.min() < -_I32):
        raise InputError(f"C export: {where}: an accumulator exceeds int32 (the kernels' sum type)")


def _windows(x: np.ndarray, kh: int, kw: int, sh: int, sw: int, oh: int, ow: int) -> np.ndarray:
    """(N, C, H, W) -> (N, C, oh, ow, kh, kw): the input window of every output position."""
    v = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    return v[:, :, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw]


def _conv(x: np.ndarray, p: dict[str, Any], name: str) -> np.ndarray:
    n = len(x)
    g = x.reshape(n, *p["in_grid"]).astype(np.float64)
    ph, pw = p["pad"]
    g = np.pad(g, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    kh, kw = p["kernel"]
    oh, ow = p["out_grid"]
    win = _windows(g, kh, kw, *p["stride"], oh, ow)  # (N, C, oh, ow, kh, kw)
    w = p["weights"].astype(np.float64)  # (cout, cin / groups, kh, kw)
    if p["groups"] == 1:
        acc = np.einsum("nchwij,ocij->nohw", win, w, optimize=True)
    else:
        acc = np.einsum("nchwij,cij->nchw", win, w[:, 0], optimize=True)
    acc = np.rint(acc).astype(np.int64)
    _check_i32(acc, name)
    cout = w.shape[0]
    acc = acc + p["bias"].reshape(1, cout, 1, 1)
    q = requant(acc, p["mult"].reshape(1, cout, 1, 1), p["shift"].reshape(1, cout, 1, 1), p["lo"], p["hi"])
    if p.get("lut") is not None:
        q = p["lut"][q - p["lut_lo"]]
    return q.reshape(n, *p["out_shape"])


def _pool(x: np.ndarray, p: dict[str, Any], kind: str) -> np.ndarray:
    n = len(x)
    oh, ow = p["out_grid"]
    win = _windows(x.reshape(n, *p["in_grid"]), *p["kernel"], *p["stride"], oh, ow)
    if kind == "maxpool":
        return win.max(axis=(4, 5)).reshape(n, *p["out_shape"])
    acc = win.sum(axis=(4, 5), dtype=np.int64)
    return requant(acc, p["mult"], p["shift"], p["lo"], p["hi"]).reshape(n, *p["out_shape"])


def _execute(c: Call, env: dict[str, np.ndarray]) -> np.ndarray:
    p = c.params
    xs = [env[t] for t in c.inputs]
    if c.kernel == "load":
        return np.clip(xs[0], p["lo"], p["hi"])
    if c.kernel == "view":
        return xs[0].reshape(len(xs[0]), *p["out_shape"])
    if c.kernel == "conv":
        return _conv(xs[0], p, c.output)
    if c.kernel in ("maxpool", "avgpool"):
        return _pool(xs[0], p, c.kernel)
    n = len(xs[0])
    if c.kernel == "concat":
        parts = [
            requant(x.reshape(n, -1), m, s, p["lo"], p["hi"])
            for x, (m, s) in zip(xs, p["pairs"], strict=True)
        ]
        return np.concatenate(parts, axis=1).reshape(n, *p["out_shape"])
    flat = [x.reshape(n, -1).astype(np.int64) for x in xs]
    if c.kernel == "add":
        acc = sum(x * m for x, m in zip(flat, p["mults"], strict=True))
        return np.clip(rshift_round(acc, p["shift"]), p["lo"], p["hi"]).reshape(n, *p["out_shape"])
    if c.kernel == "mul":
        acc = np.prod(np.stack(flat), axis=0)
        return requant(acc, p["mult"], p["shift"], p["lo"], p["hi"]).reshape(n, *p["out_shape"])
    raise InputError(f"C export: the integer reference has no kernel {c.kernel!r} ({c.output})")


def run(calls: list[Call], inputs: dict[str, np.ndarray], output: str) -> dict[str, np.ndarray]:
    """Execute `calls` (loads first, then the schedule) on int8 `inputs` ({modality: (N, ...)}).

    Returns every tensor by name, the program's `output` (the logits) among them."""
    env: dict[str, np.ndarray] = {m: np.asarray(v, dtype=np.int64) for m, v in inputs.items()}
    for c in calls:
        env[c.output] = _execute(c, env)
    if output not in env:
        raise InputError(f"C export: the program computes no tensor {output!r}")
    return env


def logits(calls: list[Call], inputs: dict[str, np.ndarray], output: str, batch: int = 128) -> np.ndarray:
    """The reference's int8 logits for every sample, `batch` samples at a time (bounded memory)."""
    n = len(next(iter(inputs.values())))
    parts = [
        run(calls, {m: v[i : i + batch] for m, v in inputs.items()}, output)[output]
        for i in range(0, n, batch)
    ]
    return np.concatenate(parts).reshape(n, -1)


def compare_logits(got: np.ndarray, ref: np.ndarray, y: np.ndarray | None = None) -> dict[str, Any]:
    """How far `got` is from the reference on the integer grid: samples differing, max LSB, top-1."""
    got, ref = np.asarray(got, dtype=np.int64), np.asarray(ref, dtype=np.int64)
    diff = (got != ref).any(axis=1)
    out: dict[str, Any] = {
        "samples": int(len(ref)),
        "differing": int(diff.sum()),
        "first_differing": int(np.argmax(diff)) if diff.any() else None,
        "max_lsb": int(np.abs(got - ref).max()) if len(ref) else 0,
        "top1_agreement": float((got.argmax(1) == ref.argmax(1)).mean()) if len(ref) else 1.0,
    }
    if y is not None:
        out["accuracy"] = float((got.argmax(1) == y).mean())
        out["reference_accuracy"] = float((ref.argmax(1) == y).mean())
    return out
