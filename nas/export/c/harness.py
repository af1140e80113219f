"""Host harness for the generated C model: compile it, feed it a split, read back the logits.

The harness (``harness.c``) reads ``N * M2NAS_INPUT_TOTAL_SIZE`` int8 values (per sample, each
modality's tensor in turn), runs ``m2nas_infer_all`` on every sample and writes ``N *
M2NAS_NUM_CLASSES`` int8 logits. With a third argument R it runs the whole input R times and prints
``ns_per_inference <t>`` (CPU time, ``clock()``) to stdout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import torch

HARNESS_C = r"""/* m2nas host harness: int8 inputs file -> int8 logits file (see nas/export/c/harness.py). */
#include "model.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv)
{
    FILE *f;
    long size, n, i, r, reps = 1;
    int8_t *in, *out;
    const int8_t *ptrs[M2NAS_NUM_INPUTS];
    clock_t t0, t1;
    if (argc < 3) {
        fprintf(stderr, "usage: %s inputs.bin logits.bin [repeats]\n", argv[0]);
        return 2;
    }
    if (argc > 3)
        reps = atol(argv[3]);
    f = fopen(argv[1], "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 2;
    }
    n = size / M2NAS_INPUT_TOTAL_SIZE;
    in = (int8_t *)malloc((size_t)size + 1);
    out = (int8_t *)malloc((size_t)n * M2NAS_NUM_CLASSES + 1);
    if (!in || !out || (long)fread(in, 1, (size_t)size, f) != size) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 2;
    }
    fclose(f);
    t0 = clock();
    for (r = 0; r < reps; ++r)
        for (i = 0; i < n; ++i) {
            int k;
            const int8_t *p = in + i * M2NAS_INPUT_TOTAL_SIZE;
            for (k = 0; k < M2NAS_NUM_INPUTS; ++k) {
                ptrs[k] = p;
                p += m2nas_input_sizes[k];
            }
            m2nas_infer_all(ptrs, out + i * M2NAS_NUM_CLASSES);
        }
    t1 = clock();
    if (argc > 3)
        printf("ns_per_inference %.1f\n", 1e9 * (double)(t1 - t0) / CLOCKS_PER_SEC / (double)(n * reps));
    f = fopen(argv[2], "wb");
    if (!f || (long)fwrite(out, 1, (size_t)n * M2NAS_NUM_CLASSES, f) != n * M2NAS_NUM_CLASSES) {
        fprintf(stderr, "cannot write %s\n", argv[2]);
        return 2;
    }
    fclose(f);
    free(in);
    free(out);
    return 0;
}
"""

STRICT_FLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined"]
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:exitcode=23",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=24",
}


def compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")


def write_harness(out_dir: str | Path) -> Path:
    path = Path(out_dir) / "harness.c"
    path.write_text(HARNESS_C)
    return path


def compile_harness(
    c_dir: str | Path,
    exe: str | Path,
    flags: list[str] | None = None,
    defines: dict[str, object] | None = None,
) -> subprocess.CompletedProcess:
    """Compile model.c + harness.c of `c_dir` into `exe`; returns the completed process (check rc)."""
    c_dir = Path(c_dir)
    harness = c_dir / "harness.c"
    if not harness.exists():
        write_harness(c_dir)
    cmd = [compiler() or "gcc", *(STRICT_FLAGS if flags is None else flags)]
    cmd += [f"-D{k}={v}" for k, v in (defines or {}).items()]
    cmd += ["-I", str(c_dir), str(c_dir / "model.c"), str(harness), "-o", str(exe)]
    return subprocess.run(cmd, capture_output=True, text=True)


def quantize_inputs(model, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The int8 values the model's input quantizers produce (what the C entry point takes)."""
    from .emit import _act_quantizer, _qinfo

    out = {}
    for m in model.modalities:
        _, tq = _act_quantizer(model.branches[m].input_q)
        qi = _qinfo(tq)
        t = torch.from_numpy(np.ascontiguousarray(x[m], dtype=np.float32))
        q = torch.div(t, qi.scale_t).round_().clamp_(qi.lo, qi.hi)
        out[m] = q.to(torch.int8).numpy()
    return out


def write_inputs(model, x: dict[str, np.ndarray], path: str | Path) -> int:
    """Write a split's inputs as the harness reads them; returns the number of samples."""
    q = quantize_inputs(model, x)
    n = len(next(iter(q.values())))
    parts = [q[m].reshape(n, -1) for m in model.modalities]
    np.concatenate(parts, axis=1).astype(np.int8).tofile(str(path))
    return n


def run_harness(
    exe: str | Path,
    inputs: str | Path,
    logits: str | Path,
    classes: int,
    repeats: int | None = None,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess, np.ndarray | None]:
    """Run the harness; the logits, or None when it failed (non-zero exit or a sanitizer report)."""
    args = [str(exe), str(inputs), str(logits)] + ([str(repeats)] if repeats else [])
    proc = subprocess.run(
        args, capture_output=True, text=True, env={**os.environ, **SANITIZER_ENV, **(env or {})}
    )
    out = None
    if proc.returncode == 0 and "runtime error:" not in proc.stderr:
        out = np.fromfile(str(logits), dtype=np.int8).reshape(-1, classes).astype(np.int64)
    return proc, out


def torch_int_logits(model, x: dict[str, np.ndarray], batch: int = 512) -> np.ndarray:
    """The Brevitas model's logits on the output quantizer's integer grid."""
    from .emit import _act_quantizer, _qinfo

    _, tq = _act_quantizer(model.head.classifier_act)
    s = _qinfo(tq).scale_t
    outs = []
    n = len(next(iter(x.values())))
    was = model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, n, batch):
            xb = {m: torch.from_numpy(np.ascontiguousarray(x[m][i : i + batch])) for m in model.modalities}
            outs.append(torch.round(model(xb) / s).to(torch.int64).numpy())
    model.train(was)
    return np.concatenate(outs)
