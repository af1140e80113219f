"""The generated C model next to onnxruntime and PyTorch, and its size next to the memory model.

Run: pytest -m bench -s tests/bench/test_bench_codegen.py

For each case (calibrated models of a 1D watch arch and a 2D avdigits arch with gate fusion):

* time per inference, batch 1, one thread, on the same int8-quantized test inputs: the C model
  (``gcc -std=c99 -O2``, host harness, ``clock()``), the Brevitas model exported with
  ``export_onnx_qcdq`` run by onnxruntime, and the Brevitas model in PyTorch (eval, no grad);
* ``size`` of the compiled ``model.o`` (text / data / bss) next to the memory model's flash figures
  (model constants, total with the runtime estimate) and SRAM (arena, arena + runtime RAM); with
  ``arm-none-eabi-gcc`` installed, also for a Cortex-M4 build (``-Os -mcpu=cortex-m4 -mthumb``).

Targets: ``bss`` is exactly the planned arena; the C model agrees with PyTorch on every input's
top-1 and is faster per inference than PyTorch.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import numpy as np
import pytest
import torch

from memory_models import evaluate
from memory_models.devices import get_device
from nas.export.c import write_c_model
from nas.export.c.harness import compile_harness, quantize_inputs, run_harness, torch_int_logits, write_inputs
from search_spaces import graph
from search_spaces.builder import Positional

pytestmark = [pytest.mark.bench, pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")]

N = 200  # test samples timed
DEVICE = "stm32f446re"
C_FLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"]


def _size(obj) -> tuple[int, int, int]:
    out = subprocess.run(["size", str(obj)], capture_output=True, text=True, check=True).stdout
    text, data, bss = (int(v) for v in out.splitlines()[1].split()[:3])
    return text, data, bss


def _time_loop(fn, n: int, min_s: float = 0.5) -> float:
    fn(0)
    reps, t0 = 0, time.perf_counter()
    while True:
        for i in range(n):
            fn(i)
        reps += 1
        dt = time.perf_counter() - t0
        if dt >= min_s:
            return dt / (reps * n)


def _cases():
    from tests.fixtures.c_models import TRAINED_ARCH
    from tests.fixtures.c_models import arch_2d as _arch_2d

    return [
        ("watch 1D late-concat (W8/4/2 A8/4)", "watch", TRAINED_ARCH),
        ("avdigits 2D late-gate (W4A8)", "avdigits", _arch_2d("late", "gate", 4, 8)),
    ]


@pytest.mark.parametrize("case", range(2))
def test_c_vs_onnxruntime_vs_pytorch(case, tmp_path):
    import onnxruntime as ort
    from brevitas.export import export_onnx_qcdq

    from nas.data import load_dataset
    from tests.fixtures.c_models import calibrated as _calibrated

    title, dataset, arch = _cases()[case]
    ds = load_dataset(dataset, seed=0)
    arch = arch.validate()
    model = _calibrated(arch, ds)
    report = evaluate(graph(arch), get_device(DEVICE))
    info = write_c_model(model, arch, report, ds, tmp_path)
    x = {m: v[:N] for m, v in ds.test.x.items()}

    # C
    proc = compile_harness(tmp_path, tmp_path / "bench", flags=C_FLAGS)
    assert proc.returncode == 0, proc.stderr
    write_inputs(model, x, tmp_path / "in.bin")
    proc, c_logits = run_harness(
        tmp_path / "bench", tmp_path / "in.bin", tmp_path / "out.bin", arch.classes, 50
    )
    assert proc.returncode == 0, proc.stderr
    c_s = float(proc.stdout.split()[1]) * 1e-9

    # The same float inputs, fake-quantized exactly as the model's input quantizers do.
    q = quantize_inputs(model, x)
    scales = {d["modality"]: d["scale"] for d in info["inputs"]}
    xf = {m: (q[m].astype(np.float32) * np.float32(scales[m])) for m in model.modalities}

    # PyTorch, batch 1, one thread
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t_in = [{m: torch.from_numpy(xf[m][i : i + 1]) for m in model.modalities} for i in range(N)]
        with torch.no_grad():
            torch_s = _time_loop(lambda i: model(t_in[i]), N)
    finally:
        torch.set_num_threads(threads)
    t_logits = torch_int_logits(model, xf)

    # onnxruntime (QCDQ), batch 1, one thread
    path = tmp_path / "model.onnx"
    pos = Positional(model)
    export_onnx_qcdq(
        pos,
        args=tuple(torch.from_numpy(xf[m][:1]) for m in model.modalities),
        export_path=str(path),
        input_names=list(model.modalities),
        output_names=["logits"],
        dynamo=False,
    )
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    o_in = [{m: xf[m][i : i + 1] for m in model.modalities} for i in range(N)]
    ort_s = _time_loop(lambda i: sess.run(None, o_in[i]), N)

    agree = float((c_logits.argmax(1) == t_logits.argmax(1)).mean())

    # sizes
    obj = tmp_path / "model.o"
    subprocess.run(["gcc", *C_FLAGS, "-c", str(tmp_path / "model.c"), "-o", str(obj)], check=True)
    text, data, bss = _size(obj)
    arm = None
    if shutil.which("arm-none-eabi-gcc"):
        aobj = tmp_path / "model_m4.o"
        r = subprocess.run(
            [
                "arm-none-eabi-gcc",
                "-std=c99",
                "-Os",
                "-mcpu=cortex-m4",
                "-mthumb",
                "-c",
                str(tmp_path / "model.c"),
                "-o",
                str(aobj),
            ],
            capture_output=True,
        )
        if r.returncode == 0:
            arm = _size(aobj)
    fl = report.flash
    print(f"\n=== {title}: {report.macs:,} MACs, {report.params:,} params, device {DEVICE} ===")
    print(f"{'engine':<34}{'us / inference':>16}{'x C':>8}")
    for name, s in (
        ("C (gcc -O2, host)", c_s),
        ("onnxruntime QCDQ (1 thread)", ort_s),
        ("PyTorch Brevitas (1 thread)", torch_s),
    ):
        print(f"{name:<34}{s * 1e6:>16.1f}{s / c_s:>8.1f}")
    print(f"top-1 agreement C vs PyTorch on {N} inputs: {100 * agree:.1f}%")
    print(f"{'size':<34}{'bytes':>16}")
    rows = [
        ("model.o text (x86-64, -O2)", text),
        ("model.o data", data),
        ("model.o bss", bss),
    ]
    if arm:
        rows += [
            ("model.o text (Cortex-M4, -Os)", arm[0]),
            ("model.o data (Cortex-M4)", arm[1]),
            ("model.o bss (Cortex-M4)", arm[2]),
        ]
    rows += [
        ("memory model: packed weights", fl.weights),
        ("memory model: weights+biases+requant", fl.weights + fl.biases + fl.quant_params),
        ("memory model: model bytes (+op table)", fl.model_bytes),
        ("memory model: kernels code (est.)", fl.kernels),
        ("memory model: flash total (+runtime)", fl.total),
        ("C constants (weights+biases+requant+LUT)", sum(info["const_bytes"].values())),
        ("memory model: arena", report.arena_bytes),
        ("memory model: SRAM (arena + runtime)", report.sram_bytes),
    ]
    for name, v in rows:
        print(f"{name:<42}{v:>8,}")
    assert bss == report.arena_bytes
    assert agree == 1.0
    assert c_s < torch_s
