"""Every build of the generated C against the integer reference, exactly.

    from nas.export.c import verify
    checks = verify.host_builds(c_dir, prog, "test_inputs.bin", ref_logits, work_dir)
    problem = verify.trace_check(c_dir, prog, q_inputs, work_dir)

* :func:`host_builds`: ``model.c`` + ``harness.c`` built as a user builds them (the export README's
  ``gcc -std=c99 -O2 -Wall -Wextra -Werror``, and ``-Os``, the size build), run on a split; each
  build's logits against the reference's (:func:`nas.export.c.reference.compare_logits`). No
  sanitizer: instrumentation changes what the optimiser does, and a miscompile (GCC 12.2 deleting
  whole kernel calls, see ``m2_kernels.h``) only shows in the build a user ships.
* :func:`trace_check`: a debug build whose hooks fill the arena with a canary before each inference
  and write it out before every step. Each step must change only the bytes of its planned outputs
  and scratch, and leave its outputs equal to the reference's tensors. The first step that does not
  is named -- a lifetime the planner got wrong, a kernel writing past its buffer, or a wrong result.

Nothing here prints.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from . import reference
from .harness import compiler, write_harness
from .packing import unpack

WARNINGS = ["-std=c99", "-Wall", "-Wextra", "-Werror"]
HOST_BUILDS = {"gcc -O2": ["-O2"], "gcc -Os": ["-Os"]}  # the README's build, and the size build
TRACE_SAMPLES = 8


class BuildError(RuntimeError):
    """A build of the generated code did not compile or did not run."""


@dataclass
class BuildCheck:
    build: str
    comparison: dict[str, Any]  # reference.compare_logits

    @property
    def passed(self) -> bool:
        return self.comparison["differing"] == 0

    def describe(self) -> str:
        c = self.comparison
        if self.passed:
            return f"{self.build}: identical int8 logits on {c['samples']:,} / {c['samples']:,} samples"
        return (
            f"{self.build}: int8 logits differ from the integer reference on {c['differing']:,} / {c['samples']:,} "
            f"samples (first: sample {c['first_differing']}, max {c['max_lsb']} LSB, top-1 agreement "
            f"{100 * c['top1_agreement']:.1f}%)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"build": self.build, "passed": self.passed, **self.comparison}


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    except OSError as e:  # the compiler ($CC) or the program is not there
        raise BuildError(f"{what}: cannot run {cmd[0]} ({e.strerror or e})") from None
    if proc.returncode != 0:
        raise BuildError(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc


def build_and_run(c_dir: Path, flags: list[str], inputs: Path, classes: int, work: Path) -> np.ndarray:
    """Compile model.c + harness.c of `c_dir` with `flags` and run it on `inputs`; the int8 logits."""
    c_dir, work = Path(c_dir), Path(work)
    harness = c_dir / "harness.c"
    if not harness.exists():
        write_harness(c_dir)
    exe = work / "model"
    cc = compiler() or "gcc"
    _run(
        [cc, *WARNINGS, *flags, str(c_dir / "model.c"), str(harness), "-o", str(exe)],
        f"{cc} {' '.join(flags)}",
    )
    out = work / "logits.bin"
    _run([str(exe), str(inputs), str(out)], f"the {' '.join(flags)} build on {Path(inputs).name}")
    return np.fromfile(str(out), dtype=np.int8).reshape(-1, classes).astype(np.int64)


def host_builds(
    c_dir: Path, prog, inputs: Path, ref: np.ndarray, work: Path | None = None
) -> list[BuildCheck]:
    """Each host build's logits on `inputs` against the reference's `ref` (one row per sample)."""
    classes = len(prog.output["classes"])
    checks = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in HOST_BUILDS.items():
            d = Path(work or tmp) / name.replace(" ", "_").replace("-", "")
            d.mkdir(parents=True, exist_ok=True)
            got = build_and_run(c_dir, flags, inputs, classes, d)
            checks.append(BuildCheck(f"host {name}", reference.compare_logits(got, ref)))
    return checks


def _trace_build(c_dir: Path, work: Path) -> Path:
    src = resources.files(__package__).joinpath("csrc")
    for name in ("trace.c", "trace.h"):
        (work / name).write_text(src.joinpath(name).read_text())
    harness = c_dir / "harness.c"
    if not harness.exists():
        write_harness(c_dir)
    exe = work / "trace"
    cc = compiler() or "gcc"
    hooks = [
        "-include",
        str(work / "trace.h"),
        "-DM2NAS_BEGIN_HOOK()=m2nas_trace_begin(A)",
        "-DM2NAS_OP_HOOK(s)=m2nas_trace_step(A)",
    ]
    cmd = [cc, *WARNINGS, "-O2", *hooks, "-I", str(c_dir), "-I", str(work)]
    _run(
        [*cmd, str(c_dir / "model.c"), str(harness), str(work / "trace.c"), "-o", str(exe)], "the trace build"
    )
    return exe


def _changed_outside(before: np.ndarray, after: np.ndarray, regions: list[tuple[int, int]]) -> np.ndarray:
    allowed = np.zeros(len(before), bool)
    for off, size in regions:
        allowed[off : off + size] = True
    return np.flatnonzero((before != after) & ~allowed)


def trace_check(c_dir: Path, prog, q: dict[str, np.ndarray], work: Path | None = None) -> str | None:
    """The arena, step by step, on the first TRACE_SAMPLES samples of the quantized inputs `q`
    ({modality: int8 array}): None when every step wrote only its outputs and scratch and produced
    the reference's values, else one line naming the first step (and sample) that did not."""
    mods = [d["modality"] for d in prog.inputs]
    n = min(TRACE_SAMPLES, len(q[mods[0]]))
    q = {m: np.asarray(q[m][:n]) for m in mods}
    env = reference.run(prog.calls, q, prog.output_tensor)
    with tempfile.TemporaryDirectory() as tmp:
        w = Path(work or tmp)
        w.mkdir(parents=True, exist_ok=True)
        exe = _trace_build(Path(c_dir), w)
        inputs = w / "trace_inputs.bin"
        np.concatenate([q[m].reshape(n, -1) for m in mods], axis=1).astype(np.int8).tofile(inputs)
        trace_file = w / "trace.bin"
        _run(
            [str(exe), str(inputs), str(w / "trace_logits.bin")],
            "the trace build",
            {"M2NAS_TRACE_FILE": str(trace_file)},
        )
        snaps = np.fromfile(trace_file, dtype=np.uint8)
    arena, steps = prog.arena_bytes, len(prog.steps)
    if snaps.size != n * (steps + 2) * arena:
        return f"the trace build wrote {snaps.size} bytes, expected {n} x {steps + 2} x {arena}"
    snaps = snaps.reshape(n, steps + 2, arena)
    for i in range(n):
        problem = _check_sample(prog, snaps[i], env, i)
        if problem is not None:
            return f"sample {i}: {problem}"
    return None


def _check_sample(prog, snaps: np.ndarray, env: dict[str, np.ndarray], i: int) -> str | None:
    stray = _changed_outside(snaps[0], snaps[1], prog.input_regions)
    if stray.size:
        return f"loading the inputs wrote {stray.size} arena bytes outside them (first at byte {stray[0]})"
    for s, step in enumerate(prog.steps):
        where = f"step {s} ({step['op']}, {step['kind']})"
        stray = _changed_outside(snaps[s + 1], snaps[s + 2], prog.step_writes[s])
        if stray.size:
            return (
                f"{where} wrote {stray.size} arena bytes outside its planned outputs and scratch "
                f"(first at byte {stray[0]})"
            )
        for t in prog.step_outputs[s]:
            nbytes = -(-t.numel * t.bits // 8)
            got = unpack(snaps[s + 2][t.offset : t.offset + nbytes].tobytes(), t.bits, t.numel, t.signed)
            want = env[t.name][i].reshape(-1)
            bad = np.flatnonzero(got != want)
            if bad.size:
                return (
                    f"{where}: {bad.size} of {t.numel} elements of {t.name} differ from the integer reference "
                    f"(first: element {bad[0]}, {got[bad[0]]} instead of {want[bad[0]]})"
                )
    return None
