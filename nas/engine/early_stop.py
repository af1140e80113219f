"""Early stopping that works with several objectives.

Optuna's pruners compare one intermediate value and `Trial.report` raises in multi-objective studies.
The question a memory-aware search actually asks is narrower: *can this candidate still reach the
front?* A candidate that, at epoch k, trails a finished candidate that is no larger on every memory
figure is very unlikely to end up non-dominated. So: at the checkpoint epochs, stop a candidate whose
validation metric is more than `margin` below the best metric that finished candidates of no larger
flash and no larger SRAM had at the same epoch (at least `min_finished` such candidates must exist,
so the rule does nothing until there is evidence).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finished:
    flash: int
    sram: int
    curve: list[float]  # validation metric after each epoch


def should_stop(
    epoch: int,
    metric: float,
    flash: int,
    sram: int,
    finished: list[Finished],
    margin: float,
    min_finished: int,
) -> tuple[bool, str]:
    peers = [f for f in finished if f.flash <= flash and f.sram <= sram and len(f.curve) >= epoch]
    if len(peers) < min_finished:
        return False, ""
    best = max(f.curve[epoch - 1] for f in peers)
    if metric < best - margin:
        return True, (
            f"epoch {epoch}: validation {metric:.4f} < {best:.4f} - {margin} reached by one of "
            f"{len(peers)} finished candidates with no more flash and SRAM"
        )
    return False, ""
