"""QAT training-step cost of the quantized search-space layers versus the same float network.

Run: pytest -m bench -s tests/bench/test_bench_qat.py

Targets:
* a QAT step (forward + cross-entropy + backward + Adam, batch 64) with the layers of
  ``search_spaces.quant`` costs at most 3x the step of the same architecture built from plain
  ``nn.Conv``/``nn.Linear``/``nn.ReLU`` (one thread, and torch's default thread count);
* knowledge distillation from pre-computed (cached) teacher logits adds at most 10% to a QAT step.

The out-of-the-box Brevitas configuration (per-channel ``Int8WeightPerChannelFloat`` weights,
``Int32Bias`` with ``QuantTensor`` propagation, default ``Uint8ActPerTensorFloat`` /
``Int8ActPerTensorFloat`` activations whose scales come from 300 steps of percentile statistics)
is timed too, for reference only.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from search_spaces import quant as Q

QAT_RATIO_TARGET = 3.0
KD_OVERHEAD_TARGET = 0.10
BATCH = 64
CLASSES = 6


@dataclass(frozen=True)
class Case:
    name: str
    image: tuple[int, int, int]  # the 2D modality (C, H, W)
    imu: tuple[int, int]  # the 1D modality (C, L)
    wbits: tuple[int, ...]  # per weight layer, in build order (8 layers)
    abits: tuple[int, ...]  # per activation quantizer after a weight layer (7 ReLUs)


CASES = [
    Case("W8A8 imu(3,100)+spectrogram(1,40,32)", (1, 40, 32), (3, 100), (8,) * 8, (8,) * 7),
    Case(
        "mixed W8/4/2 A8/4 imu(3,100)+image(1,16,16)",
        (1, 16, 16),
        (3, 100),
        (8, 4, 4, 2, 4, 8, 4, 8),
        (8, 4, 4, 4, 8, 4, 8),
    ),
]


# --------------------------------------------------------------------------------------------
# Layer kits: the same architecture with float layers, our quantized layers, Brevitas defaults
# --------------------------------------------------------------------------------------------


class FloatKit:
    def conv(self, dims, cin, cout, k, stride=1, groups=1, wbits=8):
        cls = nn.Conv1d if dims == 1 else nn.Conv2d
        return cls(cin, cout, k, stride=stride, padding=k // 2, groups=groups)

    def linear(self, fin, fout, wbits=8):
        return nn.Linear(fin, fout)

    def relu(self, bits):
        return nn.ReLU()

    def ident(self, bits, signed=True):
        return nn.Identity()

    def inp(self):
        return nn.Identity()

    def pool(self, dims, bits, signed):
        return _MeanPool(dims, nn.Identity())

    def cat(self, bits, signed=True):
        return _Cat(nn.Identity())

    def output(self, bits):
        return nn.Identity()


class QuantKit:
    def conv(self, dims, cin, cout, k, stride=1, groups=1, wbits=8):
        return Q.qconv(dims, cin, cout, k, stride, groups, weight_bits=wbits)

    def linear(self, fin, fout, wbits=8):
        return Q.qlinear(fin, fout, weight_bits=wbits)

    def relu(self, bits):
        return Q.qrelu(bits)

    def ident(self, bits, signed=True):
        return Q.qidentity(bits, signed)

    def inp(self):
        return Q.qinput(8)

    def pool(self, dims, bits, signed):
        return Q.qglobal_avgpool(dims, bits, signed)

    def cat(self, bits, signed=True):
        return Q.QuantCat(bits, signed)

    def output(self, bits):
        return Q.qoutput(bits)


class BrevitasDefaultKit:
    """What one writes following the Brevitas README: Int32Bias needs QuantTensor inputs."""

    def __init__(self):
        from brevitas import nn as qnn
        from brevitas import quant as bq

        self.qnn, self.bq = qnn, bq

    def conv(self, dims, cin, cout, k, stride=1, groups=1, wbits=8):
        cls = self.qnn.QuantConv1d if dims == 1 else self.qnn.QuantConv2d
        wq = self.bq.Int8WeightPerChannelFloat.let(bit_width=wbits)
        return cls(
            cin,
            cout,
            k,
            stride=stride,
            padding=k // 2,
            groups=groups,
            weight_quant=wq,
            bias_quant=self.bq.Int32Bias,
        )

    def linear(self, fin, fout, wbits=8):
        wq = self.bq.Int8WeightPerChannelFloat.let(bit_width=wbits)
        return self.qnn.QuantLinear(fin, fout, bias=True, weight_quant=wq, bias_quant=self.bq.Int32Bias)

    def relu(self, bits):
        aq = self.bq.Uint8ActPerTensorFloat.let(bit_width=bits)
        return self.qnn.QuantReLU(act_quant=aq, return_quant_tensor=True)

    def ident(self, bits, signed=True):
        aq = (self.bq.Int8ActPerTensorFloat if signed else self.bq.Uint8ActPerTensorFloat).let(bit_width=bits)
        return self.qnn.QuantIdentity(act_quant=aq, return_quant_tensor=True)

    def inp(self):
        return self.ident(8, True)

    def pool(self, dims, bits, signed):
        return _MeanPool(dims, self.ident(bits, signed))

    def cat(self, bits, signed=True):
        return _Cat(self.ident(bits, signed))

    def output(self, bits):
        return self.ident(bits, True)


def _value(x):
    return x.value if hasattr(x, "value") and not isinstance(x, torch.Tensor) else x


class _MeanPool(nn.Module):
    def __init__(self, dims, requant):
        super().__init__()
        self.reduce = (-1,) if dims == 1 else (-2, -1)
        self.requant = requant

    def forward(self, x):
        return self.requant(_value(x).mean(self.reduce))


class _Cat(nn.Module):
    def __init__(self, requant):
        super().__init__()
        self.requant = requant

    def forward(self, *xs):
        return self.requant(torch.cat([_value(x) for x in xs], dim=1))


class TwoBranchNet(nn.Module):
    """IMU branch: conv k5/s2 + 2 depthwise-separable blocks; 2D branch: conv, maxpool, conv/s2.

    Each branch ends with a global average pool + requantization; late fusion by channel concat +
    requantization; one hidden layer; classifier with 8-bit output requantization.
    """

    def __init__(self, kit, case: Case):
        super().__init__()
        w, a = list(case.wbits), list(case.abits)
        cimu, cimg = case.imu[0], case.image[0]
        self.imu = nn.Sequential(
            kit.inp(),
            kit.conv(1, cimu, 16, 5, 2, wbits=w[0]),
            kit.relu(a[0]),
            kit.conv(1, 16, 16, 3, 1, groups=16, wbits=w[1]),  # depthwise
            kit.relu(a[1]),
            kit.conv(1, 16, 32, 1, wbits=w[2]),  # pointwise
            kit.relu(a[2]),
            kit.conv(1, 32, 32, 3, 2, groups=32, wbits=w[3]),
            kit.relu(a[3]),
            kit.conv(1, 32, 32, 1, wbits=w[4]),
            kit.ident(8, True),  # linear bottleneck (signed requantization)
            kit.pool(1, 8, True),  # global average pool + requantization
        )
        self.img = nn.Sequential(
            kit.inp(),
            kit.conv(2, cimg, 8, 3, wbits=w[5]),
            kit.relu(a[4]),
            nn.MaxPool2d(2),
            kit.conv(2, 8, 16, 3, 2, wbits=w[6]),
            kit.relu(a[5]),
            kit.pool(2, 8, False),
        )
        self.fuse = kit.cat(8, True)  # late fusion: concat + requantization
        self.fc1 = kit.linear(48, 32, wbits=w[7])
        self.act1 = kit.relu(a[6])
        self.fc2 = kit.linear(32, CLASSES, wbits=8)
        self.out = kit.output(8)

    def forward(self, imu, img):
        x = self.fc1(self.fuse(self.imu(imu), self.img(img)))
        return _value(self.out(self.fc2(self.act1(x))))


# --------------------------------------------------------------------------------------------
# Training-step timing
# --------------------------------------------------------------------------------------------


def kd_loss(student, teacher_logp, target, alpha=0.5, T=4.0):
    """alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE.

    ``teacher_logp`` is log_softmax(teacher_logits / T), pre-computed once per dataset.
    """
    kl = F.kl_div(F.log_softmax(student / T, dim=1), teacher_logp, reduction="batchmean", log_target=True)
    return alpha * T * T * kl + (1.0 - alpha) * F.cross_entropy(student, target)


class Trainer:
    """One model + Adam + a small in-memory dataset, stepping through batches by index."""

    def __init__(self, kit, case: Case, seed=0, n=1024, kd=False):
        torch.manual_seed(seed)
        self.model = TwoBranchNet(kit, case).train()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(seed)
        self.imu = torch.randn(n, *case.imu, generator=g)
        self.img = torch.rand(n, *case.image, generator=g)
        self.y = torch.randint(0, CLASSES, (n,), generator=g)
        teacher_logits = torch.randn(n, CLASSES, generator=g) * 3  # cached teacher outputs
        self.teacher_logp = F.log_softmax(teacher_logits / 4.0, dim=1)
        self.kd = kd
        self.perm = torch.randperm(n, generator=g)
        self.pos = 0

    def step(self):
        n = self.perm.numel()
        if self.pos + BATCH > n:
            self.pos = 0
        idx = self.perm[self.pos : self.pos + BATCH]
        self.pos += BATCH
        self.opt.zero_grad(set_to_none=True)
        out = self.model(self.imu[idx], self.img[idx])
        if self.kd:
            loss = kd_loss(out, self.teacher_logp[idx], self.y[idx])
        else:
            loss = F.cross_entropy(out, self.y[idx])
        loss.backward()
        self.opt.step()


def time_steps(trainers: dict[str, Trainer], steps=30, repeats=7, warmup=15) -> dict[str, float]:
    """Median ms per step; trainers are interleaved repeat by repeat so drift hits all alike."""
    for t in trainers.values():
        for _ in range(warmup):
            t.step()
    samples = {k: [] for k in trainers}
    for _ in range(repeats):
        for k, t in trainers.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                t.step()
            samples[k].append((time.perf_counter() - t0) / steps * 1e3)
    return {k: statistics.median(v) for k, v in samples.items()}


@pytest.fixture
def threads_restored():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _thread_settings():
    default = torch.get_num_threads()
    return [1] if default == 1 else [1, default]


@pytest.mark.bench
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name.split()[0])
def test_qat_step_vs_float(case, threads_restored):
    worst = 0.0
    for threads in _thread_settings():
        torch.set_num_threads(threads)
        trainers = {"float": Trainer(FloatKit(), case), "qat": Trainer(QuantKit(), case)}
        ms = time_steps(trainers)
        ratio = ms["qat"] / ms["float"]
        worst = max(worst, ratio)
        print(
            f"\n[{case.name}] threads={threads}: float {ms['float']:.2f} ms/step, "
            f"QAT {ms['qat']:.2f} ms/step, QAT/float {ratio:.2f}x (target <= {QAT_RATIO_TARGET}x)"
        )
    assert worst <= QAT_RATIO_TARGET


@pytest.mark.bench
def test_brevitas_defaults_reference(threads_restored):
    """Reference only (no target): out-of-the-box Brevitas on the same net, one thread."""
    torch.set_num_threads(1)
    case = CASES[0]
    trainers = {
        "float": Trainer(FloatKit(), case),
        "brevitas_default": Trainer(BrevitasDefaultKit(), case),
        "qat": Trainer(QuantKit(), case),
    }
    ms = time_steps(trainers, steps=10, repeats=5, warmup=5)
    print(
        f"\n[{case.name}] threads=1: float {ms['float']:.2f} ms, Brevitas defaults "
        f"{ms['brevitas_default']:.2f} ms ({ms['brevitas_default'] / ms['float']:.2f}x, during its "
        f"300-step statistics phase), search_spaces.quant {ms['qat']:.2f} ms ({ms['qat'] / ms['float']:.2f}x)"
    )


@pytest.mark.bench
def test_kd_overhead(threads_restored):
    case = CASES[0]
    worst = -1.0
    for threads in _thread_settings():
        torch.set_num_threads(threads)
        trainers = {"ce": Trainer(QuantKit(), case), "kd": Trainer(QuantKit(), case, kd=True)}
        ms = time_steps(trainers, repeats=9)
        overhead = ms["kd"] / ms["ce"] - 1.0
        worst = max(worst, overhead)
        print(
            f"\n[{case.name}] threads={threads}: QAT step CE {ms['ce']:.2f} ms, KD (cached teacher "
            f"logits) {ms['kd']:.2f} ms, overhead {overhead * 100:+.1f}% (target <= "
            f"{KD_OVERHEAD_TARGET * 100:.0f}%)"
        )
    assert worst <= KD_OVERHEAD_TARGET
