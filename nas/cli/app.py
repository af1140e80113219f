"""The `m2nas` command. Each subcommand parses arguments and hands off to a module; heavy imports
(torch, optuna) happen inside the commands that need them, so `m2nas devices` stays instant."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from memory_models.errors import InputError
from memory_models.ops import BITS
from nas import interrupt
from nas.limits import DAY_S, MAX_EPOCHS, MAX_TRIALS, MAX_WORKERS

from .console import err, out

try:  # typer >= 0.29 vendors click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException, NoArgsIsHelpError

app = typer.Typer(
    name="m2nas",
    help="Memory-aware neural architecture search for tiny multimodal networks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

DevicesOpt = Annotated[
    list[Path] | None, typer.Option("--devices", help="Extra device TOML file(s); may be repeated.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
SearchJsonOpt = Annotated[
    bool, typer.Option("--json", help="JSON lines on stdout: one object per event, the result last.")
]


def _key_values(items: list[str], flag: str) -> dict:
    """KEY=VALUE pairs; a VALUE is read as a TOML value (number, bool, string, list) where it is one."""
    import tomllib

    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{flag} {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n} B"


@app.command()
def devices(devices: DevicesOpt = None, json_out: JsonOpt = False) -> None:
    """List the device catalogue: memory levels, compute, default target."""
    from memory_models.devices import catalogue

    cat = catalogue(devices or ())
    if json_out:
        print(json.dumps([d.model_dump() for d in cat.values()], indent=1))
        return
    table = Table(title="m2nas devices")
    table.add_column("name (aliases)", overflow="fold", min_width=14)  # aliases fold, never cut
    for col in ("core", "MHz", "memory levels", "default target", "MAC/cycle (8/4/2-bit)"):
        table.add_column(col)
    for d in cat.values():
        levels = ", ".join(
            f"{lv.name} {_size(lv.capacity_bytes)}{'' if lv.writable else ' (ro)'}" for lv in d.levels
        )
        target = ", ".join(f"{k}={v}" for k, v in d.default_target.items())
        macs = "/".join(f"{d.macs_per_cycle[b]:g}" for b in map(str, reversed(BITS)))
        table.add_row(
            "\n".join([d.name, *(f"  {a}" for a in d.aliases)]),
            f"{d.core} x{d.cores}" if d.cores > 1 else d.core,
            f"{d.clock_mhz:g}",
            levels,
            target,
            macs,
        )
    out().print(table)


@app.command()
def memory(
    model: Annotated[Path, typer.Argument(help="OpGraph JSON, Arch JSON, ONNX or TFLite model.")],
    device: Annotated[str, typer.Option("--device", "-d", help="Device name (see `m2nas devices`).")],
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            "-t",
            help="Placement, e.g. 'weights=flash,activations=sram' or 'all=cluster_L1'; "
            "add 'runtime=tflm' to check the fit for TFLite Micro.",
        ),
    ] = None,
    devices: DevicesOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Analyse a model's flash, peak SRAM, arena plan and fit on a device."""
    from memory_models import evaluate, get_device

    from .model_files import load_graph

    dev = get_device(device, devices or ())
    graph = load_graph(model)
    report = evaluate(graph, dev, target)
    if json_out:
        print(json.dumps(report.to_dict(), indent=1))
        return
    print_report(report)


@app.command()
def sample(
    space: Annotated[str, typer.Argument(help="Search-space preset name, space TOML, or study TOML.")],
    n: Annotated[int, typer.Option("--n", help="How many archs.")] = 10,
    seed: Annotated[int, typer.Option("--seed", min=0, max=2**32 - 1, help="RNG seed.")] = 0,
    inputs: Annotated[
        list[str] | None,
        typer.Option("--input", help="Modality shape as NAME=CxL or NAME=CxHxW; repeat per modality."),
    ] = None,
    classes: Annotated[int | None, typer.Option("--classes", help="Number of classes.")] = None,
) -> None:
    """Print N sampled archs as JSON lines (format m2nas.arch)."""
    import random

    from .sampling import resolve_sampling

    space_cfg, shapes, n_classes = resolve_sampling(space, inputs or [], classes)
    from search_spaces import sample_random

    rng = random.Random(seed)
    for _ in range(n):
        print(sample_random(rng, space_cfg, shapes, n_classes).to_json())


@app.command()
def datasets(json_out: JsonOpt = False) -> None:
    """List the datasets: modalities and shapes, classes, split sizes (building generated ones once)."""
    from .datasets import datasets_command
    from .progress import show_builds

    show_builds()

    datasets_command(json_out)


StudyArg = Annotated[Path, typer.Argument(help="Study TOML file (see studies/).")]
StorageOpt = Annotated[
    str | None, typer.Option("--storage", help="Optuna storage URL (default: the study's).")
]


@app.command()
def search(
    study_file: StudyArg,
    trials: Annotated[
        int | None,
        typer.Option("--trials", min=1, max=MAX_TRIALS, help="Candidates to train (default: budget.trials)."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout", min=0.001, max=365 * DAY_S, help="Seconds after which no new candidate starts."
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=1, max=MAX_WORKERS, help="Worker processes on this machine (at most its CPUs)."
        ),
    ] = 1,
    storage: StorageOpt = None,
    json_out: SearchJsonOpt = False,
) -> None:
    """Run (or resume) a study: sample, reject what cannot fit, train the rest."""
    from nas.config.study import load_study
    from nas.engine.search import run_search

    from .progress import final_display, search_display, show_builds

    show_builds()

    study = load_study(study_file)
    with search_display(json_out) as progress:
        result = run_search(
            study, trials, timeout, workers, storage, progress=progress, on_final=final_display(json_out)
        )
    if json_out:  # JSON lines: the events, then the result (its own line, always the last)
        print(json.dumps({"event": "result", **result}))
    else:
        c = result["counts"]
        out().print(
            f"{'interrupted' if result['interrupted'] else 'done'} ({result['stopped']}) in {result['seconds']:.0f} s: "
            f"{counts_text(c)}. Run `m2nas status {study_file}` for the fronts."
        )
        metric = study.cfg.objectives.metric
        for dev, f in result.get("final", {}).items():
            out().print(final_text(dev, metric, f), markup=False, soft_wrap=True)
    if result["interrupted"]:
        if interrupt.last_signal() == signal.SIGTERM:
            err().print(
                "m2nas: terminated (SIGTERM): the candidate in training is queued again; rerun to continue",
                markup=False,
                soft_wrap=True,
            )
            raise typer.Exit(143)
        raise typer.Exit(130)
    if result["stopped"] == "failures":
        err().print(f"m2nas: error: {result['failure']}", markup=False, soft_wrap=True)
        raise typer.Exit(1)


@app.command()
def worker(
    study_file: StudyArg,
    storage: StorageOpt = None,
    trials: Annotated[
        int | None, typer.Option("--trials", min=1, max=MAX_TRIALS, help="Study-wide candidate budget.")
    ] = None,
    index: Annotated[int, typer.Option("--index", help="Worker number (varies the sampler seed).")] = 0,
    deadline: Annotated[
        float | None, typer.Option("--deadline", help="Unix time after which no candidate starts.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=0.001, help="Seconds after which no candidate starts.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No output.")] = False,
) -> None:
    """Join a running study as one more worker (same machine or another one sharing the storage)."""
    import time as _time

    from nas.config.study import load_study
    from nas.engine.search import budget_of, run_worker

    study = load_study(study_file)
    if timeout is not None:
        deadline = _time.time() + timeout
    budget = budget_of(study, trials, deadline)
    try:
        why = run_worker(study, budget, storage, index)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if why == "failures":
        from nas.engine.search import failure_message, open_study, trials_of

        msg = failure_message(study, trials_of(open_study(study, storage, index)))
        err().print(f"m2nas: error: {msg}", markup=False, soft_wrap=True)
        raise typer.Exit(1)
    if not quiet:
        out().print(f"worker {index} stopped: {why}")


@app.command()
def status(
    study_file: StudyArg,
    storage: StorageOpt = None,
    json_out: JsonOpt = False,
    wide: Annotated[
        bool, typer.Option("--wide", help="One table row per front member, the architecture in a column.")
    ] = False,
) -> None:
    """Counts of trained / rejected / stopped-early / failed candidates and the front per device."""
    from nas.engine.status import study_status

    st = study_status(study_file, storage)
    if json_out:
        print(json.dumps(st, indent=1))
        return
    c = st["counts"]
    out().print(
        f"[bold]{st['study']}[/bold]: {counts_text(c)}, {c['running']} running; "
        f"feasible fraction {c['feasible_fraction']:.0%}"
    )
    for dev, rows in st["fronts"].items():
        title = f"Pareto front on {dev} ({', '.join(f'{k}={v}' for k, v in st['targets'][dev].items())})"
        if wide:
            _front_table(title, st["metric"], rows)
        else:
            _front_lines(title, st["metric"], rows)
        if dev in st["final"]:
            # wrapped at the terminal's width like the front lines above it
            out().print(final_text(dev, st["metric"].removeprefix("val_"), st["final"][dev]), markup=False)


def counts_text(c: dict) -> str:
    """The candidate counts in words (search's last line, `status`): one wording everywhere."""
    return (
        f"{c['trained']} trained, {c['stopped_early']} stopped early, {c.get('no_signal', 0)} without signal "
        f"(not above chance), {c['rejected']} rejected before training, {c['failed']} failed"
    )


def final_text(device: str, metric: str, f: dict) -> str:
    single = f["single_run"].get("test")
    return (
        f"final on {device}: trial {f['trial']} (best mean validation {metric} {f['val_mean']:.4f} of "
        f"{len(f['candidates'])} finalist(s)), test {metric} {f['test_mean']:.4f} ± {f['test_std']:.4f} over "
        f"{len(f['seeds'])} seeds" + ("" if single is None else f"; the search's single run: {single:.4f}")
    )


_FRONT_COLS = ("trial", "{metric}", "flash B", "SRAM B", "latency ms (est.)")


def _front_cells(r: dict) -> list[str]:
    return [str(r["trial"]), f"{r['val']:.4f}", f"{r['flash']:,}", f"{r['sram']:,}", f"{r['latency']:.2f}"]


def _front_table(title: str, metric: str, rows: list[dict]) -> None:
    t = Table(title=title)
    for col in (*_FRONT_COLS, "arch"):
        t.add_column(col.format(metric=metric))
    for r in rows:
        t.add_row(*_front_cells(r), Text(r["summary"]))  # plain text: "[conv5x8/2]" is not markup
    if not rows:
        t.add_row("-", "no trained candidate fits yet", "", "", "", "")
    out().print(t)


def _front_lines(title: str, metric: str, rows: list[dict]) -> None:
    """Figures on one line, the architecture on the next, indented and wrapped to the terminal: an arch
    summary in a table column wraps every row over several lines at 80 columns."""
    import textwrap

    console = out()
    width = max(40, console.width)
    heads = [c.format(metric=metric) for c in _FRONT_COLS]
    cells = [_front_cells(r) for r in rows]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(heads)]
    console.print(f"\n{title}", markup=False, soft_wrap=True)
    if not rows:
        console.print("  no trained candidate fits yet", markup=False)
        return
    console.print("  " + "  ".join(h.rjust(w) for h, w in zip(heads, widths)), markup=False, style="bold")
    for r, c in zip(rows, cells):
        console.print("  " + "  ".join(v.rjust(w) for v, w in zip(c, widths)), markup=False)
        for line in textwrap.wrap(r["summary"], width - 6, break_on_hyphens=False):
            console.print("      " + line, markup=False, style="dim")


@app.command()
def train(
    arch_file: Annotated[
        Path, typer.Argument(help="Arch JSON (format m2nas.arch), e.g. from `m2nas sample`.")
    ],
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset name (see `m2nas datasets`).")],
    epochs: Annotated[
        int | None, typer.Option("--epochs", min=1, max=MAX_EPOCHS, help="Training epochs.")
    ] = None,
    no_distill: Annotated[bool, typer.Option("--no-distill", help="Train without the teacher.")] = False,
    seed: Annotated[int, typer.Option("--seed", min=0, max=2**32 - 1, help="Split and training seed.")] = 0,
    option: Annotated[
        list[str] | None, typer.Option("--option", help="Dataset option KEY=VALUE; may be repeated.")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="Torch device: cpu, cuda or auto.")] = "auto",
    threads: Annotated[int, typer.Option("--threads", min=1, max=1024, help="CPU threads.")] = 1,
    weights_out: Annotated[
        Path | None, typer.Option("--weights-out", help="Save the state_dict here.")
    ] = None,
    min_steps: Annotated[
        int | None,
        typer.Option(
            "--min-steps", min=0, help="Floor on optimizer steps (raises the epochs); default as a study's."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Train one arch with quantization-aware training (and distillation) and print its validation metrics."""
    from .progress import show_builds
    from .train import train_command

    show_builds()

    train_command(
        arch_file,
        dataset,
        epochs,
        no_distill,
        json_out,
        seed,
        _key_values(option or [], "--option"),
        device,
        threads,
        weights_out=weights_out,
        min_steps=min_steps,
    )


@app.command()
def report(
    study_file: StudyArg,
    out_path: Annotated[
        Path | None, typer.Option("--out", help="HTML file (default: <study>.report.html).")
    ] = None,
    storage: StorageOpt = None,
) -> None:
    """Write a self-contained HTML report (plotly, works offline) and front.csv beside it."""
    from nas.report.page import write_report

    files = write_report(study_file, out_path, storage)
    out().print(f"report: {files.html} ({files.analysed} candidates analysed)")
    out().print(f"front:  {files.csv} ({files.front_rows} rows)")


@app.command()
def dashboard(
    study_file: StudyArg,
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1.")] = 8080,
    storage: StorageOpt = None,
    allow_writes: Annotated[
        bool,
        typer.Option("--allow-writes", help="Let the dashboard delete/rename studies and edit notes."),
    ] = False,
) -> None:
    """Serve optuna-dashboard over the study's storage and artifacts on 127.0.0.1 (read-only by default)."""
    from nas.report.dashboard import open_dashboard

    d = open_dashboard(study_file, port, storage, allow_writes)
    out().print(
        f"optuna-dashboard for study {d.study!r} ({d.trials} trials) on {d.url} "
        f"(artifacts {d.artifact_dir}); Ctrl-C stops it",
        soft_wrap=True,
    )
    # served from a thread, so that the main thread only waits and takes Ctrl-C at a safe point
    serving = threading.Thread(target=d.server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    try:
        with interrupt.stop_at_safe_points():
            serving.start()
            while serving.is_alive():
                interrupt.sleep(0.5)
    except KeyboardInterrupt:
        d.server.shutdown()
        out().print("dashboard stopped")
    finally:
        d.server.server_close()


@app.command()
def export(
    study_file: StudyArg,
    device: Annotated[str | None, typer.Option("--device", "-d", help="Study device to export for.")] = None,
    all_devices: Annotated[
        bool, typer.Option("--all-devices", help="Export the best model for every device.")
    ] = False,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: export/<study>/<device>).")
    ] = None,
    finetune_epochs: Annotated[int, typer.Option("--finetune-epochs", help="Fine-tune before export.")] = 0,
    c_code: Annotated[
        bool, typer.Option("--c", help="Also write model.h / model.c (integer-only C99).")
    ] = False,
    tflite: Annotated[
        bool,
        typer.Option(
            "--tflite",
            help="Also write model.tflite (int8, for TFLite Micro; the default for runtime=tflm targets).",
        ),
    ] = False,
    storage: StorageOpt = None,
) -> None:
    """Export the best fitting trial per device: ONNX (QCDQ), QONNX, weights, memory report, model card;
    C99 (--c) and TFLite Micro (--tflite), each checked against the integer reference."""
    from .export import export_command
    from .progress import show_builds

    show_builds()

    export_command(study_file, device, all_devices, out_dir, finetune_epochs, c_code, storage, tflite)


def print_report(report) -> None:
    verdict = "[green]fits[/green]" if report.fits else f"[red]does not fit[/red]: {report.reason}"
    out().print(
        f"[bold]{report.graph.name}[/bold] on [bold]{report.device}[/bold] "
        f"({', '.join(f'{k}={v}' for k, v in report.target.items())}): {verdict}"
    )
    t = Table(show_header=False, box=None)
    f = report.flash
    t.add_row(
        "flash (model + code)",
        f"{report.flash_bytes:,} B",
        f"weights {f.weights:,} + biases {f.biases:,} + quant {f.quant_params:,} + op table {f.op_table:,}"
        f" + kernels {f.kernels:,} + runtime {f.runtime:,}",
    )
    t.add_row(
        "peak activations",
        f"{report.peak_sram_bytes:,} B",
        f"given order {report.naive_peak_sram_bytes:,} B; per-layer formula {report.per_layer_peak_bytes:,} B",
    )
    t.add_row(
        "arena (planned)",
        f"{report.arena_bytes:,} B",
        f"+ runtime RAM {report.runtime_ram_bytes:,} B = {report.sram_bytes:,} B",
    )
    rt = report.runtimes()
    mc, tf = rt["m2nas-c"], rt["tflm"]
    t.add_row(
        f"runtimes (fit: {report.runtime})",
        f"TFLM {tf['sram_bytes']:,} B",
        f"arena {tf['arena_bytes']:,} = planned {tf['head_bytes']:,} + persistent {tf['tail_bytes']:,}; "
        f"m2nas-c needs {mc['sram_bytes']:,} B",
    )
    for lv in report.levels:
        if lv.holds:
            colour = "green" if lv.fits else "red"
            t.add_row(
                f"level {lv.name}",
                f"{lv.used_bytes:,} / {lv.capacity_bytes:,} B",
                f"[{colour}]{'+'.join(lv.holds)}, margin {lv.margin_bytes:,} B[/{colour}]",
            )
    t.add_row(
        "latency (estimate)",
        f"{report.latency_ms_est:.3f} ms",
        f"energy (estimate) {report.energy_uj_est:.1f} uJ",
    )
    t.add_row("MACs / params", f"{report.macs:,}", f"{report.params:,} parameters")
    t.add_row("schedule", report.schedule_.method, " -> ".join(report.schedule))
    out().print(t)


def _warnings_as_lines() -> None:
    """m2nas's own warnings (nas.*, e.g. an unwritable cache) as one `m2nas: warning:` line each."""
    import warnings

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if category.__module__.startswith("nas."):
            err().print(f"m2nas: warning: {message}", markup=False, soft_wrap=True)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input is one line on stderr and exit code 2, never a traceback."""
    _warnings_as_lines()
    try:
        rc = app(args=argv, standalone_mode=False)
    except InputError as e:
        err().print(f"m2nas: error: {e}", markup=False, soft_wrap=True)
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except NoArgsIsHelpError as e:
        out().print(e.format_message(), markup=False)
        sys.exit(0)
    except ClickException as e:
        err().print(f"m2nas: error: {e.format_message()} (see m2nas --help)", markup=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err().print("m2nas: interrupted", markup=False)
        sys.exit(130)
    except Exception as e:
        why = storage_fault(e)
        if why is None:
            raise
        err().print(f"m2nas: error: storage: {why}", markup=False, soft_wrap=True)
        sys.exit(2)
    sys.exit(rc if isinstance(rc, int) else 0)


def storage_fault(e: BaseException) -> str | None:
    """One line for a database error met mid-command (a page damaged after the open-time check, a
    full disk, a server gone): the driver's own first line; None for any other exception."""
    chain = []
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    if not any(type(x).__module__.split(".")[0] in ("sqlalchemy", "sqlite3", "psycopg2") for x in chain):
        if not any(type(x).__name__ == "StorageInternalError" for x in chain):
            return None
    root = chain[-1]
    text = getattr(root, "orig", None) or root
    return (str(text).strip().splitlines() or [type(root).__name__])[0]


if __name__ == "__main__":
    main()
