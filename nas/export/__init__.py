"""Deployment: the best trial that fits a device, rebuilt and written out as QCDQ ONNX and QONNX
with parity checks against PyTorch (`trial`), and as integer-only C99 in the planned arena (`c`)."""

from .trial import ExportCheckFailed, ExportResult, export_trial, pick_trial

__all__ = ["ExportCheckFailed", "ExportResult", "export_trial", "pick_trial"]
