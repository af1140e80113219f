"""Give every buffer an offset in one static arena.

The arena is what the exported C code allocates, so this plan is checked by running code, not by
trust. Its lower bound is the peak of live bytes under the schedule (at the busiest step every live
buffer needs its own bytes), and that bound is usually reachable; placing buffers well is still
NP-hard in general (dynamic storage allocation), so the planner tries several cheap strategies, best
first for the common case, and stops as soon as one reaches the bound:

1. greedy by size, ties by first use (TFLite Micro's GreedyMemoryPlanner, TinyEngine): largest buffer
   first, each at the lowest offset clear of every placed buffer alive at the same time. It reaches
   the bound on about nine graphs in ten, so it runs alone, by a plain scan, until it misses;
2. two-sided placement: buffers in start order alternate between the bottom and the top of an arena
   of exactly the bound. On a chain (no step holds more than two buffers) this is optimal: buffers
   alive together sit on opposite sides and any two of them fit in the bound;
3. first fit by conflict degree (own bytes plus those of every buffer alive alongside), by size with
   later last use or longer life first, and by lifetime start;
4. on graphs of at most `EXACT_BUFFER_LIMIT` buffers still above the bound, an exact branch and bound
   (`arena_exact`) with a node limit; the plan's `method` says whether it finished.

Graphs with very many buffers alive at once (hundreds of parallel branches) skip to greedy by size on
an interval index (`arena_index`), so planning stays near O(n log n) there; the offsets are the same
as those of strategy 1.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from dataclasses import dataclass

from .arena_exact import EXACT_BUFFER_LIMIT, EXACT_NODE_LIMIT, exact_offsets
from .arena_index import first_fit_indexed, lowest_gap
from .buffers import Buffers, lifetimes

# Up to this many buffers, strategy 1 scans all placed buffers; above it, conflicts come from a sweep.
SCAN_LIMIT = 200
# Above this many pairs of buffers alive together, the pairwise strategies cost more than they are
# worth; only strategy 1, on the interval index, runs.
PAIR_LIMIT = 20_000
STRATEGY_1 = "greedy by size (first use)"


@dataclass(slots=True)
class ArenaPlan:
    offset: list[int]
    size: list[int]
    first: list[int]  # first schedule step the buffer is alive
    last: list[int]  # last schedule step the buffer is alive
    arena_bytes: int
    lower_bound: int = 0  # peak of live bytes: no plan for this schedule is smaller
    method: str = ""  # the strategy whose plan was kept

    @property
    def over_lower_bound(self) -> float:
        """arena_bytes / lower_bound (1.0 is optimal)."""
        return self.arena_bytes / self.lower_bound if self.lower_bound else 1.0


def plan_arena(bufs: Buffers, order: list[int], peak: int | None = None) -> ArenaPlan:
    """`peak`: the live-bytes peak of `order` when the caller has it (the scheduler does), to save
    recomputing the lower bound in the common case."""
    first, last = lifetimes(bufs, order)
    size = list(bufs.size)
    offset, arena, bound, method = plan_offsets(size, first, last, len(order), peak=peak)
    return ArenaPlan(offset, size, first, last, arena, bound, method)


def plan_offsets(
    size: list[int],
    first: list[int],
    last: list[int],
    n_steps: int,
    exact_buffers: int = EXACT_BUFFER_LIMIT,
    exact_nodes: int = EXACT_NODE_LIMIT,
    peak: int | None = None,
) -> tuple[list[int], int, int, str]:
    """(offsets, arena bytes, lower bound, method) for buffers alive over steps first..last.

    Buffers of size 0 get offset 0 and take part in nothing. `exact_buffers` / `exact_nodes` bound
    the exact search: it runs only on graphs with at most that many buffers, and gives up (keeping the
    best plan found, and saying so) after that many search nodes.
    """
    by_size = [b for _, _, b in sorted([(-sz, first[b], b) for b, sz in enumerate(size) if sz])]
    if peak is None:
        peak = max(_live_bytes(by_size, size, first, last, n_steps), default=0)
    bound = peak
    if len(by_size) <= SCAN_LIMIT:
        # The common case: strategy 1 by a plain scan (no conflict lists to build) is usually optimal.
        offset, arena = _first_fit_scan(by_size, size, first, last)
        if arena == bound:
            return offset, arena, bound, STRATEGY_1
        best = (offset, arena, STRATEGY_1)
    elif _pairs(by_size, first, last, n_steps) > PAIR_LIMIT:
        offset, arena = first_fit_indexed(by_size, size, first, last, n_steps)
        return offset, arena, bound, "greedy by size (interval index)"
    else:
        best = None

    nz = sorted(by_size)
    adj = _conflicts(nz, first, last)
    for name, run in _strategies(nz, by_size, size, first, last, adj, bound, best is None):
        offset, arena = run()
        if best is None or arena < best[1]:
            best = (offset, arena, name)
        if arena == bound:
            break
    offset, arena, name = best
    if arena > bound and len(nz) <= exact_buffers:
        found, proven = exact_offsets(nz, size, first, last, adj, bound, arena, exact_nodes)
        if found is not None:
            offset, arena = found, max(found[b] + size[b] for b in nz)
            name = "exact (branch and bound)" if proven else "branch and bound (node limit)"
        elif proven:
            name += "; proven optimal by branch and bound"
        else:
            name += "; branch and bound hit its node limit"
    return offset, arena, bound, name


def _live_bytes(nz, size, first, last, n_steps) -> list[int]:
    """Bytes alive at each step; its maximum is the lower bound."""
    live = [0] * (n_steps + 1)
    for b in nz:
        s = size[b]
        live[first[b]] += s
        live[last[b] + 1] -= s
    cur = 0
    for t in range(n_steps):
        cur += live[t]
        live[t] = cur
    live.pop()
    return live


def _pairs(nz, first, last, n_steps) -> int:
    """How many pairs of buffers are alive at some common step: the work the pairwise strategies do.
    Each pair is counted at the step the later one starts."""
    count = [0] * (n_steps + 1)
    starts = [0] * n_steps
    for b in nz:
        count[first[b]] += 1
        count[last[b] + 1] -= 1
        starts[first[b]] += 1
    alive = pairs = 0
    for t in range(n_steps):
        alive += count[t]
        k = starts[t]
        if k:
            pairs += k * (alive - k) + k * (k - 1) // 2
    return pairs


def _first_fit_scan(
    seq: list[int], size: list[int], first: list[int], last: list[int]
) -> tuple[list[int], int]:
    """First fit that finds conflicts by scanning the placed buffers: O(n^2), the fastest form for
    the few dozen buffers of a typical graph."""
    offset = [0] * len(size)
    placed: list[tuple[int, int, int, int]] = []
    top = 0
    for b in seq:
        sz = size[b]
        start, stop = first[b], last[b]
        off = lowest_gap([(o, e) for pf, pl, o, e in placed if pf <= stop and start <= pl], sz)
        offset[b] = off
        end = off + sz
        if end > top:
            top = end
        placed.append((start, stop, off, end))
    return offset, top


def _conflicts(nz: list[int], first: list[int], last: list[int]) -> list[list[int]]:
    """For every buffer, the buffers alive at some common step (a sweep in start order: each pair is
    found once, when the later one starts)."""
    adj: list[list[int]] = [[] for _ in range(len(first))]
    active: list[int] = []
    for b in sorted(nz, key=lambda b: first[b]):
        f = first[b]
        active = [c for c in active if last[c] >= f]
        mine = adj[b]
        for c in active:
            mine.append(c)
            adj[c].append(b)
        active.append(b)
    return adj


def _first_fit(seq: list[int], size: list[int], adj: list[list[int]]) -> tuple[list[int], int]:
    """Each buffer in turn at the lowest offset clear of the placed buffers it conflicts with."""
    offset = [0] * len(size)
    placed = [False] * len(size)
    top = 0
    for b in seq:
        sz = size[b]
        off = lowest_gap([(offset[c], offset[c] + size[c]) for c in adj[b] if placed[c]], sz)
        offset[b] = off
        placed[b] = True
        if off + sz > top:
            top = off + sz
    return offset, top


def _two_sided(seq: list[int], size: list[int], adj: list[list[int]], height: int) -> tuple[list[int], int]:
    """Buffers in start order, each on the side opposite the latest-starting placed buffer it
    conflicts with: lowest fit at the bottom, highest fit under `height` at the top. A buffer that
    fits on neither side goes at the lowest fit, above `height`."""
    n = len(size)
    offset = [0] * n
    placed = [False] * n
    on_top = [False] * n
    top = 0
    for b in seq:
        sz = size[b]
        busy = []
        up = False
        for c in adj[b]:
            if placed[c]:
                busy.append((offset[c], offset[c] + size[c]))
                up = not on_top[c]  # the last placed one listed started latest
        if up:
            off = _highest_fit(busy, sz, height)
            if off is None:
                off, up = lowest_gap(busy, sz), False
        else:
            off = lowest_gap(busy, sz)
            if off + sz > height:
                high = _highest_fit(busy, sz, height)
                if high is not None:
                    off, up = high, True
        offset[b] = off
        placed[b] = True
        on_top[b] = up
        if off + sz > top:
            top = off + sz
    return offset, top


def _highest_fit(busy: list[tuple[int, int]], sz: int, height: int) -> int | None:
    off = height - sz
    for s, e in sorted(busy, key=lambda r: -r[1]):
        if e <= off:
            break
        if s < off + sz:
            off = s - sz
    return off if off >= 0 else None


def _strategies(nz, by_size, size, first, last, adj, bound, with_first: bool):
    """(name, thunk), the likeliest to reach the bound first (by how often each was the first to
    on random archs of the presets and on the benchmark's graphs)."""
    if with_first:
        yield STRATEGY_1, lambda: _first_fit(by_size, size, adj)
    by_start = sorted(nz, key=lambda b: (first[b], -size[b], b))
    yield "two-sided (alternating)", lambda: _two_sided(by_start, size, adj, bound)
    degree = {b: size[b] + sum(size[c] for c in adj[b]) for b in nz}
    yield (
        "greedy by conflict degree",
        lambda: _first_fit(sorted(nz, key=lambda b: (-degree[b], -size[b], b)), size, adj),
    )
    yield (
        "greedy by size (last use)",
        lambda: _first_fit(sorted(nz, key=lambda b: (-size[b], -last[b], b)), size, adj),
    )
    yield (
        "greedy by size (longest life)",
        lambda: _first_fit(sorted(nz, key=lambda b: (-size[b], first[b] - last[b], first[b], b)), size, adj),
    )
    yield "greedy by lifetime start", lambda: _first_fit(by_start, size, adj)


def overlaps(plan: ArenaPlan) -> list[tuple[int, int]]:
    """Pairs (a < b) of buffers alive at the same time whose byte ranges intersect (must be empty).

    A sweep in start order keeps the live buffers sorted by offset; while they are disjoint, a new
    buffer can only hit its neighbours in that order, so a valid plan is checked in O(n log n + n ·
    live) without comparing pairs. Only once an overlap shows up are the pairs listed, by comparing
    each buffer with those still alive when it starts."""
    size, first, last, offset = plan.size, plan.first, plan.last, plan.offset
    seq = sorted((b for b in range(len(size)) if size[b]), key=lambda b: first[b])
    live: list[tuple[int, int]] = []  # (offset, buffer), sorted
    ends: list[tuple[int, int, int]] = []  # heap of (last step, offset, buffer)
    for b in seq:
        f = first[b]
        while ends and ends[0][0] < f:
            _, o, c = heapq.heappop(ends)
            del live[bisect_left(live, (o, c))]
        lo, hi = offset[b], offset[b] + size[b]
        i = bisect_left(live, (lo, -1))
        if (i and offset[live[i - 1][1]] + size[live[i - 1][1]] > lo) or (i < len(live) and live[i][0] < hi):
            return _overlapping_pairs(seq, size, first, last, offset)
        live.insert(i, (lo, b))
        heapq.heappush(ends, (last[b], lo, b))
    return []


def _overlapping_pairs(seq, size, first, last, offset) -> list[tuple[int, int]]:
    bad = []
    active: list[int] = []
    for b in seq:
        f = first[b]
        active = [c for c in active if last[c] >= f]
        lo, hi = offset[b], offset[b] + size[b]
        for c in active:
            if offset[c] < hi and lo < offset[c] + size[c]:
                bad.append((c, b) if c < b else (b, c))
        active.append(b)
    bad.sort()
    return bad
