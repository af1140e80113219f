"""Give every buffer an offset in one static arena.

Greedy by size, as TFLite Micro's GreedyMemoryPlanner and TinyEngine do: largest buffer first, each at
the lowest offset where it overlaps no already placed buffer that is alive at the same time. The
arena is what the exported C code allocates, so this plan is checked by running code, not by trust.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

from .buffers import Buffers, lifetimes


@dataclass(slots=True)
class ArenaPlan:
    offset: list[int]
    size: list[int]
    first: list[int]  # first schedule step the buffer is alive
    last: list[int]  # last schedule step the buffer is alive
    arena_bytes: int


def plan_arena(bufs: Buffers, order: list[int]) -> ArenaPlan:
    first, last = lifetimes(bufs, order)
    size = bufs.size
    offset = [0] * len(size)
    # (offset, end) of the placed buffers alive at each step; a new buffer only dodges those.
    # A buffer alive over several steps is listed at each of them: first fit does not mind repeats.
    alive_at: list[list[tuple[int, int]]] = [[] for _ in range(len(order))]
    arena = 0
    for neg, f, b in sorted([(-sz, first[b], b) for b, sz in enumerate(size) if sz]):
        sz = -neg
        steps = alive_at[f : last[b] + 1]
        off = 0
        for oc, ec in sorted(chain.from_iterable(steps)):
            if off + sz <= oc:
                break
            if ec > off:
                off = ec
        offset[b] = off
        end = off + sz
        if end > arena:
            arena = end
        pair = (off, end)
        for at in steps:
            at.append(pair)
    return ArenaPlan(offset, list(size), first, last, arena)


def overlaps(plan: ArenaPlan) -> list[tuple[int, int]]:
    """Pairs of buffers alive at the same time whose byte ranges intersect (must be empty)."""
    n = len(plan.size)
    bad = []
    for a in range(n):
        if not plan.size[a]:
            continue
        for b in range(a + 1, n):
            if not plan.size[b]:
                continue
            if plan.first[a] <= plan.last[b] and plan.first[b] <= plan.last[a]:
                if (
                    plan.offset[a] < plan.offset[b] + plan.size[b]
                    and plan.offset[b] < plan.offset[a] + plan.size[a]
                ):
                    bad.append((a, b))
    return bad
