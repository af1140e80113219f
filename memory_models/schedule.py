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
    for lo in chain_lo:
        for q in bufs.op_preds[node_ops[lo][0]]:
            pred_mask[lo] |= 1 << node_of[q]
    made = [0] * N  # lone ops: bytes they leave resident
    frees: list[list[tuple[int, int]]] = [[] for _ in range(N)]  # lone ops: (bytes, readers' nodes) of inputs
    for j, g in enumerate(growth):
        if g is None:
            o = node_ops[j][0]
            made[j] = sum(size[b] for b in op_new[o] if consumers[b] or pinned[b])
            for b in op_in[o]:
                if not pinned[b]:
                    m = 0
                    for c in consumers[b]:
                        m |= 1 << node_of[c]
                    frees[j].append((size[b], m))

    r0 = sum(size[b] for b in bufs.inputs)
    spans = [(lo, hi, (1 << (hi - lo)) - 1) for lo, hi in zip(chain_lo, chain_hi)]
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
                best[nm] = (p, R2, mask, j)
        explored += len(nxt)
        if explored > state_limit:
            return _heuristic(bufs, node_ops, hill, growth, made, frees, pred_mask, spans, r0, explored)
        layer = nxt

    order: list[int] = []
    mask = (1 << N) - 1
    peak = best[mask][0]
    while mask:
        _, _, parent, j = best[mask]
        order[:0] = node_ops[j]
        mask = parent
    return Schedule(order, peak, "exact", explored)


def _heuristic(bufs, node_ops, hill, growth, made, frees, pred_mask, spans, r0, explored) -> Schedule:
    """List scheduling by the exchange order; the better of it and the listed order is kept."""
    mask, R = 0, r0
    order: list[int] = []
    nxt = [lo for lo, _, _ in spans]
    while True:
        choice = None
        for c, (_, hi, _) in enumerate(spans):
            j = nxt[c]
            if j >= hi or pred_mask[j] & ~mask:
                continue
            g = growth[j]
            if g is None:
                nm = mask | (1 << j)
                g = made[j] - sum(sz for sz, readers in frees[j] if not readers & ~nm)
            key = priority(hill[j], g)
            if choice is None or key < choice[0]:
                choice = (key, c, j, g)
        if choice is None:
            break
        _, c, j, g = choice
        mask |= 1 << j
        R += g
        nxt[c] += 1
        order.extend(node_ops[j])
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
