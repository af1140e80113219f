"""One run of a .tflite file in TFLite Micro's interpreter, in a process of its own:

    python -m nas.export.tflite.probe MODEL ARENA_BYTES INPUTS.npz [LOGITS.npy]

Some TFLite Micro kernels crash (SIGSEGV) instead of reporting an arena that is too small, so every
run is isolated here: exit 0 when the model allocates and invokes (and, given LOGITS.npy, its int8
outputs for every sample of INPUTS.npz are written there), 3 when TFLite Micro refuses the arena.
Imports only numpy and tflite-micro; TFLite Micro's own messages go to stderr."""

from __future__ import annotations

import sys

import numpy as np


def main(argv: list[str]) -> int:
    from tflite_micro.python.tflite_micro import runtime

    model, arena, inputs = argv[0], int(argv[1]), np.load(argv[2])
    xs = [inputs[f"x{i}"] for i in range(len(inputs.files))]
    n = len(xs[0]) if argv[3:] else 1
    try:
        it = runtime.Interpreter.from_file(model, arena_size=arena)
        out = []
        for s in range(n):
            for i, x in enumerate(xs):
                it.set_input(x[s : s + 1], i)
            it.invoke()
            out.append(np.array(it.get_output(0)).reshape(-1))
    except Exception as e:  # noqa: BLE001 - "Arena size is too small" and the like
        print(f"tflite-micro: {e}", file=sys.stderr)
        return 3
    if argv[3:]:
        np.save(argv[3], np.stack(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
