"""Make small int8 TFLite models with Keras and measure them in TFLite Micro's own interpreter.

Run as a script by `test_bench_tflm.py`, in an interpreter that has the `bench-tflm` extra
(tensorflow-cpu, tflite-micro): `python tflm_probe.py OUT_DIR` writes OUT_DIR/NAME.tflite for every
model and OUT_DIR/measured.json with, per model, its set ("calibration": the nets `TflmSizes.host64()` was
calibrated on; "held_out": nets it was not), the smallest arena at which `invoke()` runs (found
by bisection) and `print_allocations()`'s lines at that size. It is a separate process because
neither TensorFlow nor TFLite Micro is a dependency of m2nas or of its default tests.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path


def models():
    """Five small nets of the shapes TFLM users deploy, each with its input shape."""
    import tensorflow as tf

    L = tf.keras.layers

    def conv_chain():
        i = tf.keras.Input((24, 24, 3), batch_size=1)
        x = L.Conv2D(8, 3, padding="same", activation="relu")(i)
        x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
        x = L.MaxPooling2D(2)(x)
        x = L.Conv2D(24, 3, padding="same", activation="relu")(x)
        x = L.GlobalAveragePooling2D()(x)
        return tf.keras.Model(i, L.Dense(5)(x))

    def ds_cnn():
        i = tf.keras.Input((32, 32, 1), batch_size=1)
        x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(i)
        for c in (24, 32):
            x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
            x = L.Conv2D(c, 1, activation="relu")(x)
        x = L.AveragePooling2D(4)(x)
        x = L.Flatten()(x)
        return tf.keras.Model(i, L.Softmax()(L.Dense(4)(x)))

    def two_branch():
        i = tf.keras.Input((20, 20, 4), batch_size=1)
        a = L.Conv2D(8, 3, padding="same", activation="relu")(i)
        b = L.Conv2D(12, 1, activation="relu")(i)
        b = L.Conv2D(12, 3, padding="same", activation="relu")(b)
        x = L.Concatenate()([a, b])
        x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
        y = L.Conv2D(16, 1)(x)
        x = L.Add()([x, y])
        x = L.GlobalAveragePooling2D()(x)
        return tf.keras.Model(i, L.Dense(3)(x))

    def dense_net():
        i = tf.keras.Input((64,), batch_size=1)
        x = L.Dense(128, activation="relu")(i)
        x = L.Dense(64, activation="relu")(x)
        x = L.Dense(32, activation="tanh")(x)
        return tf.keras.Model(i, L.Softmax()(L.Dense(10)(x)))

    def kws_1d():
        i = tf.keras.Input((49, 10), batch_size=1)
        x = L.Conv1D(16, 5, strides=2, padding="same", activation="relu")(i)
        x = L.Conv1D(24, 3, padding="same", activation="relu")(x)
        x = L.MaxPooling1D(2)(x)
        x = L.Conv1D(32, 3, padding="same", activation="relu")(x)
        x = L.GlobalAveragePooling1D()(x)
        return tf.keras.Model(i, L.Softmax()(L.Dense(12)(x)))

    return {
        "conv_chain": conv_chain,
        "ds_cnn": ds_cnn,
        "two_branch": two_branch,
        "dense_net": dense_net,
        "kws_1d": kws_1d,
    }


def held_out_models():
    """Nets NOT used to calibrate `TflmSizes.host64()`, each of a structure the calibration set lacks.

    They are built after the calibration nets from the same seed, so adding them leaves the
    calibration models' weights (and files) as they were."""
    import tensorflow as tf

    L = tf.keras.layers

    def cnn_avgpool_fc2():  # explicit PAD, average pooling, a strided valid conv, two dense layers
        i = tf.keras.Input((28, 28, 1), batch_size=1)
        x = L.Conv2D(6, 5, padding="same", activation="relu")(i)
        x = L.AveragePooling2D(2)(x)
        x = L.ZeroPadding2D(1)(x)
        x = L.Conv2D(12, 3, strides=2, activation="relu")(x)
        x = L.Flatten()(x)
        x = L.Dense(48, activation="relu")(x)
        return tf.keras.Model(i, L.Dense(10)(x))

    def residual_se():  # two residual blocks (ADD on the skip) and a squeeze-excite gate (MUL, LOGISTIC)
        i = tf.keras.Input((16, 16, 8), batch_size=1)
        x = L.Conv2D(16, 3, padding="same", activation="relu")(i)
        for _ in range(2):
            y = L.Conv2D(16, 3, padding="same", activation="relu")(x)
            y = L.Conv2D(16, 3, padding="same")(y)
            x = L.ReLU()(L.Add()([x, y]))
        s = L.GlobalAveragePooling2D(keepdims=True)(x)
        s = L.Conv2D(4, 1, activation="relu")(s)
        s = L.Conv2D(16, 1, activation="sigmoid")(s)
        x = L.Multiply()([x, s])
        x = L.GlobalAveragePooling2D()(x)
        return tf.keras.Model(i, L.Dense(4)(x))

    def mean_over_height():  # MEAN over one spatial axis only (a spectrogram's frequency axis)
        i = tf.keras.Input((32, 20, 1), batch_size=1)
        x = L.Conv2D(12, 3, padding="same", activation="relu")(i)
        x = L.Conv2D(20, 3, strides=(2, 1), padding="same", activation="relu")(x)
        x = L.Lambda(lambda t: tf.reduce_mean(t, axis=1))(x)  # (20, 20): time x channels
        x = L.Conv1D(16, 3, padding="same", activation="relu")(x)
        x = L.Flatten()(x)
        return tf.keras.Model(i, L.Dense(6)(x))

    def wide_1d():  # wider and deeper 1-D conv stack, padding 'same', dilation, softmax out
        i = tf.keras.Input((128, 6), batch_size=1)
        x = L.Conv1D(32, 7, padding="same", activation="relu")(i)
        x = L.Conv1D(48, 5, padding="same", activation="relu")(x)
        x = L.MaxPooling1D(2)(x)
        x = L.Conv1D(64, 3, padding="same", dilation_rate=2, activation="relu")(x)
        x = L.Conv1D(64, 3, strides=2, padding="same", activation="relu")(x)
        x = L.Conv1D(96, 3, padding="same", activation="relu")(x)
        x = L.GlobalMaxPooling1D()(x)
        x = L.Dense(32, activation="relu")(x)
        return tf.keras.Model(i, L.Softmax()(L.Dense(8)(x)))

    return {
        "cnn_avgpool_fc2": cnn_avgpool_fc2,
        "residual_se": residual_se,
        "mean_over_h": mean_over_height,
        "wide_1d": wide_1d,
    }


def to_int8_tflite(model) -> bytes:
    """Full-integer post-training quantization (int8 in and out) from a fixed-seed dataset."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    shape = (1, *model.input_shape[1:])

    def representative():
        for _ in range(16):
            yield [rng.standard_normal(shape).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def run_tflm(path: str, arena: int) -> tuple[bool, str]:
    """Whether `invoke()` runs with an arena of `arena` bytes, and what print_allocations wrote.

    TFLM logs to fd 2 from C++, so fd 2 is pointed at a temporary file around the calls."""
    import numpy as np
    from tflite_micro.python.tflite_micro import runtime

    fd, tmp = tempfile.mkstemp()
    saved = os.dup(2)
    os.dup2(fd, 2)
    ok = True
    try:
        it = runtime.Interpreter.from_file(path, arena_size=arena)
        d = it.get_input_details(0)
        it.set_input(np.zeros(d["shape"], dtype=d["dtype"]), 0)
        it.invoke()
        it.print_allocations()
    except Exception:  # "Arena size is too small" and friends: too small
        ok = False
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
    text = Path(tmp).read_text(errors="replace")
    os.unlink(tmp)
    return ok, text


def min_arena(path: str, hi: int = 1 << 20) -> tuple[int, str]:
    """The smallest arena at which invoke() runs, by bisection, with print_allocations at it."""
    ok, _ = run_tflm(path, hi)
    if not ok:
        raise RuntimeError(f"{path}: does not run even with {hi} B")
    lo = 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if run_tflm(path, mid)[0]:
            hi = mid
        else:
            lo = mid
    return hi, run_tflm(path, hi)[1]


def main(out: Path) -> None:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    measured = {}
    for group, nets in (("calibration", models()), ("held_out", held_out_models())):
        for name, make in nets.items():
            path = out / f"{name}.tflite"
            path.write_bytes(to_int8_tflite(make()))
            arena, log = min_arena(str(path))
            measured[name] = {
                "set": group,
                "min_arena_bytes": arena,
                "allocations": log.strip().splitlines(),
            }
    (out / "measured.json").write_text(json.dumps(measured, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
