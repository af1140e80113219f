"""Full memory analyses per second on realistic multi-branch graphs (one core).

Run: pytest -m bench -s tests/bench/test_bench_memory.py
Target (issue 2): at least 5,000 full analyses per second, since this is what makes rejection free.
"""

from __future__ import annotations

import random
import time

import pytest

from memory_models import evaluate, get_device
from tests.fixtures.graphs import late_fusion

TARGET_PER_SECOND = 5000


def realistic_graphs(n: int, seed: int = 0):
    """Late-fusion CNNs over image / spectrogram / IMU inputs: 2-3 branches, 20-60 ops."""
    rng = random.Random(seed)
    inputs = {
        "image": (1, 48, 48),
        "audio": (1, 49, 40),
        "imu": (6, 100),
    }
    graphs = []
    while len(graphs) < n:
        names = rng.sample(sorted(inputs), rng.choice([2, 3]))
        branches = {}
        for name in names:
            blocks = []
            ch = rng.choice([4, 8, 16])
            for i in range(rng.randint(3, 10)):
                kind = "conv" if i == 0 else rng.choice(["conv", "dw", "dw"])
                ch = min(128, ch * rng.choice([1, 2]))
                blocks.append((kind, ch, rng.choice([3, 5]), rng.choice([1, 2, 2])))
            branches[name] = (inputs[name], blocks)
        g = late_fusion(
            branches,
            classes=7,
            hidden=rng.choice([0, 32]),
            wbits=rng.choice([2, 4, 8]),
            abits=rng.choice([4, 8]),
        )
        if 20 <= len(g.ops) <= 60:
            graphs.append(g)
    return graphs


@pytest.mark.bench
def test_memory_analyses_per_second():
    graphs = realistic_graphs(300)
    device = get_device("stm32f446re")
    for g in graphs[:20]:  # warm-up
        evaluate(g, device)
    reps = 5
    t0 = time.perf_counter()
    for _ in range(reps):
        for g in graphs:
            evaluate(g, device)
    dt = time.perf_counter() - t0
    rate = reps * len(graphs) / dt
    ops = sum(len(g.ops) for g in graphs) / len(graphs)
    methods = {evaluate(g, device).schedule_.method for g in graphs}
    print(
        f"\nmemory analyses: {rate:,.0f}/s on one core (mean {ops:.1f} ops/graph, schedulers {sorted(methods)})"
    )
    assert rate >= TARGET_PER_SECOND
