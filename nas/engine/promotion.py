"""Successive halving over several objectives: which candidates earn the full epoch budget.

Optuna's pruners compare one intermediate value and refuse multi-objective studies (optuna#3450).
ASHA's idea carries over once "the best 1/eta" means something with memory figures beside the
metric: at a rung epoch, a candidate is ranked against every candidate that reached that epoch and
fits the same device, by non-dominated sorting of (validation metric at the rung, the study's
minimized figures on that device). It goes on when it is on the rung's first front (nothing seen
is both more accurate there and no larger: it could still end on the device's front) or among the
best ceil(n / eta) by (front, metric); otherwise it stops. A candidate goes on if any device it fits
lets it. Until `min_peers` candidates have reached a rung on a device, nobody stops there: the rule
acts only on evidence. Asynchronous, like ASHA: the rung is judged with whoever has reached it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Seen:
    """A candidate that has been trained (to the end, or stopped): its curve and its figures per
    device it fits (the study's minimized figures, in order)."""

    curve: list[float]
    figures: dict[str, tuple[float, ...]]


def rungs(epochs: int, fractions: list[float]) -> list[int]:
    """Rung epochs for an epoch budget: each fraction of it, rounded, at least 1, before the end."""
    return sorted({max(1, round(f * epochs)) for f in fractions if max(1, round(f * epochs)) < epochs})


def front_ranks(points: list[tuple[float, ...]]) -> list[int]:
    """Non-dominated sorting (all columns minimized): 0 for the first front, 1 for the next, ..."""
    n = len(points)
    ranks = [-1] * n
    remaining = set(range(n))
    level = 0
    while remaining:
        current = [
            i for i in remaining if not any(_dominates(points[j], points[i]) for j in remaining if j != i)
        ]
        for i in current:
            ranks[i] = level
            remaining.discard(i)
        level += 1
    return ranks


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def promote(
    epoch: int,
    metric: float,
    figures: dict[str, tuple[float, ...]],
    seen: list[Seen],
    eta: float,
    min_peers: int,
) -> tuple[bool, str]:
    """(goes on, why not): the verdict on a candidate with `metric` at rung `epoch` (1-based)."""
    verdicts = []
    for device, fig in figures.items():
        peers = [s for s in seen if device in s.figures and len(s.curve) >= epoch]
        if len(peers) < min_peers:
            return True, ""
        points = [(-s.curve[epoch - 1], *s.figures[device]) for s in peers] + [(-metric, *fig)]
        ranks = front_ranks(points)
        me = len(points) - 1
        if ranks[me] == 0:
            return True, ""
        keep = math.ceil(len(points) / eta)
        order = sorted(range(len(points)), key=lambda i: (ranks[i], points[i][0], i != me))
        position = order.index(me)
        if position < keep:
            return True, ""
        verdicts.append(f"{device}: place {position + 1} of {len(points)}, front {ranks[me] + 1}")
    if not verdicts:  # fits no device: it would not have been trained
        return True, ""
    return False, (
        f"epoch {epoch}: validation {metric:.4f} is not among the best 1/{eta:g} of the candidates "
        f"seen at this epoch on any device it fits ({'; '.join(verdicts)})"
    )
