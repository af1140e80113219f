"""The tables behind `m2nas report`: trials flattened to rows, the fronts, the search history and the
per-layer memory of a model. Kept apart from the figures so that tests can check the numbers the
report plots without parsing HTML, and so the figures stay a thin layer over these frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from optuna.trial import FrozenTrial

from memory_models.errors import InputError
from nas.config.study import Study
from nas.engine.record import Attr, Status, TrialRecord
from nas.engine.results import count, hypervolume_2d_plus, pareto_front

# Statuses with memory figures, in the order the report draws them.
ANALYSED = (Status.TRAINED, Status.STOPPED_EARLY, Status.NO_SIGNAL, Status.REJECTED)
FRONT_COLUMNS = ("flash", "sram", "arena", "latency", "energy")


def load_trials(study_file: str | Path, storage: str | None) -> tuple[Study, list[FrozenTrial], str]:
    """The study, its trials and the storage URL; bad input (nothing to report on) is an InputError."""
    from nas.engine.status import open_existing

    study, ostudy = open_existing(study_file, storage)
    url = storage or study.storage_url
    trials = ostudy.get_trials(deepcopy=False)
    if not trials:
        raise InputError(
            f"study {study.name!r} in {url} has no trials yet (run `m2nas search {study_file}` first)"
        )
    if not any(TrialRecord(t).status in ANALYSED for t in trials):
        c = count(trials)
        raise InputError(
            f"study {study.name!r} in {url} has no analysed candidate yet "
            f"({c.failed} failed, {c.running} running, {c.waiting} waiting)"
        )
    return study, trials, url


def minimized(study: Study) -> list[str]:
    """Figure names the fronts minimise (device suffixes dropped: a front is per device)."""
    return study.minimized_figures()


def arch_groups(arch: dict[str, Any] | None) -> dict[str, str]:
    """Fusion point, fusion operator and used-modality subset of an arch dict (format m2nas.arch).
    With one used modality there is no fusion: point and operator read "single"."""
    if not arch:
        return {"fusion_point": "?", "fusion_op": "?", "modalities": "?"}
    used = [b["modality"] for b in arch.get("branches", []) if b.get("used", True)]
    fused = len(used) > 1
    fusion = arch.get("fusion", {})
    return {
        "fusion_point": fusion.get("point", "late") if fused else "single",
        "fusion_op": fusion.get("op", "concat") if fused else "single",
        "modalities": "+".join(used),
    }


def candidate_rows(study: Study, trials: list[FrozenTrial]) -> pd.DataFrame:
    """One row per (analysed trial, study device): status, metric, that device's figures, fit and the
    arch groups. Rejected candidates have no metric (NaN)."""
    metric = study.cfg.objectives.metric
    rows = []
    for t in trials:
        rec = TrialRecord(t)
        status = rec.status
        if status not in ANALYSED:
            continue
        val = rec.val.get(metric) if status != Status.REJECTED else None
        for dev in study.devices:
            fig = rec.figures(dev)
            if not fig:
                continue
            rows.append(
                {
                    "trial": t.number,
                    "status": status.value,
                    "device": dev,
                    "val": np.nan if val is None else float(val),
                    "fits": bool(fig["fits"]),
                    **{k: fig[k] for k in ("flash", "sram", "arena", "peak", "latency", "energy")},
                    "summary": rec.attrs.get(Attr.SUMMARY, ""),
                    "reason": rec.reason if status != Status.TRAINED else "",
                    "device_reason": fig.get("reason", ""),
                    "completed": t.datetime_complete,
                    **arch_groups(rec.arch),
                }
            )
    return pd.DataFrame(rows)


def front_table(study: Study, trials: list[FrozenTrial]) -> pd.DataFrame:
    """The Pareto front per device, the same rows as `m2nas status --json` (plus a device column)."""
    metric = study.cfg.objectives.metric
    rows = []
    for dev in study.devices:
        for t in pareto_front(trials, dev, metric, minimized(study)):
            rec = TrialRecord(t)
            fig = rec.memory[dev]
            rows.append(
                {
                    "device": dev,
                    "trial": t.number,
                    f"val_{metric}": rec.val[metric],
                    **{k: fig[k] for k in FRONT_COLUMNS},
                    "summary": rec.attrs.get(Attr.SUMMARY, ""),
                }
            )
    return pd.DataFrame(rows, columns=["device", "trial", f"val_{metric}", *FRONT_COLUMNS, "summary"])


def level_of(study: Study, device: str, part: str):
    """The memory level (name, capacity) that holds `part` ("weights" or "activations") on `device`."""
    name = study.targets[device][part]
    return study.devices[device].level(name)


def budget(study: Study, device: str, figure: str) -> int | None:
    """The capacity a figure is checked against: flash against the weights' level, SRAM against the
    activations' level; latency and energy have no budget."""
    part = {"flash": "weights", "sram": "activations"}.get(figure)
    return None if part is None else level_of(study, device, part).capacity_bytes


def front_2d(xs: np.ndarray, ys: np.ndarray) -> tuple[list[float], list[float]]:
    """Points not dominated on (x down, y up), sorted by x: the staircase drawn in each panel."""
    best = -np.inf
    fx, fy = [], []
    for i in np.lexsort((-ys, xs)):
        if ys[i] > best:
            best = ys[i]
            fx.append(float(xs[i]))
            fy.append(float(ys[i]))
    return fx, fy


def history(study: Study, rows: pd.DataFrame, device: str) -> pd.DataFrame:
    """Per analysed trial on `device`, in completion order: the best metric so far among trained
    candidates that fit, and the hypervolume of those candidates. Each minimised figure is divided by
    its budget (latency, energy: by 1.1 x the largest seen) so the hypervolume is unitless; the
    reference point is (metric 0, 1, 1, ...)."""
    d = rows[rows.device == device].sort_values(["completed", "trial"]).reset_index(drop=True)
    figs = minimized(study)
    scale = []
    for f in figs:
        cap = budget(study, device, f)
        scale.append(float(cap) if cap else float(max(d[f].max(), 1e-12) * 1.1))
    scale = np.array(scale)
    ref = np.ones(len(figs) + 1)
    ref[0] = 0.0
    best, hv, pts = [], [], []
    so_far = np.nan
    for _, r in d.iterrows():
        if r.status == Status.TRAINED and r.fits:
            so_far = r.val if np.isnan(so_far) else max(so_far, r.val)
            pts.append([-r.val, *(r[f] / s for f, s in zip(figs, scale))])
        best.append(so_far)
        hv.append(hypervolume_2d_plus(np.array(pts), ref) if pts else 0.0)
    return pd.DataFrame({"trial": d.trial, "completed": d.completed, "best": best, "hypervolume": hv})


def layer_table(arch: dict[str, Any], study: Study, device: str):
    """Per op of the model, in the schedule the memory model chose: packed weight and bias bytes (on
    the weights' level), live activation bytes at that step split by role (on the activations'
    level), and the weight / output bit-widths. Rebuilt from the arch, no torch. Returns the table
    and the MemoryReport."""
    from memory_models import evaluate
    from search_spaces import Arch, graph

    report = evaluate(graph(Arch.from_dict(arch)), study.devices[device], study.targets[device])
    g, bufs, plan = report.graph, report.buffers, report.plan
    rows = []
    for step, i in enumerate(report.schedule_.order):
        op = g.ops[i]
        ins, new = set(bufs.op_in[i]), set(bufs.op_new[i])
        live = {"act_inputs": 0, "act_outputs": 0, "act_scratch": 0, "act_held": 0}
        for b, size in enumerate(plan.size):
            if not size or not plan.first[b] <= step <= plan.last[b]:
                continue
            if bufs.is_scratch[b] and b in new:
                live["act_scratch"] += size
            elif b in new:
                live["act_outputs"] += size
            elif b in ins:
                live["act_inputs"] += size
            else:
                live["act_held"] += size
        rows.append(
            {
                "step": step,
                "op": op.name,
                "kind": op.kind,
                "weight_bytes": op.weight_bytes,
                "bias_bytes": 4 * op.bias,
                **live,
                "act_live": sum(live.values()),
                "weight_bits": op.weight_bits if op.weights else None,
                "act_bits": g.tensors[op.outputs[0]].bits,
            }
        )
    return pd.DataFrame(rows), report
