"""Graph builders shared by the memory-model tests: random DAGs (hypothesis) and small hand graphs."""

from __future__ import annotations

from hypothesis import strategies as st

from memory_models.graph import Op, OpGraph, Tensor


@st.composite
def random_dags(draw, max_ops: int = 8, max_inputs: int = 3, views: bool = True) -> OpGraph:
    """Random valid OpGraphs: ops read 1-3 earlier tensors, some have scratch, some are views."""
    n_in = draw(st.integers(1, max_inputs))
    n_ops = draw(st.integers(max(2, n_in), max_ops))
    tensors: dict[str, Tensor] = {}
    inputs = []
    for i in range(n_in):
        name = f"in{i}"
        tensors[name] = Tensor(name, (draw(st.integers(1, 64)),), 8)
        inputs.append(name)
    available = list(inputs)
    unread = list(inputs)
    ops = []
    for k in range(n_ops):
        if unread:  # every graph input must be read: consume them first
            first = unread.pop(0)
        else:
            first = draw(st.sampled_from(available))
        reads = [first]
        extra = draw(st.lists(st.sampled_from(available), max_size=2))
        reads += [r for r in extra if r not in reads]
        out = f"t{k}"
        if views and len(reads) == 1 and draw(st.integers(0, 5)) == 0:
            src = tensors[first]
            tensors[out] = Tensor(out, (src.numel,), src.bits)
            ops.append(Op(f"op{k}", "flatten", (first,), (out,)))
        else:
            tensors[out] = Tensor(out, (draw(st.integers(1, 64)),), draw(st.sampled_from([8, 8, 4, 2])))
            scratch = draw(st.sampled_from([None, None, 0, 12, 40]))
            ops.append(Op(f"op{k}", "add", tuple(reads), (out,), scratch_bytes=scratch))
        available.append(out)
    produced = [f"t{k}" for k in range(n_ops)]
    outputs = [produced[-1]]
    extra_out = draw(st.sampled_from([None] + produced[:-1]))
    if extra_out and extra_out not in outputs:
        outputs.append(extra_out)
    return OpGraph(tensors, ops, inputs, outputs, name="random").validate()


def all_topological_orders(preds: list[tuple[int, ...]]):
    n = len(preds)
    done = [False] * n
    order: list[int] = []

    def rec():
        if len(order) == n:
            yield list(order)
            return
        for o in range(n):
            if not done[o] and all(done[p] for p in preds[o]):
                done[o] = True
                order.append(o)
                yield from rec()
                order.pop()
                done[o] = False

    yield from rec()


def conv_out(n: int, k: int, s: int) -> int:
    """'same' padding: ceil(n / s)."""
    return -(-n // s)


def cnn_branch(
    prefix: str, shape: tuple[int, ...], blocks: list[tuple[str, int, int, int]], wbits=8, abits=8
):
    """A realistic branch: (kind, channels, kernel, stride) blocks on a (C, L) or (C, H, W) input,
    ending in global average pooling. Returns (tensors, ops, output name)."""
    tensors = {prefix + "in": Tensor(prefix + "in", shape, 8)}
    ops = []
    cur = prefix + "in"
    c, *sp = shape
    dims = len(sp)
    for i, (kind, cout, k, s) in enumerate(blocks):
        sp = [conv_out(n, k, s) for n in sp]
        spatial = 1
        for n in sp:
            spatial *= n
        kk = k**dims
        if kind == "dw":
            steps = [
                (f"depthwise_conv{dims}d", c, c * kk, c * kk * spatial, k, s),
                (f"pointwise_conv{dims}d", cout, c * cout, c * cout * spatial, 1, 1),
            ]
        else:
            steps = [(f"conv{dims}d", cout, c * cout * kk, c * cout * kk * spatial, k, s)]
        for j, (okind, oc, w, macs, kern, stride) in enumerate(steps):
            name = f"{prefix}b{i}_{j}"
            tensors[name] = Tensor(name, (oc, *sp), abits)
            ops.append(
                Op(
                    name,
                    okind,
                    (cur,),
                    (name,),
                    weights=w,
                    weight_bits=wbits,
                    bias=oc,
                    scales=oc,
                    macs=macs,
                    attrs={"kernel": [kern] * dims, "stride": [stride] * dims, "activation": "relu"},
                )
            )
            cur = name
        c = cout
    g = prefix + "gap"
    tensors[g] = Tensor(g, (c,), abits)
    ops.append(Op(g, "global_avgpool", (cur,), (g,)))
    return tensors, ops, g


def late_fusion(
    branches: dict[str, tuple[tuple[int, ...], list]], classes: int = 10, hidden: int = 0, wbits=8, abits=8
) -> OpGraph:
    """Branches in the order given, then concat, optional hidden layer, classifier."""
    tensors, ops, feats = {}, [], []
    for name, (shape, blocks) in branches.items():
        t, o, f = cnn_branch(name + "_", shape, blocks, wbits, abits)
        tensors.update(t)
        ops += o
        feats.append(f)
    width = sum(tensors[f].shape[0] for f in feats)
    tensors["fused"] = Tensor("fused", (width,), abits)
    ops.append(Op("fuse", "concat", tuple(feats), ("fused",)))
    cur = "fused"
    if hidden:
        tensors["hidden"] = Tensor("hidden", (hidden,), abits)
        ops.append(
            Op(
                "fc1",
                "linear",
                ("fused",),
                ("hidden",),
                weights=width * hidden,
                weight_bits=wbits,
                bias=hidden,
                scales=hidden,
                macs=width * hidden,
                attrs={"activation": "relu"},
            )
        )
        cur, width = "hidden", hidden
    tensors["logits"] = Tensor("logits", (classes,), 8)
    ops.append(
        Op(
            "classifier",
            "linear",
            (cur,),
            ("logits",),
            weights=width * classes,
            weight_bits=wbits,
            bias=classes,
            scales=classes,
            macs=width * classes,
        )
    )
    return OpGraph(tensors, ops, [n + "_in" for n in branches], ["logits"], name="late_fusion").validate()
