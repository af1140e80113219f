"""The generated C model on emulated Cortex-M cores: build it, run a split, count instructions.

    from nas.export.c import cortexm
    if cortexm.missing() is None:
        res = cortexm.run_split(c_dir, "m4", inputs_bin, classes, work_dir)

Two of QEMU's MPS2 boards stand in for the cores the device files name: ``mps2-an386`` (Cortex-M4F,
``-mcpu=cortex-m4 -mfpu=fpv4-sp-d16``) and ``mps2-an500`` (Cortex-M7, ``-mfpu=fpv5-d16``). The
project's own start-up code and linker scripts (``cortexm/``, package data) make a bare program of
``model.c`` and a target harness (``cortexm/main.c``) that reads the inputs and writes the logits
through semihosting.

What is measured, and how: QEMU runs with ``-icount shift=0``, so every executed instruction
advances virtual time by exactly 1 ns; the board's CMSDK APB timer 0 counts that time at 25 MHz,
one tick per 40 instructions. The harness reads the timer around each inference (and, in a
profiling build, at every step boundary of the schedule), so the figures are *instructions
executed on an emulated core* -- not cycles, not a board: a real core's cycles per instruction
depend on its pipeline, flash wait states and caches, which QEMU does not model. Per-inference
counts are exact to one tick (40 instructions); per-op counts are sums over many samples.

Nothing here prints; ``nas.cli`` does.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

INSTRUCTIONS_PER_TICK = 40  # -icount shift=0: 1 ns per instruction; the APB timer ticks at 25 MHz
CC = "arm-none-eabi-gcc"
SIZE = "arm-none-eabi-size"
QEMU = "qemu-system-arm"
FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-mthumb", "-ffunction-sections", "-fdata-sections"]
METHOD = (
    "instructions executed on an emulated core: qemu-system-arm -icount shift=0 (1 instruction = 1 ns of "
    "virtual time), CMSDK APB timer 0 at 25 MHz read around each inference (1 tick = 40 instructions); "
    "not cycles, not a board"
)


class CortexMError(RuntimeError):
    """Building or running the model on an emulated core failed."""


@dataclass(frozen=True)
class Core:
    name: str  # "m4", "m7"
    cpu: str  # Arm's name of the core
    board: str  # QEMU machine
    flags: tuple[str, ...]
    ld: str  # linker script in cortexm/


CORES: dict[str, Core] = {
    "m4": Core(
        "m4",
        "cortex-m4",
        "mps2-an386",
        ("-mcpu=cortex-m4", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"),
        "mps2_an386.ld",
    ),
    "m7": Core(
        "m7",
        "cortex-m7",
        "mps2-an500",
        ("-mcpu=cortex-m7", "-mfloat-abi=hard", "-mfpu=fpv5-d16"),
        "mps2_an500.ld",
    ),
}


@dataclass
class SplitRun:
    core: str
    logits: np.ndarray  # (N, classes) int64
    instructions: np.ndarray  # (N,) per inference
    profile: np.ndarray | None  # (steps + 2,) instructions summed over samples: load, steps..., read-out
    seconds: float  # host wall time of the emulation
    stack_bytes: int  # the most stack an inference used (painted-stack high-water mark)

    @property
    def per_inference(self) -> float:
        return float(self.instructions.mean())


def missing() -> str | None:
    """Why the Cortex-M checks cannot run here (None when they can)."""
    gone = [t for t in (CC, SIZE, QEMU) if shutil.which(t) is None]
    if gone:
        return (
            f"needs {', '.join(gone)} (Debian: gcc-arm-none-eabi, libnewlib-arm-none-eabi, qemu-system-arm)"
        )
    return None


def support_dir() -> Path:
    return Path(str(resources.files(__package__).joinpath("cortexm")))


def _core(core: str | Core) -> Core:
    if isinstance(core, Core):
        return core
    if core not in CORES:
        raise ValueError(f"unknown core {core!r} (known: {', '.join(CORES)})")
    return CORES[core]


def build(
    c_dir: str | Path, core: str | Core, exe: str | Path, profile: bool = False, opt: str = "-O2"
) -> Path:
    """Link model.c of `c_dir` with the target harness and start-up code into an ELF for `core`."""
    c = _core(core)
    c_dir, sup = Path(c_dir), support_dir()
    cmd = [CC, *FLAGS, opt, *c.flags, "-I", str(c_dir), "-I", str(sup)]
    if profile:
        cmd += ["-DM2NAS_PROFILE", "-include", str(sup / "profile.h")]
    cmd += [str(c_dir / "model.c"), str(sup / "main.c"), str(sup / "startup.c")]
    cmd += ["-nostartfiles", "-T", str(sup / c.ld), "-Wl,--gc-sections", "-lgcc", "-o", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CortexMError(f"{CC} for {c.cpu} failed:\n{proc.stderr[-4000:]}")
    return Path(exe)


def emulate(
    exe: str | Path, core: str | Core, work_dir: str | Path, timeout: float
) -> subprocess.CompletedProcess:
    """Run an ELF on the core's board in `work_dir` (semihosting files are relative to it)."""
    c = _core(core)
    cmd = [
        QEMU, "-M", c.board, "-display", "none", "-serial", "null", "-monitor", "none",
        "-semihosting-config", "enable=on,target=native", "-icount", "shift=0",
        "-kernel", str(Path(exe).resolve()),
    ]  # fmt: skip
    try:
        return subprocess.run(cmd, cwd=str(work_dir), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CortexMError(f"{c.board}: the emulated run took longer than {timeout:.0f} s") from None


def run_split(
    c_dir: str | Path,
    core: str | Core,
    inputs: str | Path,
    classes: int,
    work_dir: str | Path | None = None,
    profile: bool = False,
    timeout: float = 600.0,
) -> SplitRun:
    """Build for `core`, run every sample of `inputs` (the host harness's format) on the emulated core."""
    c = _core(core)
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(work_dir or tmp)
        wd.mkdir(parents=True, exist_ok=True)
        exe = build(c_dir, c, wd / f"model_{c.name}{'_prof' if profile else ''}.elf", profile=profile)
        shutil.copyfile(inputs, wd / "inputs.bin")
        for f in ("logits.bin", "ticks.bin", "profile.bin", "stack.bin"):
            (wd / f).unlink(missing_ok=True)
        t0 = time.perf_counter()
        proc = emulate(exe, c, wd, timeout)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            why = {2: "cannot open a file", 3: "short read", 4: "cannot write", 99: "CPU fault"}
            raise CortexMError(
                f"{c.board}: the model exited with status {proc.returncode} "
                f"({why.get(proc.returncode, 'emulator error')}): {proc.stderr[-2000:]}"
            )
        logits = np.fromfile(wd / "logits.bin", dtype=np.int8).reshape(-1, classes).astype(np.int64)
        ticks = np.fromfile(wd / "ticks.bin", dtype="<u4").astype(np.int64)
        prof = None
        if profile:
            prof = np.fromfile(wd / "profile.bin", dtype="<u4").astype(np.int64) * INSTRUCTIONS_PER_TICK
        stack = int(np.fromfile(wd / "stack.bin", dtype="<u4")[0])
    return SplitRun(c.name, logits, ticks * INSTRUCTIONS_PER_TICK, prof, seconds, stack)


def object_size(c_dir: str | Path, core: str | Core = "m4", opt: str = "-Os") -> dict[str, int]:
    """text / data / bss of model.o built for `core` (what the model itself puts in flash and RAM)."""
    c = _core(core)
    with tempfile.TemporaryDirectory() as tmp:
        obj = Path(tmp) / "model.o"
        proc = subprocess.run(
            [CC, *FLAGS, opt, *c.flags, "-c", str(Path(c_dir) / "model.c"), "-o", str(obj)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise CortexMError(f"{CC} -c model.c for {c.cpu} failed:\n{proc.stderr[-4000:]}")
        out = subprocess.run([SIZE, str(obj)], capture_output=True, text=True, check=True).stdout
    text, data, bss = (int(v) for v in out.splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss}


def measure(
    c_dir: str | Path,
    inputs: str | Path,
    classes: int,
    steps: list[dict],
    cores=("m4", "m7"),
    profile_samples: int | None = None,
    work_dir: str | Path | None = None,
    timeout: float = 600.0,
) -> dict:
    """The measured cost of a generated model: per core, instructions per inference (plain build, every
    sample of `inputs`) and per step (profiling build, the first `profile_samples`), plus the plain
    build's logits (``_logits``, for the caller to check against PyTorch).

    `steps`: the program's schedule (``write_c_model(...)["steps"]``)."""
    out: dict = {"method": METHOD, "cores": {}}
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(work_dir or tmp)
        prof_inputs = Path(inputs)
        if profile_samples is not None:
            prof_inputs = wd / "profile_inputs.bin"
            data = np.fromfile(inputs, dtype=np.int8)
            per = _sample_bytes(c_dir)
            prof_inputs.write_bytes(data[: per * profile_samples].tobytes())
        for name in cores:
            c = _core(name)
            plain = run_split(c_dir, c, inputs, classes, wd / c.name, timeout=timeout)
            prof = run_split(c_dir, c, prof_inputs, classes, wd / c.name, profile=True, timeout=timeout)
            n, m = len(plain.instructions), len(prof.logits)
            per_step = prof.profile / max(m, 1)
            out["cores"][name] = {
                "cpu": c.cpu,
                "board": c.board,
                "samples": n,
                "instructions_per_inference": round(plain.per_inference),
                "instructions_min": int(plain.instructions.min()) if n else 0,
                "instructions_max": int(plain.instructions.max()) if n else 0,
                "stack_bytes": plain.stack_bytes,
                "emulation_seconds": round(plain.seconds + prof.seconds, 2),
                "profile_samples": m,
                "profile_instructions_per_inference": round(float(per_step.sum())),
                "per_op": [{**s, "instructions": round(float(per_step[i + 1]))} for i, s in enumerate(steps)],
                "load_instructions": round(float(per_step[0])),
                "readout_instructions": round(float(per_step[-1])),
                "_logits": plain.logits,
            }
    return out


def _sample_bytes(c_dir: str | Path) -> int:
    """M2NAS_INPUT_TOTAL_SIZE of a generated model.h."""
    for line in (Path(c_dir) / "model.h").read_text().splitlines():
        if line.startswith("#define M2NAS_INPUT_TOTAL_SIZE "):
            return int(line.split()[2])
    raise CortexMError(f"{c_dir}/model.h defines no M2NAS_INPUT_TOTAL_SIZE")
