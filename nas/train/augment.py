"""Training-time augmentation of one batch: jitter, scaling, time/space shift, mixup.

Small sensor datasets (hundreds of windows) are where tiny models overfit first; these four are the
augmentations the time-series and keyword-spotting literature finds safe for any signal or image
without knowing what it shows. Inputs are standardized per channel by the dataset loaders, so the
amounts are in units of a channel's standard deviation (jitter) or plain factors (scale).

All randomness comes from the trainer's seeded `torch.Generator`, so a seed still gives the same
run. Augmentation applies to training batches only; validation and test never see it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

KINDS = ("signals", "images")


@dataclass(frozen=True)
class Augment:
    jitter: float = 0.0  # std of additive Gaussian noise, in channel standard deviations
    scale: float = 0.0  # std of a per-sample, per-channel multiplicative factor around 1
    shift: float = 0.0  # largest circular shift along each spatial/time axis, as a fraction of its length
    mixup: float = 0.0  # Beta(alpha, alpha) mixing of sample pairs; 0 turns it off
    # which inputs jitter/scale/shift touch: 1-D signals (C, L) and/or images (C, H, W)
    apply_to: tuple[str, ...] = ("signals",)

    @property
    def active(self) -> bool:
        return any(v > 0 for v in (self.jitter, self.scale, self.shift, self.mixup))

    def validate(self) -> Augment:
        from memory_models.errors import InputError

        for name in ("jitter", "scale", "shift", "mixup"):
            v = getattr(self, name)
            if not (v >= 0 and v == v and v != float("inf")):
                raise InputError(f"training.augment.{name}: must be a finite number >= 0, got {v}")
        unknown = [k for k in self.apply_to if k not in KINDS]
        if unknown:
            raise InputError(f"training.augment.apply_to: {unknown} not among {list(KINDS)}")
        if self.shift > 0.5:
            raise InputError(f"training.augment.shift: at most 0.5 of the axis length, got {self.shift}")
        return self


def perturb(x: Tensor, aug: Augment, gen: torch.Generator) -> Tensor:
    """Jitter, scale and shift one modality's batch (N, C, *spatial); returns a new tensor."""
    if not (aug.jitter or aug.scale or aug.shift):
        return x
    if ("signals" if x.dim() == 3 else "images") not in aug.apply_to:
        return x
    n, c = x.shape[0], x.shape[1]
    dev = x.device
    if aug.scale:
        factor = 1.0 + aug.scale * torch.randn(n, c, generator=gen).to(dev)
        x = x * factor.view(n, c, *([1] * (x.dim() - 2)))
    if aug.jitter:
        x = x + aug.jitter * torch.randn(x.shape, generator=gen).to(dev)
    if aug.shift:
        for axis in range(2, x.dim()):
            length = x.shape[axis]
            most = int(aug.shift * length)
            if most < 1:
                continue
            # one shift per batch and axis: a per-sample roll would need a gather per sample
            k = int(torch.randint(-most, most + 1, (1,), generator=gen))
            if k:
                x = torch.roll(x, shifts=k, dims=axis)
    return x


def mix(n: int, alpha: float, gen: torch.Generator) -> tuple[Tensor, float]:
    """(permutation, lambda) for mixup: sample i is mixed with sample perm[i] at weight lambda."""
    lam = beta(alpha, gen)
    lam = max(lam, 1.0 - lam)  # the first sample dominates: its label stays the main target
    return torch.randperm(n, generator=gen), lam


def beta(alpha: float, gen: torch.Generator) -> float:
    """A Beta(alpha, alpha) draw from the seeded generator (torch's Beta sampler takes none):
    Johnk's method, X = U^(1/a), Y = V^(1/a), accepted when X + Y <= 1, gives X / (X + Y)."""
    for _ in range(1000):
        u = torch.rand(2, generator=gen, dtype=torch.float64).clamp_min(1e-300)
        x, y = float(u[0]) ** (1.0 / alpha), float(u[1]) ** (1.0 / alpha)
        if 0 < x + y <= 1.0:
            return x / (x + y)
    return 0.5
