"""Candidates per second through sample + graph + memory analysis (no torch module built), one core.

Run: pytest -m bench -s tests/bench/test_bench_search_space.py
Target (issue 3): at least 2,000 candidates per second.
"""

from __future__ import annotations

import random
import time

import pytest

from memory_models import evaluate, get_device
from search_spaces import graph, load_space, sample_random

TARGET_PER_SECOND = 2000
CASES = {
    "watch (acc+gyro 3x100)": {"acc": (3, 100), "gyro": (3, 100)},
    "avdigits (image 1x8x8 + audio 1x40x32)": {"image": (1, 8, 8), "audio": (1, 40, 32)},
    "3 modalities (imu 6x100 + image 1x32x32 + audio 1x40x32)": {
        "imu": (6, 100),
        "image": (1, 32, 32),
        "audio": (1, 40, 32),
    },
}


@pytest.mark.bench
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_candidates_per_second(case, preset):
    space = load_space(preset)
    device = get_device("stm32f446re")
    inputs = CASES[case]
    rng = random.Random(0)
    for _ in range(50):
        evaluate(graph(sample_random(rng, space, inputs, 7)), device)
    rates = []
    ops = 0
    for _ in range(5):
        n = 0
        t0 = time.perf_counter()
        while n < 1000:
            g = graph(sample_random(rng, space, inputs, 7))
            evaluate(g, device)
            ops += len(g.ops)
            n += 1
        rates.append(n / (time.perf_counter() - t0))
    rates.sort()
    print(
        f"\n{preset:5s} {case}: median {rates[2]:,.0f}/s (min {rates[0]:,.0f}, max {rates[-1]:,.0f}); mean {ops / 5000:.1f} ops"
    )
    assert rates[2] >= TARGET_PER_SECOND
