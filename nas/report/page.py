"""The HTML report: one self-contained page (plotly.js inlined once, so it opens with no network)
and front.csv beside it.

Every trace carries `meta = {"kind", "device", "status", ...}` so that a browser test (or a user with
the dev tools open) can find which points a trace holds without depending on its legend label.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from memory_models.errors import InputError
from memory_models.ops import BITS
from nas.engine.record import Attr, Status, TrialRecord
from nas.engine.results import best_trial, count, pareto_front

from .data import (
    budget,
    candidate_rows,
    front_2d,
    front_table,
    history,
    layer_table,
    level_of,
    load_trials,
    minimized,
)

FIGURES = {"flash": "flash (B)", "sram": "SRAM: arena + runtime (B)", "latency": "latency estimate (ms)"}
# Status -> (legend label, marker style). Rejected candidates were never trained, so they have no
# metric: they sit in a strip of their own under each panel, on the memory axis only, where they
# cannot be read as models that learned nothing.
STYLE = {
    "trained": ("trained, fits", dict(symbol="circle", size=9, color="#1f77b4")),
    "trained_over": (
        "trained, over this device's budget",
        dict(symbol="circle-open", size=9, color="#1f77b4"),
    ),
    "stopped_early": (
        "stopped early (metric at stop)",
        dict(symbol="triangle-down", size=9, color="#ff7f0e"),
    ),
    "no_signal": (
        "trained, not above chance (never on a front)",
        dict(symbol="diamond-open", size=8, color="#8c564b"),
    ),
    "rejected": (
        "rejected before training (no metric: strip below, memory only)",
        dict(symbol="x", size=8, color="#999999"),
    ),
}
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")


def _hover(r, metric: str) -> str:
    val = "not trained" if np.isnan(r.val) else f"{r.val:.4f}"
    lines = [
        f"<b>trial {r.trial}</b> · {r.status.replace('_', ' ')} · {r.device}",
        html.escape(r.summary),
        f"val_{metric} {val} · flash {r.flash:,} B · SRAM {r.sram:,} B (arena {r.arena:,})",
        f"latency {r.latency:.3f} ms · energy {r.energy:.2f} uJ (estimates)",
    ]
    why = r.device_reason or (r.reason if r.status != Status.TRAINED else "")
    if why:
        lines.append(html.escape(why))
    return "<br>".join(lines)


def pareto_figure(study, rows: pd.DataFrame, trials, device: str) -> go.Figure:
    """Metric against flash, SRAM and latency on one device; budgets as dashed lines."""
    metric = study.cfg.objectives.metric
    d = rows[rows.device == device]
    fig = make_subplots(
        rows=2,
        cols=len(FIGURES),
        shared_xaxes=True,
        shared_yaxes=True,
        horizontal_spacing=0.04,
        vertical_spacing=0.03,
        row_heights=[0.86, 0.14],
    )
    groups = {
        "trained": d[(d.status == Status.TRAINED) & d.fits],
        "trained_over": d[(d.status == Status.TRAINED) & ~d.fits],
        "stopped_early": d[d.status == Status.STOPPED_EARLY],
        "no_signal": d[d.status == Status.NO_SIGNAL],
        "rejected": d[d.status == Status.REJECTED],
    }
    front_ids = {t.number for t in pareto_front(trials, device, metric, minimized(study))}
    for col, (figname, label) in enumerate(FIGURES.items(), start=1):
        for key, g in groups.items():
            name, marker = STYLE[key]
            strip = key == "rejected"
            fig.add_trace(
                go.Scatter(
                    x=g[figname].tolist(),
                    y=[0.5] * len(g) if strip else g.val.tolist(),
                    mode="markers",
                    name=name,
                    legendgroup=key,
                    showlegend=col == 1,
                    marker=marker,
                    text=[_hover(r, metric) for r in g.itertuples()],
                    hovertemplate="%{text}<extra></extra>",
                    meta={"kind": "points", "device": device, "figure": figname, "status": key},
                ),
                row=2 if strip else 1,
                col=col,
            )
        ok = groups["trained"]
        fx, fy = front_2d(ok[figname].to_numpy(float), ok.val.to_numpy(float))
        fig.add_trace(
            go.Scatter(
                x=fx,
                y=fy,
                mode="lines",
                line=dict(shape="hv", color="#1f77b4", width=1),
                name=f"best {metric} at or below x (trained, fits)",
                legendgroup="front2d",
                showlegend=col == 1,
                hoverinfo="skip",
                meta={"kind": "front2d", "device": device, "figure": figname},
            ),
            row=1,
            col=col,
        )
        fr = ok[ok.trial.isin(front_ids)]
        fig.add_trace(
            go.Scatter(
                x=fr[figname].tolist(),
                y=fr.val.tolist(),
                mode="markers",
                name="Pareto front (all objectives)",
                legendgroup="front",
                showlegend=col == 1,
                marker=dict(symbol="diamond-open", size=15, color="#d62728", line=dict(width=2)),
                hoverinfo="skip",
                meta={"kind": "front", "device": device, "figure": figname},
            ),
            row=1,
            col=col,
        )
        cap = budget(study, device, figname)
        if cap:
            part = "weights" if figname == "flash" else "activations"
            lv = level_of(study, device, part)
            for row in (1, 2):
                fig.add_vline(x=cap, line=dict(dash="dash", color="#d62728"), row=row, col=col)
            # On log axes annotations take log10 coordinates (shapes do not), hence not add_vline's.
            fig.add_annotation(
                x=math.log10(cap),
                y=1,
                yref="y domain",
                text=f"{lv.name} budget {cap:,} B",
                showarrow=False,
                xanchor="right",
                yanchor="top",
                row=1,
                col=col,
            )
        # Log axes: candidates span two orders of magnitude (a few KB to hundreds of KB), and the
        # rejected giants would otherwise squeeze everything that fits against the origin.
        fig.update_xaxes(type="log", row=1, col=col)
        fig.update_xaxes(title_text=f"{label}, log scale", type="log", row=2, col=col)
    # Every metric m2nas offers (accuracy, balanced accuracy, macro F1, ROC AUC) lies in [0, 1].
    fig.update_yaxes(title_text=f"val_{metric}", range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(range=[0, 1], showticklabels=False, showgrid=False, row=2)
    fig.update_yaxes(title_text="rejected", row=2, col=1)
    targets = ", ".join(f"{k}={v}" for k, v in study.targets[device].items())
    fig.update_layout(
        title=f"{device} ({targets})", height=480, legend=dict(orientation="h", y=-0.25), margin=dict(t=60)
    )
    return fig


def history_figure(study, rows: pd.DataFrame) -> go.Figure:
    """Best metric so far and hypervolume per device, against completion time."""
    metric = study.cfg.objectives.metric
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=(f"best val_{metric} so far (trained, fits)", "hypervolume (figures / budget)"),
    )
    for i, dev in enumerate(study.devices):
        h = history(study, rows, dev)
        colour = PALETTE[i % len(PALETTE)]
        text = [f"trial {t}" for t in h.trial]
        for row, col_name in ((1, "best"), (2, "hypervolume")):
            fig.add_trace(
                go.Scatter(
                    x=h.completed.tolist(),
                    y=[None if np.isnan(v) else float(v) for v in h[col_name]],
                    mode="lines+markers",
                    line=dict(shape="hv", color=colour),
                    name=dev,
                    legendgroup=dev,
                    showlegend=row == 1,
                    text=text,
                    hovertemplate=f"{dev} · %{{text}}<br>%{{y:.4f}}<extra></extra>",
                    meta={"kind": "history", "device": dev, "series": col_name},
                ),
                row=row,
                col=1,
            )
    fig.update_xaxes(title_text="trial completed", row=2, col=1)
    fig.update_yaxes(range=[0, 1.02], row=1, col=1)  # the metric, like every metric m2nas offers
    fig.update_layout(height=520, margin=dict(t=40))
    return fig


def layers_figure(study, device: str, trial, table: pd.DataFrame, report) -> go.Figure:
    """Per-layer bytes of the best model on one device: constants on the weights' level, activation
    bytes live at each op's step (schedule order) on the activations' level."""
    wl = level_of(study, device, "weights")
    al = level_of(study, device, "activations")
    levels = [wl.name] if wl.name == al.name else [wl.name, al.name]
    titles = []
    for name in levels:
        lv = report.level(name)
        titles.append(f"{name}: {'+'.join(lv.holds)}, {lv.used_bytes:,} of {lv.capacity_bytes:,} B")
    fig = make_subplots(
        rows=len(levels), cols=1, shared_xaxes=True, subplot_titles=titles, vertical_spacing=0.12
    )
    x = table.op.tolist()
    parts = [
        (wl.name, "weight_bytes", "weights (packed)", "#1f77b4"),
        (wl.name, "bias_bytes", "biases (int32)", "#aec7e8"),
        (al.name, "act_inputs", "activations: inputs read", "#ff7f0e"),
        (al.name, "act_outputs", "activations: outputs written", "#d62728"),
        (al.name, "act_scratch", "activations: kernel scratch", "#9467bd"),
        (al.name, "act_held", "activations: held for later ops", "#c7c7c7"),
    ]
    for level, col, label, colour in parts:
        fig.add_trace(
            go.Bar(
                x=x,
                y=table[col].tolist(),
                name=f"{label} @ {level}",
                marker_color=colour,
                hovertemplate="%{x}: %{y:,} B<extra>" + label + "</extra>",
                meta={"kind": "layers", "device": device, "part": col, "level": level},
            ),
            row=levels.index(level) + 1,
            col=1,
        )
    fig.update_layout(
        barmode="stack",
        height=260 * len(levels) + 120,
        title=(
            f"trial {trial.number} on {device}: flash {report.flash_bytes:,} B "
            f"(+ code, op table, quant params not per layer), peak live activations {report.peak_sram_bytes:,} B, "
            f"arena {report.arena_bytes:,} B"
        ),
        margin=dict(t=90),
    )
    fig.update_yaxes(title_text="bytes")
    return fig


def bits_figure(device: str, trial, table: pd.DataFrame) -> go.Figure:
    """Weight and output-activation bit-width of every op of the best model."""
    z = [
        [None if pd.isna(b) else int(b) for b in table.weight_bits],
        [int(b) for b in table.act_bits],
    ]
    text = [["" if v is None else str(v) for v in row] for row in z]
    fig = go.Figure(
        go.Heatmap(
            x=table.op.tolist(),
            y=["weights", "output activations"],
            z=z,
            text=text,
            texttemplate="%{text}",
            colorscale=[[0, "#d62728"], [0.33, "#ff7f0e"], [1, "#2ca02c"]],
            zmin=2,
            zmax=8,
            colorbar=dict(title="bits", tickvals=list(BITS)),
            hovertemplate="%{x}<br>%{y}: %{z} bit<extra></extra>",
            meta={"kind": "bits", "device": device},
        )
    )
    fig.update_layout(
        title=f"bit-widths of trial {trial.number} (best on {device})", height=260, margin=dict(t=50)
    )
    return fig


def groups_figure(study, rows: pd.DataFrame) -> go.Figure:
    """The metric of trained (and stopped-early) candidates by fusion point, operator, modality subset."""
    metric = study.cfg.objectives.metric
    one = rows.drop_duplicates("trial")  # the metric does not depend on the device
    cols = (
        ("fusion_point", "fusion point"),
        ("fusion_op", "fusion operator"),
        ("modalities", "modalities used"),
    )
    fig = make_subplots(rows=1, cols=3, shared_yaxes=True, subplot_titles=[c[1] for c in cols])
    for i, (col, _) in enumerate(cols, start=1):
        tr = one[one.status == Status.TRAINED]
        fig.add_trace(
            go.Box(
                x=tr[col].tolist(),
                y=tr.val.tolist(),
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                name="trained",
                legendgroup="trained",
                showlegend=i == 1,
                marker_color="#1f77b4",
                text=[f"trial {t}" for t in tr.trial],
                meta={"kind": "groups", "by": col, "status": "trained"},
            ),
            row=1,
            col=i,
        )
        se = one[one.status == Status.STOPPED_EARLY]
        fig.add_trace(
            go.Scatter(
                x=se[col].tolist(),
                y=se.val.tolist(),
                mode="markers",
                name="stopped early",
                legendgroup="stopped_early",
                showlegend=i == 1,
                marker=STYLE["stopped_early"][1],
                text=[f"trial {t}" for t in se.trial],
                meta={"kind": "groups", "by": col, "status": "stopped_early"},
            ),
            row=1,
            col=i,
        )
    fig.update_yaxes(title_text=f"val_{metric}", row=1, col=1)
    fig.update_layout(height=380, margin=dict(t=50), boxmode="group")
    return fig


CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1300px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table.front { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0 1em; }
table.front th, table.front td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
table.front td:last-child { text-align: left; font-family: monospace; }
.note { color: #666; font-size: 0.9em; }
"""


def _front_html(front: pd.DataFrame, device: str) -> str:
    d = front[front.device == device].drop(columns="device")
    if d.empty:
        return "<p>No trained candidate fits this device yet.</p>"
    fmt = {c: (lambda v: f"{v:,}") for c in ("flash", "sram", "arena")}
    fmt |= {"latency": lambda v: f"{v:.3f}", "energy": lambda v: f"{v:.2f}"}
    fmt |= {c: (lambda v: f"{v:.4f}") for c in d.columns if c.startswith("val_")}
    return d.to_html(index=False, classes="front", border=0, formatters=fmt, escape=True)


def build_html(study, trials, url: str, final: dict | None = None) -> tuple[str, pd.DataFrame]:
    """The page and the front table."""
    rows = candidate_rows(study, trials)
    front = front_table(study, trials)
    metric = study.cfg.objectives.metric
    c = count(trials)
    first = [True]

    def plot(fig: go.Figure, div_id: str) -> str:
        out = pio.to_html(
            fig,
            full_html=False,
            include_plotlyjs=first[0],
            div_id=div_id,
            config={"displaylogo": False, "responsive": True},
        )
        first[0] = False
        return out

    parts = [
        f"<h1>m2nas study {html.escape(study.name)}</h1>",
        f"<p>{c.trained} trained, {c.stopped_early} stopped early, {c.no_signal} without signal (not above "
        f"chance: never on a front), {c.rejected} rejected before training, {c.failed} failed, {c.running} running · objectives {html.escape(', '.join(study.objective_names()))}"
        f" · storage <code>{html.escape(url)}</code> · written {datetime.now():%Y-%m-%d %H:%M}</p>",
        "<p class='note'>Latency and energy are analytical estimates. Flash and SRAM are checked against "
        "each device's budget for this study (dashed lines).</p>",
        "<h2>Pareto fronts</h2>",
    ]
    for i, dev in enumerate(study.devices):
        parts.append(plot(pareto_figure(study, rows, trials, dev), f"pareto-{i}"))
    parts += ["<h2>Search progress</h2>", plot(history_figure(study, rows), "history")]
    parts.append("<h2>Best model per device</h2>")
    final = final or {}
    for i, dev in enumerate(study.devices):
        best = best_trial(trials, dev, metric)
        f = final.get(dev)
        if f is not None:
            best = next((t for t in trials if t.number == f["trial"]), best)
        if best is None:
            parts.append(f"<p>{html.escape(dev)}: no trained candidate fits yet.</p>")
            continue
        rec = TrialRecord(best)
        table, report = layer_table(rec.arch, study, dev)
        parts.append(
            f"<h3>{html.escape(dev)}: trial {best.number}, val_{metric} "
            f"{rec.val[metric]:.4f}</h3><p><code>{html.escape(rec.attrs.get(Attr.SUMMARY, ''))}</code></p>"
        )
        if f is not None and f["trial"] == best.number:
            single = f["single_run"].get("test")
            parts.append(
                f"<p class='final'>Final stage: chosen among {len(f['candidates'])} finalist(s) by mean validation "
                f"{metric} over {len(f['seeds'])} seeds ({f['val_mean']:.4f}"
                + (", on other folds after the first" if any(f.get("folds", [])) else "")
                + f"); test {metric} "
                f"<b>{f['test_mean']:.4f} ± {f['test_std']:.4f}</b> over those seeds"
                + ("" if single is None else f" (the search's single run: {single:.4f})")
                + ".</p>"
            )
        parts.append(plot(layers_figure(study, dev, best, table, report), f"layers-{i}"))
        parts.append(plot(bits_figure(dev, best, table), f"bits-{i}"))
    parts += ["<h2>Metric by fusion and modalities</h2>", plot(groups_figure(study, rows), "groups")]
    parts.append("<h2>Front tables</h2>")
    for dev in study.devices:
        targets = ", ".join(f"{k}={v}" for k, v in study.targets[dev].items())
        parts.append(f"<h3>{html.escape(dev)} ({html.escape(targets)})</h3>{_front_html(front, dev)}")
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>m2nas report: {html.escape(study.name)}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )
    return page, front


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    csv: Path
    analysed: int  # candidates analysed
    front_rows: int


def write_report(study_file: Path, out_path: Path | None, storage: str | None) -> ReportFiles:
    """The HTML page (default: `<study>.report.html` beside the study) and `front.csv` beside it."""
    study_file = Path(study_file)
    study, trials, url = load_trials(study_file, storage)
    out_path = Path(out_path) if out_path else study_file.with_name(f"{study_file.stem}.report.html")
    if out_path.is_dir():
        raise InputError(f"--out {out_path}: is a folder; give an HTML file name")
    from nas.outputs import check_writable_file

    check_writable_file(out_path, "--out")
    check_writable_file(out_path.parent / "front.csv", "--out")
    from nas.engine.status import final_choices

    page, front = build_html(study, trials, url, final_choices(study_file, storage))
    csv_path = out_path.parent / "front.csv"
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(page, encoding="utf-8")
        front.to_csv(csv_path, index=False)
    except OSError as e:
        raise InputError(f"--out {out_path}: cannot write ({e.strerror})") from None
    return ReportFiles(out_path, csv_path, count(trials).analysed, len(front))
