"""Choose the operator order with the smallest peak activation memory.

Why this is not a formula: in a multi-branch net every branch's input and output sit in memory
while other branches run, so the order decides the peak. The exact answer is a shortest-path problem
over the *ideals* of the op DAG (the sets of ops that can have run so far): the bytes resident after
a set of ops is fixed by the set, not by the path, so dynamic programming over sets is exact.

To keep that small we contract the graph first (Liu's hill-valley argument, as used for tree
pebbling and by μNAS-style schedulers): within a *chain* (ops that must run back to back and whose
intermediate tensors nobody else reads) it is never worse to switch to another branch anywhere but at
a *valley* — the lowest resident point after the chain's highest hill. So each chain becomes a few
segments, and the DP runs over those. The tests check the result against brute force over every
topological order of random DAGs.

If the contracted problem is still too large (many parallel branches), a stated heuristic is used:
list scheduling that runs memory-releasing segments first (smallest hill first), then the rest by
largest hill minus net growth (the Abdel-Wahab-Kameda rule); the better of that and the given order
is returned, and the report says `heuristic`.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from .buffers import Buffers, lifetimes

EXACT_STATE_LIMIT = 20_000


@dataclass(slots=True)
class Schedule:
    order: list[int]
    peak: int
    method: str  # "exact", "forced" (a single chain) or "heuristic: ..."
    states: int  # DP states explored (0 when not searched)


def peak_of_order(bufs: Buffers, order: list[int]) -> int:
    """Peak live bytes for one order: max over steps of the buffers alive at that step."""
    first, last = lifetimes(bufs, order)
    diff = [0] * (len(order) + 1)
    for b, s in enumerate(bufs.size):
        diff[first[b]] += s
        diff[last[b] + 1] -= s
    peak = live = 0
    for d in diff:
        live += d
        if live > peak:
            peak = live
    return peak


# ---- chains -------------------------------------------------------------------------------------


def _chains(bufs: Buffers) -> list[list[int]]:
    """Split the ops (given in a topological order) into chains whose memory profile does not depend
    on what the rest of the graph has done.

    A chain o1..om: each later op depends on its predecessor and only on chain ops (C1); no op but the
    last has a successor outside the chain, nor a buffer read outside it (C2); every buffer a chain op
    reads that is made outside the chain is read only by chain ops (C3). Then the chain's resident bytes,
    relative to where it started, are the same in every schedule.

    Chains are grown greedily in op order, then cut wherever a condition fails, until none does.
    """
    n = bufs.n_ops
    preds = bufs.op_preds
    chain_of = [0] * n
    chains: list[list[int]] = []
    for o in range(n):
        p = preds[o]
        if p:
            c = chain_of[p[0]]
            ch = chains[c]
            if ch[-1] in p:
                for q in p:
                    if chain_of[q] != c:
                        break
                else:
                    ch.append(o)
                    chain_of[o] = c
                    continue
        chain_of[o] = len(chains)
        chains.append([o])

    producer, consumers, op_in, op_new = bufs.producer, bufs.consumers, bufs.op_in, bufs.op_new
    while True:
        head = [ch[0] for ch in chains]
        tail = [ch[-1] for ch in chains]
        cut_after: set[int] = set()
        for x in range(n):
            cx = chain_of[x]
            x_is_head = head[cx] == x
            for q in preds[x]:
                cq = chain_of[q]
                if cq != cx:
                    if tail[cq] != q:  # C2: q feeds another chain from its middle
                        cut_after.add(q)
                    if not x_is_head:  # C1: x waits on another chain
                        cut_after.add(chains[cx][chains[cx].index(x) - 1])
            for b in op_in[x]:
                pb = producer[b]
                if pb < 0 or chain_of[pb] != cx:
                    for y in consumers[b]:
                        if chain_of[y] != cx:  # C3: an outside buffer also read elsewhere
                            cut_after.add(x if x_is_head else chains[cx][chains[cx].index(x) - 1])
                            break
            if tail[cx] != x:
                for b in op_new[x]:
                    for y in consumers[b]:
                        if chain_of[y] != cx:  # C2: read outside the chain through a view
                            cut_after.add(x)
                            break
        cut_after.difference_update(tail)  # a chain's last op needs no cut (and a lone op no profile)
        if not cut_after:
            return chains
        pieces: list[list[int]] = []
        for ch in chains:
            start = 0
            for i, o in enumerate(ch):
                if o in cut_after:
                    pieces.append(ch[start : i + 1])
                    start = i + 1
            pieces.append(ch[start:])
        chains = pieces
        for c, ch in enumerate(chains):
            for o in ch:
                chain_of[o] = c


def priority(hill: int, growth: int) -> tuple[int, int]:
    """Exchange order for max-cumulative-cost jobs (smaller runs first): memory-releasing jobs
    first, lowest hill first; then growing jobs, largest (hill - growth) first. For any two
    independent jobs, running them in this order is never worse than the reverse (adjacent
    interchange), which is what makes the chain contraction below exact."""
    return (0, hill) if growth < 0 else (1, growth - hill)


def _segments(bufs: Buffers, chain: list[int]) -> list[tuple[int, int, int]]:
    """Contract a chain into the jobs an optimal schedule never splits (Sidney / Monma-Sidney).

    Each op is a job: its hill (peak bytes above what was resident when it started) and its growth
    (resident bytes after minus before). Chain ops run in op-index order and (C2, C3) every buffer
    they read is read only inside the chain, so a buffer is freed by the highest-numbered op that
    reads it. Whenever a job would rather run before its predecessor in the chain but may not, the two
    run back to back in some optimal schedule (interchange argument: the ops in between depend on
    neither), so they merge. What is left has non-increasing priority along the chain; the scheduler
    switches chains only between these jobs. Returns (end index exclusive, hill, growth) per job.
    """
    size, pinned, consumers, op_new, op_in = bufs.size, bufs.pinned, bufs.consumers, bufs.op_new, bufs.op_in
    ends: list[int] = []
    hills: list[int] = []
    growths: list[int] = []
    keys: list[tuple[int, int]] = []
    for k, o in enumerate(chain):
        grow = 0
        free = 0
        for b in op_new[o]:
            grow += size[b]
            if not consumers[b] and not pinned[b]:
                free += size[b]
        for b in op_in[o]:
            if consumers[b][-1] == o and not pinned[b]:
                free += size[b]
        hill, growth = grow, grow - free
        key = (0, hill) if growth < 0 else (1, growth - hill)
        while keys and key <= keys[-1]:
            keys.pop()
            ends.pop()
            h = hills.pop()
            g = growths.pop()
            if g + hill > h:
                h = g + hill
            hill, growth = h, g + growth
            key = (0, hill) if growth < 0 else (1, growth - hill)
        ends.append(k + 1)
        hills.append(hill)
        growths.append(growth)
        keys.append(key)
    return list(zip(ends, hills, growths))


# ---- search -------------------------------------------------------------------------------------


def best_schedule(bufs: Buffers, state_limit: int = EXACT_STATE_LIMIT) -> Schedule:
    chains = _chains(bufs)
    if len(chains) == 1:
        order = chains[0]
        return Schedule(order, peak_of_order(bufs, order), "forced", 0)

    # Macro nodes: chain segments (fixed hill and growth), and lone ops, whose growth depends on
    # which readers of their inputs have run. Each chain's nodes are consecutive bits.
    size, pinned, consumers, op_new, op_in = bufs.size, bufs.pinned, bufs.consumers, bufs.op_new, bufs.op_in
    node_ops: list[list[int]] = []
    hill: list[int] = []
    growth: list[int | None] = []
    chain_lo: list[int] = []
    chain_hi: list[int] = []
    node_of = [0] * bufs.n_ops
    for chain in chains:
        chain_lo.append(len(node_ops))
        if len(chain) == 1:
            o = chain[0]
            node_of[o] = len(node_ops)
            node_ops.append(chain)
            hill.append(sum(size[b] for b in op_new[o]))
            growth.append(None)
        else:
            start = 0
            for end, h, g in _segments(bufs, chain):
                for o in chain[start:end]:
                    node_of[o] = len(node_ops)
                node_ops.append(chain[start:end])
                hill.append(h)
                growth.append(g)
                start = end
        chain_hi.append(len(node_ops))
    N = len(node_ops)

    pred_mask = [0] * N  # only a chain's first node (or a lone op) waits on other nodes
    waits: list[list[int]] = [[] for _ in range(N)]  # the same, as node lists (for the heuristic)
    for lo in chain_lo:
        for q in bufs.op_preds[node_ops[lo][0]]:
            pred_mask[lo] |= 1 << node_of[q]
            if node_of[q] not in waits[lo]:
                waits[lo].append(node_of[q])
    made = [0] * N  # lone ops: bytes they leave resident
    frees: list[list[tuple[int, int]]] = [[] for _ in range(N)]  # lone ops: (bytes, readers' nodes) of inputs
    readers_of: dict[int, int] = {}  # buffer -> mask of its readers' nodes, built once per buffer
    for j, g in enumerate(growth):
        if g is None:
            o = node_ops[j][0]
            made[j] = sum(size[b] for b in op_new[o] if consumers[b] or pinned[b])
            for b in op_in[o]:
                if not pinned[b]:
                    m = readers_of.get(b)
                    if m is None:
                        m = 0
                        for c in consumers[b]:
                            m |= 1 << node_of[c]
                        readers_of[b] = m
                    frees[j].append((size[b], m))

    r0 = sum(size[b] for b in bufs.inputs)
    spans = [(lo, hi, (1 << (hi - lo)) - 1) for lo, hi in zip(chain_lo, chain_hi)]
    heuristic = (bufs, node_ops, hill, growth, made, waits, spans, r0)
    # k chains ready at the start give at least 1 + k + k(k-1)/2 states in the first two layers; when
    # that alone is over the limit the search below would give up anyway, after O(k^3) work.
    k = sum(1 for lo in chain_lo if not pred_mask[lo])
    if 1 + k + k * (k - 1) // 2 > state_limit:
        return _heuristic(*heuristic, 1 + k + k * (k - 1) // 2)
    best: dict[int, tuple[int, int, int, int]] = {0: (r0, r0, -1, -1)}
    layer = [0]
    explored = 1
    while layer:
        nxt: list[int] = []
        for mask in layer:
            pk, R, _, _ = best[mask]
            for lo, _, full in spans:
                done = (mask >> lo) & full
                if done == full:
                    continue
                j = lo + ((~done) & (done + 1)).bit_length() - 1  # the chain's next node
                if pred_mask[j] & ~mask:
                    continue
                p = R + hill[j]
                if p < pk:
                    p = pk
                nm = mask | (1 << j)
                cur = best.get(nm)
                if cur is not None and cur[0] <= p:
                    continue
                g = growth[j]
                if g is None:
                    R2 = R + made[j]
                    for sz, readers in frees[j]:
                        if not readers & ~nm:
                            R2 -= sz
                else:
                    R2 = R + g
                if cur is None:
                    nxt.append(nm)
                    if explored + len(nxt) > state_limit:  # would be over at the layer's end too
                        return _heuristic(*heuristic, explored + len(nxt))
                best[nm] = (p, R2, mask, j)
        explored += len(nxt)
        layer = nxt

    order: list[int] = []
    mask = (1 << N) - 1
    peak = best[mask][0]
    while mask:
        _, _, parent, j = best[mask]
        order[:0] = node_ops[j]
        mask = parent
    return Schedule(order, peak, "exact", explored)


def _heuristic(bufs, node_ops, hill, growth, made, waits, spans, r0, explored) -> Schedule:
    """List scheduling by the exchange order; the better of it and the listed order is kept.

    Ready nodes wait in a heap by (priority, chain). A lone op's priority depends on which of its
    inputs it frees, i.e. on whether it is the last unrun reader, so it is re-queued when a buffer's
    unrun readers drop to one: O(n log n) in all, where a scan of every chain per step was quadratic
    on graphs with thousands of parallel branches.
    """
    size, pinned, consumers, op_in = bufs.size, bufs.pinned, bufs.consumers, bufs.op_in
    N = len(node_ops)
    node_of = [0] * bufs.n_ops
    chain_of = [0] * N
    for j, ops in enumerate(node_ops):
        for o in ops:
            node_of[o] = j
    for c, (lo, hi, _) in enumerate(spans):
        for j in range(lo, hi):
            chain_of[j] = c
    # Unrun reader nodes per buffer (lone ops only care about their non-pinned inputs).
    readers: dict[int, set[int]] = {}
    for j, g in enumerate(growth):
        if g is None:
            for b in op_in[node_ops[j][0]]:
                if not pinned[b] and b not in readers:
                    readers[b] = {node_of[c] for c in consumers[b]}
    lone_inputs = {
        j: [b for b in op_in[node_ops[j][0]] if not pinned[b]] for j, g in enumerate(growth) if g is None
    }
    readers_in = {}  # buffer -> lone nodes that read it
    for j, bs in lone_inputs.items():
        for b in bs:
            readers_in.setdefault(b, []).append(j)
    dependents: list[list[int]] = [[] for _ in range(N)]
    missing = [len(w) for w in waits]
    for j, w in enumerate(waits):
        for q in w:
            dependents[q].append(j)

    def growth_now(j: int) -> int:
        g = growth[j]
        if g is not None:
            return g
        return made[j] - sum(size[b] for b in lone_inputs[j] if readers[b] <= {j})

    done = [False] * N
    version = [0] * N
    heap: list[tuple[tuple[int, int], int, int, int]] = []

    def push(j: int) -> None:
        version[j] += 1
        heapq.heappush(heap, (priority(hill[j], growth_now(j)), chain_of[j], j, version[j]))

    queued = [False] * N
    for lo, _, _ in spans:
        if not missing[lo]:
            queued[lo] = True
            push(lo)
    order: list[int] = []
    while heap:
        _, c, j, v = heapq.heappop(heap)
        if v != version[j] or done[j]:
            continue
        done[j] = True
        order.extend(node_ops[j])
        for o in node_ops[j]:
            for b in op_in[o]:
                rs = readers.get(b)
                if rs is not None and j in rs:
                    rs.discard(j)
                    if len(rs) == 1:
                        (y,) = rs
                        if queued[y] and not done[y]:
                            push(y)  # y now frees b: its priority changed
        _, hi, _ = spans[c]
        if j + 1 < hi:
            queued[j + 1] = True
            push(j + 1)
        for d in dependents[j]:
            missing[d] -= 1
            if not missing[d]:
                queued[d] = True
                push(d)
    given = list(range(bufs.n_ops))
    peak, given_peak = peak_of_order(bufs, order), peak_of_order(bufs, given)
    if given_peak < peak:
        order, peak = given, given_peak
    return Schedule(
        order,
        peak,
        f"heuristic (exchange-order list scheduling; over {EXACT_STATE_LIMIT:,} exact states)",
        explored,
    )
