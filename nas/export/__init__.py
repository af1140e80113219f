"""Deployment: the best trial that fits a device, rebuilt (`trial`) and written out as QCDQ ONNX
(`onnx`) and QONNX (`qonnx`), each checked against PyTorch on the logit grid (`parity`), and as
integer-only C99 in the planned arena (`c`)."""

from .trial import ExportCheckFailed, ExportResult, export_trial, pick_trial

__all__ = ["ExportCheckFailed", "ExportResult", "export_trial", "pick_trial"]
