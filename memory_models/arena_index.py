"""First fit on an interval index, for graphs where very many buffers are alive at once.

Plain first fit compares each buffer with every placed buffer alive at the same time; with hundreds
of parallel branches whose outputs wait for one join, that is quadratic. Here a segment tree over
the schedule steps keeps, per node, the merged byte ranges (a sorted boundary list, so a packed stack
is one range however many buffers it holds) of

- `own`: the buffers whose lifetime covers the node's whole step range (stored at its canonical
  nodes), and
- `sub`: every buffer stored in the node's subtree, or covering the node.

The placed buffers alive at some step of [f, l] are then exactly those in `sub` of the canonical
nodes of [f, l] and in `own` of the nodes on the paths from leaves f and l to the root; first fit
looks for the lowest gap in the union of those O(log n) lists without listing any buffer. The
offsets equal plain first fit's, since the lowest gap does not depend on how ranges are merged.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right


def lowest_gap(busy: list[tuple[int, int]], size: int) -> int:
    """The lowest offset where `size` bytes clear every (start, end) range in `busy` (sorted here)."""
    off = 0
    for s, e in sorted(busy):
        if off + size <= s:
            break
        if e > off:
            off = e
    return off


def _add(bounds: list[int], a: int, b: int) -> None:
    """Merge [a, b) into a sorted list of disjoint ranges [s0, e0, s1, e1, ...] (touching ranges
    merge too)."""
    i = bisect_left(bounds, a)
    j = bisect_right(bounds, b)
    new = []
    if not i & 1:
        new.append(a)
    if not j & 1:
        new.append(b)
    bounds[i:j] = new


def first_fit_indexed(
    seq: list[int], size: list[int], first: list[int], last: list[int], n_steps: int
) -> tuple[list[int], int]:
    """Each buffer of `seq` in turn at the lowest offset clear of the placed buffers alive at some
    common step. Returns (offsets, arena bytes)."""
    leaves = 1
    while leaves < n_steps:
        leaves *= 2
    own: list[list[int]] = [[] for _ in range(2 * leaves)]
    sub: list[list[int]] = [[] for _ in range(2 * leaves)]
    offset = [0] * len(size)
    top = 0
    for b in seq:
        sz = size[b]
        lo, hi = first[b] + leaves, last[b] + leaves + 1
        canon = []
        x, y = lo, hi
        while x < y:
            if x & 1:
                canon.append(x)
                x += 1
            if y & 1:
                y -= 1
                canon.append(y)
            x >>= 1
            y >>= 1
        paths = set()
        x, y = lo, hi - 1
        while x:
            paths.add(x)
            paths.add(y)
            x >>= 1
            y >>= 1
        lists = [sub[c] for c in canon if sub[c]]
        lists += [own[p] for p in paths if own[p]]

        off = 0
        moved = True
        while moved:
            moved = False
            for bounds in lists:
                k = bisect_right(bounds, off)
                if k & 1:  # off is inside a busy range
                    off = bounds[k]
                    moved = True
                elif k < len(bounds) and bounds[k] < off + sz:  # the next busy range starts too soon
                    off = bounds[k + 1]
                    moved = True

        end = off + sz
        offset[b] = off
        if end > top:
            top = end
        for c in canon:
            _add(own[c], off, end)
            _add(sub[c], off, end)
        for p in paths:
            _add(sub[p], off, end)
    return offset, top
