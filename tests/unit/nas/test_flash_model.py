"""The memory model's flash figure is the compiler's (issue 15 part 5): for sampled archs of every
preset, `flash_bytes` of the STM32F446RE report is within 5% of text + data of the generated model.o
built by arm-none-eabi-gcc -Os for the Cortex-M4 (the build `m2nas export --c` measures), and .bss is
the planned arena. Random weights: code and constant sizes do not depend on their values.

Skipped without the Arm toolchain; under CI=true it is required (the test fails).
"""

from __future__ import annotations

import os

import pytest

from nas.export.c import cortexm
from tests.fixtures.c_models import random_init_c_model, sampled_archs

pytestmark = pytest.mark.skipif(
    cortexm.missing() is not None and os.environ.get("CI") != "true",
    reason=f"{cortexm.missing()} (required under CI=true)",
)

TOLERANCE = 0.05


def _cases():
    # A handful that covers 1D and 2D, every preset, 2-, 4- and 8-bit layers (seeded: the same
    # archs every run); the bench runs 20 per preset.
    pairs = (("tiny", "1d"), ("tiny", "2d"), ("small", "1d"), ("wide", "1d"))
    return [(p, d, i) for p, d in pairs for i in (0, 1)]


@pytest.mark.parametrize("preset, dims, i", _cases(), ids=lambda c: str(c))
def test_flash_is_the_compilers(preset, dims, i, tmp_path):
    arch = sampled_archs(preset, dims, i + 1)[i]
    report, _ = random_init_c_model(arch, tmp_path)
    size = cortexm.object_size(tmp_path, "m4", "-Os")
    measured = size["text"] + size["data"]
    err = report.flash_bytes / measured - 1
    assert abs(err) <= TOLERANCE, (
        f"{arch.summary()}: memory model {report.flash_bytes} B, model.o {measured} B ({100 * err:+.1f}%): "
        f"{report.flash.to_dict()}"
    )
    assert size["bss"] == report.arena_bytes
