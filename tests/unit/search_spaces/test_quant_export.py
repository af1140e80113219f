"""Export parity of the search-space quantized layers (``search_spaces.quant``).

A two-branch model (1D + 2D, mixed 8/4/2-bit weights and activations) is trained for a few steps on
real data (sklearn's digits: the 8x8 image as the 2D modality, its row and column sums as a
(2, 8) 1D modality), put in ``eval()`` mode, then exported

* to ONNX QCDQ (``brevitas.export.export_onnx_qcdq``) and run with onnxruntime: with graph
  optimisations off (the file as written) the logits equal PyTorch's on the output grid (0 LSB);
  at the default level (int8 kernels, their own rounding) within ``nas.export.parity``'s bounds;
* to QONNX (``brevitas.export.export_qonnx``) and run with ``qonnx.core.onnx_exec.execute_onnx``
  after ``qonnx.util.cleanup.cleanup_model``: 0 LSB.

Two fusion variants: channel concat, and gating (QuantSigmoid, elementwise mul) + sum of linear
projections, so QuantSigmoid / QuantMul / QuantAdd export is covered too.

What parity needs (found while writing this test):

* ``eval()`` mode (in training mode the input / output quantizers update their observed range);
* QCDQ export with ``dynamo=False`` (the TorchScript exporter): Brevitas' dynamo QCDQ exporter,
  the default with torch >= 2.9, refuses quantized (int32) biases. QONNX export works with both
  (same parity; the dynamo one lists the initializers as graph inputs until ``cleanup_model`` and
  takes ~3 s instead of ~0.5 s here), so both exports use ``dynamo=False``;
* the int32 bias *in the model* (Brevitas ``Int32Bias`` semantics): a float bias exports fine and
  matches with optimisations off, but onnxruntime's default optimisations quantize a float bias
  that follows a DequantizeLinear to int32 themselves (s_in * s_w), which moved logits of this
  model by up to 7 LSB (3% of argmax decisions) -- and so would the C code.
* ``onnxoptimizer`` installed (Brevitas' ONNX export imports it).
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from sklearn.datasets import load_digits
from torch import nn

from nas.export.parity import AS_WRITTEN, INTEGER_RUNTIME, compare, onnxruntime_logits
from search_spaces import quant as Q


def _ref64(model, seq, img):
    """PyTorch in float64 on some samples: settles float32 rounding ties (nas.export.parity.settle_ties)."""

    def run(idx):
        with torch.no_grad():
            return copy.deepcopy(model).double()(seq[idx].double(), img[idx].double()).numpy()

    return run


def digits_tensors():
    d = load_digits()
    img = torch.tensor(d.images, dtype=torch.float32) / 16.0  # (N, 8, 8) in [0, 1]
    rows = img.sum(dim=2)  # (N, 8)
    cols = img.sum(dim=1)  # (N, 8)
    seq = torch.stack([rows, cols], dim=1) / 4.0  # (N, 2, 8)
    return seq, img.unsqueeze(1), torch.tensor(d.target, dtype=torch.long)


class TinyNet(nn.Module):
    """1D branch: conv, inverted-residual-style block (dw 4-bit, pw 2-bit, linear bottleneck,
    residual add), pw; 2D branch: conv, max pool, conv. ``concat`` is written with plain torch ops
    in ``forward`` (``.mean``, ``+``, ``torch.cat``, then ``qidentity``), ``gated_sum`` with the
    module's combinators (``qglobal_avgpool``, ``qsigmoid``, ``QuantMul``, ``QuantAdd``, ``QuantCat``).
    """

    def __init__(self, fusion: str = "concat"):
        super().__init__()
        self.fusion = fusion
        self.seq_in = nn.Sequential(Q.qinput(8), Q.qconv(1, 2, 8, 3, weight_bits=8), Q.qrelu(8))
        self.res = nn.Sequential(
            Q.qconv(1, 8, 8, 3, groups=8, weight_bits=4),  # depthwise
            Q.qrelu(4),
            Q.qconv(1, 8, 8, 1, weight_bits=2),  # pointwise, ternary weights
            Q.qidentity(8, signed=True),  # linear bottleneck
        )
        self.res_add = Q.qidentity(8, signed=True)
        self.seq_out = nn.Sequential(Q.qconv(1, 8, 16, 1, weight_bits=8), Q.qrelu(8))
        self.img = nn.Sequential(
            Q.qinput(8),
            Q.qconv(2, 1, 8, 3, weight_bits=4),
            Q.qrelu(8),
            nn.MaxPool2d(2),
            Q.qconv(2, 8, 16, 3, weight_bits=8),
            Q.qrelu(2),
        )
        if fusion == "concat":
            self.seq_pool_q = Q.qidentity(8, signed=False)
            self.img_pool_q = Q.qidentity(8, signed=False)
            self.cat_q = Q.qidentity(8, signed=False)
        elif fusion == "gated_sum":
            self.seq_pool = Q.qglobal_avgpool(1, 8, signed=False)
            self.img_pool = Q.qglobal_avgpool(2, 8, signed=False)
            self.gate_fc = Q.qlinear(16, 16, weight_bits=8)
            self.gate = Q.qsigmoid(8)
            self.mul = Q.QuantMul(8, signed=False)
            self.proj_seq = Q.qlinear(16, 16, weight_bits=4)
            self.proj_img = Q.qlinear(16, 16, weight_bits=4)
            self.add = Q.QuantAdd(8, signed=True)
            self.cat = Q.QuantCat(8, signed=True)
        else:
            raise ValueError(fusion)
        self.head = nn.Sequential(
            Q.qlinear(32, 24, weight_bits=4),
            Q.qrelu(4),
            Q.qlinear(24, 10, weight_bits=8),
            Q.qoutput(8),
        )

    def forward(self, seq, img):
        h = self.seq_in(seq)
        h = self.res_add(self.res(h) + h)
        a = self.seq_out(h)
        b = self.img(img)
        if self.fusion == "concat":
            a = self.seq_pool_q(a.mean(-1))
            b = self.img_pool_q(b.mean((-2, -1)))
            x = self.cat_q(torch.cat([a, b], dim=1))
        else:
            a, b = self.seq_pool(a), self.img_pool(b)
            gated = self.mul(self.gate(self.gate_fc(a)), b)
            summed = self.add(self.proj_seq(a), self.proj_img(b))
            x = self.cat(gated, summed)
        return self.head(x)


def train_few_steps(model, seq, img, y, steps=200, batch=64, seed=0, lr=5e-3):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, seq.shape[0], (batch,), generator=g)
        opt.zero_grad()
        loss = F.cross_entropy(model(seq[idx], img[idx]), y[idx])
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


@pytest.fixture(scope="module")
def data():
    return digits_tensors()


@pytest.fixture(scope="module", params=["concat", "gated_sum"])
def trained(request, data):
    torch.manual_seed(0)
    seq, img, y = data
    model = TinyNet(request.param)
    losses = train_few_steps(model, seq[:1400], img[:1400], y[:1400])
    assert np.isfinite(losses).all()
    # It learns (past the observation phase). Drop of the mean loss, first 10 steps to last 10, seeds 0-4
    # (torch.manual_seed and the batch generator) on this project's 2-core machine: concat 0.98 / 1.48 /
    # 1.20 / 1.02 / 1.26, gated_sum 1.26 / 0.83 / 1.50 / 0.89 / 1.13. (120 steps at lr 1e-2, before:
    # 0.19 / 1.23 / 1.13 / 0.60 / 0.59 and 0.70 / 0.88 / -0.01 / 0.43 / 1.03: not a test.)
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.5
    return request.param, model


def _held_out(data, n=128):
    seq, img, _ = data
    return seq[-n:].contiguous(), img[-n:].contiguous()


def _layers(model):
    """(quantizer feeding it, weight layer) pairs of TinyNet, for the integer parameters."""
    pairs = [
        (model.seq_in[0], model.seq_in[1]),
        (model.seq_in[2], model.res[0]),
        (model.res[1], model.res[2]),
        (model.res_add, model.seq_out[0]),
        (model.img[0], model.img[1]),
        (model.img[2], model.img[4]),
        (model.head[1], model.head[2]),
    ]
    if model.fusion == "concat":
        pairs.append((model.cat_q, model.head[0]))
    else:
        pairs += [
            (model.cat, model.head[0]),
            (model.seq_pool, model.gate_fc),
            (model.seq_pool, model.proj_seq),
            (model.img_pool, model.proj_img),
        ]
    return pairs


def test_outputs_and_weights_on_integer_grids(trained, data):
    _, model = trained
    seq, img = _held_out(data)
    with torch.no_grad():
        out = model(seq, img)
    assert isinstance(out, torch.Tensor)
    p = Q.quant_params(model.head[-1])
    k = out / p["scale"]
    assert torch.allclose(k, k.round(), atol=1e-3)
    assert k.min() >= -128 and k.max() <= 127
    w = Q.quant_params(model.res[2])  # the 2-bit pointwise conv: ternary
    assert set(w["weight_int"].unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert w["weight_bits"] == 2
    relu2 = Q.quant_params(model.img[5])
    assert relu2["bits"] == 2 and not relu2["signed"]


def test_training_path_matches_brevitas_path(trained, data):
    """The layers' direct training path computes what the stock Brevitas (eval) path computes."""
    _, model = trained
    seq, img = _held_out(data, n=64)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        with torch.no_grad():
            y_train = model.train()(seq, img)  # updates the observed ranges, then quantizes with them
            y_eval = model.eval()(seq, img)  # Brevitas path with the same ranges
    finally:
        model.load_state_dict(state)
        model.eval()
    assert torch.equal(y_train, y_eval)


def test_state_dict_roundtrip(trained, data):
    """A checkpoint restores thresholds, observation counters and outputs; parameters stay the same objects."""
    fusion, model = trained
    seq, img = _held_out(data, n=64)
    fresh = TinyNet(fusion)
    params = list(fresh.parameters())
    fresh.load_state_dict(model.state_dict())
    assert all(a is b for a, b in zip(params, fresh.parameters(), strict=True))  # an optimizer keeps working
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(seq, img), model(seq, img))
    tq = fresh.head[1].act_quant.fused_activation_quant_proxy.tensor_quant
    assert not tq.observing and tq.log_threshold.requires_grad


def test_qcdq_onnxruntime_parity(trained, data, tmp_path):
    from brevitas.export import export_onnx_qcdq

    fusion, model = trained
    seq, img = _held_out(data)
    with torch.no_grad():
        ref = model(seq, img).numpy()
    path = tmp_path / f"{fusion}_qcdq.onnx"
    export_onnx_qcdq(
        model,
        args=(seq, img),
        export_path=str(path),
        input_names=["seq", "img"],
        output_names=["logits"],
        dynamo=False,
    )
    assert not model.training  # export restores the mode

    lsb = float(Q.quant_params(model.head[-1])["scale"])
    xs = [seq.numpy(), img.numpy()]
    for check, rewrite in ((AS_WRITTEN, False), (INTEGER_RUNTIME, True)):
        c = compare(
            check,
            path,
            "onnxruntime",
            onnxruntime_logits(path, xs, rewrite),
            ref,
            lsb,
            _ref64(model, seq, img),
        )
        print(f"\n[{fusion}] QCDQ, {check}: {c.describe()}")
        assert c.passed
        if check == AS_WRITTEN:
            assert c.max_lsb == 0

    # The integer parameters the C generator reads are those of the graph.
    graph = onnx.load(str(path)).graph
    ints = [numpy_helper.to_array(t) for t in graph.initializer]
    int32 = [a for a in ints if a.dtype == np.int32]
    int8 = [a for a in ints if a.dtype in (np.int8, np.uint8)]
    for quantizer, layer in _layers(model):
        s_in = Q.quant_params(quantizer)["scale"]
        b_int, _ = Q.int32_bias(layer, s_in)
        assert any(a.shape == tuple(b_int.shape) and (a == b_int.numpy()).all() for a in int32), layer
        w_int = Q.quant_params(layer)["weight_int"].numpy()
        assert any(a.shape == w_int.shape and (a == w_int).all() for a in int8), layer


def test_qonnx_execute_parity(trained, data, tmp_path):
    from brevitas.export import export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    fusion, model = trained
    seq, img = _held_out(data, n=32)
    with torch.no_grad():
        ref = model(seq, img).numpy()
    path = tmp_path / f"{fusion}_qonnx.onnx"
    export_qonnx(
        model, args=(seq, img), export_path=str(path), input_names=["seq", "img"], output_names=["logits"]
    )

    mw = cleanup_model(ModelWrapper(str(path)))
    ops = {n.op_type for n in mw.graph.node}
    assert "Quant" in ops
    names = [i.name for i in mw.graph.input]
    assert len(names) == 2
    res = execute_onnx(mw, {names[0]: seq.numpy(), names[1]: img.numpy()})
    lsb = float(Q.quant_params(model.head[-1])["scale"])
    c = compare(AS_WRITTEN, path, "qonnx", res[mw.graph.output[0].name], ref, lsb, _ref64(model, seq, img))
    print(f"\n[{fusion}] QONNX: {c.describe()}")
    assert c.max_lsb == 0


def test_lsq_fake_quant_gradients_match_autograd_reference():
    """Hand-written backward == autograd through round-STE + where-clamp (Brevitas' formulation)."""
    torch.manual_seed(0)
    x = (torch.randn(2000) * 3).requires_grad_()
    s = torch.tensor(0.1, requires_grad=True)
    g = torch.randn(2000)
    y = Q._LsqFakeQuant.apply(x, s, -8.0, 7.0)
    (y * g).sum().backward()
    gx, gs = x.grad.clone(), s.grad.clone()
    x.grad = s.grad = None
    v = x / s
    r = v + (torch.round(v) - v).detach()
    r = torch.where(r > 7, torch.tensor(7.0), torch.where(r < -8, torch.tensor(-8.0), r))
    (r * s * g).sum().backward()
    assert torch.equal(y.detach(), (r * s).detach())
    assert torch.allclose(gx, x.grad, atol=1e-6)
    assert torch.allclose(gs, s.grad, rtol=1e-4)


def test_qtensor_composition():
    """Activation outputs are tensors that keep their scale through invariant ops only."""
    x = torch.randn(2, 4, 8, 8)
    q = Q.qrelu(4)(x)
    assert isinstance(q, Q.QTensor) and isinstance(q, torch.Tensor)
    pooled = torch.nn.MaxPool2d(2)(q)
    assert isinstance(pooled, Q.QTensor) and pooled.quant_scale is q.quant_scale
    assert isinstance(torch.flatten(pooled, 1), Q.QTensor)
    for plain in (q + q, q.mean((-2, -1)), torch.cat([q, q], 1), q * 2):
        assert type(plain) is torch.Tensor
    conv = Q.qconv(2, 4, 4, 3)
    assert type(conv(pooled)) is torch.Tensor
    with pytest.raises(TypeError, match="quantized input"):
        conv(q + q)
    assert type(conv(Q.qidentity(8)(q + q))) is torch.Tensor
    assert type(Q.qoutput()(x)) is torch.Tensor
