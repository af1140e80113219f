"""Exact arena placement for small graphs, by branch and bound.

Why a search over orders suffices: take any optimal plan and place its buffers again, lowest offset
first, each at the lowest offset clear of the placed buffers it conflicts with (first fit). Each
lands at or below where the optimal plan had it (the buffers below it in that plan sit no higher
than before, so its old place is still free), so the result is optimal too. Repeating this until
nothing moves gives an optimal plan that first fit reproduces from its own offset order, in which
offsets never decrease. So the search only has to try, at each step, the buffers whose first-fit
offset is not below the last one placed (ties by index), which cuts most orders away.

Since later buffers sit at or above the last offset o, every placed buffer starts at or below o, so
at each step the room left is one run from max(o, the highest placed end at that step) upwards.
Bounds that prune a node: that floor plus the unplaced bytes alive at the step, for every step; every
unplaced buffer's first-fit end (placing more buffers only pushes it up); and a dead end, an unplaced
buffer whose lowest fit lies wholly below o (no later placement can move it up to o).
"""

from __future__ import annotations

from .arena_index import lowest_gap

# Graphs up to this many (non-empty) buffers get the exact search when no heuristic reached the
# lower bound; the search stops after this many nodes and keeps the best plan found.
EXACT_BUFFER_LIMIT = 24
EXACT_NODE_LIMIT = 500


class _Stop(Exception):
    pass


def exact_offsets(
    nz: list[int],
    size: list[int],
    first: list[int],
    last: list[int],
    adj: list[list[int]],
    bound: int,
    best: int,
    node_limit: int = EXACT_NODE_LIMIT,
) -> tuple[list[int] | None, bool]:
    """A plan for the buffers `nz` with an arena below `best` (None if there is none, or none was
    found), and whether the search finished, i.e. whether the result (or `best`) is optimal.

    `adj[b]`: the buffers alive at some step together with b; `bound`: a lower bound (the peak of
    live bytes), reaching which ends the search at once.
    """
    n = len(size)
    offset = [-1] * n
    steps = max((last[b] for b in nz), default=-1) + 1
    rem = [0] * steps  # unplaced bytes alive at each step
    sky = [0] * steps  # highest end of the placed buffers alive at each step
    for b in nz:
        for t in range(first[b], last[b] + 1):
            rem[t] += size[b]
    order = sorted(nz, key=lambda b: -size[b])  # large buffers first: their fits fail soonest
    left = [len(nz)]
    state = {"best": best, "plan": None, "nodes": 0}

    def fit(b: int) -> int:
        return lowest_gap([(offset[c], offset[c] + size[c]) for c in adj[b] if offset[c] >= 0], size[b])

    def search(o_last: int, i_last: int, top: int) -> None:
        state["nodes"] += 1
        if state["nodes"] > node_limit:
            raise _Stop
        goal = state["best"]
        for t in range(steps):
            r = rem[t]
            if r:
                h = sky[t]
                if (h if h > o_last else o_last) + r >= goal:
                    return
        cands = []
        for b in order:
            if offset[b] >= 0:
                continue
            off = fit(b)
            end = off + size[b]
            if end >= goal or end <= o_last:
                return
            if off > o_last or (off == o_last and b > i_last):
                cands.append((off, -size[b], b))
        cands.sort()
        for off, _, b in cands:
            end = off + size[b]
            offset[b] = off
            left[0] -= 1
            saved = sky[first[b] : last[b] + 1]
            for t in range(first[b], last[b] + 1):
                rem[t] -= size[b]
                if end > sky[t]:
                    sky[t] = end
            new_top = top if top > end else end
            if not left[0]:
                if new_top < state["best"]:
                    state["best"] = new_top
                    state["plan"] = [o if o > 0 else 0 for o in offset]
                    if new_top <= bound:
                        raise _Stop
            else:
                search(off, b, new_top)
            for t in range(first[b], last[b] + 1):
                rem[t] += size[b]
            sky[first[b] : last[b] + 1] = saved
            left[0] += 1
            offset[b] = -1

    try:
        if nz:
            search(-1, -1, 0)
        finished = True
    except _Stop:
        finished = state["best"] <= bound
    return state["plan"], finished
