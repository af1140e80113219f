"""nas.export.parity: the grid comparison and its float32-tie rule, on hand-made logits whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from nas.export.parity import (
    AS_WRITTEN,
    INT_RUNTIME_MAX_LSB,
    INT_RUNTIME_MIN_TOP1,
    INTEGER_RUNTIME,
    ExportCheckFailed,
    compare,
    require,
)

LSB = 0.25
REF = LSB * np.array([[3, -1, 0], [0, 5, 2], [-4, -4, 7], [1, 0, 0]], dtype=np.float32)


def test_identical_logits_pass_both_checks():
    for check in (AS_WRITTEN, INTEGER_RUNTIME):
        c = compare(check, "m.onnx", "rt", REF.copy(), REF, LSB)
        assert c.passed and (c.max_lsb, c.identical, c.top1_agreement, c.float32_ties) == (0, 1.0, 1.0, 0)


def test_one_lsb_off_fails_as_written_and_is_measured():
    got = REF.copy()
    got[1, 2] += 2 * LSB
    c = compare(AS_WRITTEN, "m.onnx", "rt", got, REF, LSB)
    assert not c.passed and c.max_lsb == 2 and c.max_abs == pytest.approx(0.5)
    assert c.identical == 0.75 and c.top1_agreement == 1.0


def test_float32_ties_are_settled_only_where_float64_pytorch_agrees_with_the_runtime():
    got = REF.copy()
    got[0, 1] += (
        LSB  # sample 0: PyTorch float32 rounded a tie the other way; float64 gives the runtime's value
    )
    got[3, 0] += LSB  # sample 3: float64 PyTorch agrees with float32 PyTorch, so the runtime is wrong
    exact = REF.copy()
    exact[0, 1] += LSB

    c = compare(AS_WRITTEN, "m.onnx", "rt", got, REF, LSB, lambda idx: exact[idx])
    assert c.float32_ties == 1 and c.max_lsb == 1 and not c.passed
    got[3, 0] -= LSB
    c = compare(AS_WRITTEN, "m.onnx", "rt", got, REF, LSB, lambda idx: exact[idx])
    assert c.float32_ties == 1 and c.max_lsb == 0 and c.passed
    assert "1 float32 ties settled in float64" in c.describe()


def test_integer_runtime_bounds():
    got = REF.copy()
    got[:, 0] += INT_RUNTIME_MAX_LSB * LSB  # at the bound: passes; samples 0 and 3 keep their top-1
    c = compare(INTEGER_RUNTIME, "m.onnx", "rt", got, REF, LSB)
    assert c.max_lsb == INT_RUNTIME_MAX_LSB and c.top1_agreement == 0.5 >= INT_RUNTIME_MIN_TOP1 and c.passed
    got[0, 0] += LSB
    assert not compare(INTEGER_RUNTIME, "m.onnx", "rt", got, REF, LSB).passed


def test_a_failed_file_is_renamed_and_the_message_names_the_check(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"onnx")
    got = REF.copy()
    got[2, 2] -= 3 * LSB
    with pytest.raises(ExportCheckFailed) as err:
        require(compare(AS_WRITTEN, path, "onnxruntime, no graph rewriting", got, REF, LSB), path)
    msg = str(err.value)
    assert msg.startswith(f"{path}.failed: the as written check failed (0 LSB required)")
    assert "max 3 output LSB (0.75 in logit units, LSB 0.25)" in msg
    assert (tmp_path / "model.onnx.failed").is_file() and not path.exists()
