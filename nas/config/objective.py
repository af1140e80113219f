"""What a study minimizes: a memory or cost figure, optionally on one named device (`flash@gap8`).

Parsed once, here, so the study loader, the objective values, the fronts and the report agree on
which figure of which device an objective means."""

from __future__ import annotations

from dataclasses import dataclass

# The figures of a device's report a study may minimize (keys of the per-device trial record).
FIGURES = ("flash", "sram", "latency", "energy")


@dataclass(frozen=True, slots=True)
class Objective:
    figure: str
    device: str | None = None  # None: the study's primary (first) device

    @classmethod
    def parse(cls, text: str) -> Objective:
        figure, _, device = text.partition("@")
        if figure not in FIGURES:
            raise ValueError(f"{text!r}: must be one of {FIGURES}, optionally @DEVICE (e.g. latency@gap8)")
        return cls(figure, device or None)

    def on(self, primary: str) -> str:
        """The device this objective is measured on."""
        return self.device or primary

    def name(self, primary: str) -> str:
        """`figure@device` with the device spelled out (the study's objective names)."""
        return f"{self.figure}@{self.on(primary)}"

    def __str__(self) -> str:
        return self.figure if self.device is None else f"{self.figure}@{self.device}"
