"""The `m2nas` command. Each subcommand parses arguments and hands off to a module; heavy imports
(torch, optuna) happen inside the commands that need them, so `m2nas devices` stays instant."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from memory_models.errors import InputError

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
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

DevicesOpt = Annotated[
    list[Path] | None, typer.Option("--devices", help="Extra device TOML file(s); may be repeated.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


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
    for col in ("name", "core", "MHz", "memory levels", "default target", "MAC/cycle (8/4/2-bit)"):
        table.add_column(col)
    for d in cat.values():
        levels = ", ".join(
            f"{lv.name} {_size(lv.capacity_bytes)}{'' if lv.writable else ' (ro)'}" for lv in d.levels
        )
        target = ", ".join(f"{k}={v}" for k, v in d.default_target.items())
        macs = "/".join(f"{d.macs_per_cycle[b]:g}" for b in ("8", "4", "2"))
        table.add_row(
            d.name,
            f"{d.core} x{d.cores}" if d.cores > 1 else d.core,
            f"{d.clock_mhz:g}",
            levels,
            target,
            macs,
        )
    out.print(table)


@app.command()
def memory(
    model: Annotated[Path, typer.Argument(help="OpGraph JSON, Arch JSON or ONNX model.")],
    device: Annotated[str, typer.Option("--device", "-d", help="Device name (see `m2nas devices`).")],
    target: Annotated[
        str | None,
        typer.Option(
            "--target", "-t", help="Placement, e.g. 'weights=flash,activations=sram' or 'all=cluster_L1'."
        ),
    ] = None,
    devices: DevicesOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Analyse a model's flash, peak SRAM, arena plan and fit on a device."""
    from memory_models import evaluate, get_device
    from nas.model_files import load_graph

    dev = get_device(device, devices or ())
    graph = load_graph(model)
    report = evaluate(graph, dev, target)
    if json_out:
        print(json.dumps(report.to_dict(), indent=1))
        return
    print_report(report)


def print_report(report) -> None:
    verdict = "[green]fits[/green]" if report.fits else f"[red]does not fit[/red]: {report.reason}"
    out.print(
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
    out.print(t)


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input is one line on stderr and exit code 2, never a traceback."""
    try:
        rc = app(args=argv, standalone_mode=False)
    except InputError as e:
        err.print(f"m2nas: error: {e}", markup=False, soft_wrap=True)
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except NoArgsIsHelpError as e:
        out.print(e.format_message(), markup=False)
        sys.exit(0)
    except ClickException as e:
        err.print(f"m2nas: error: {e.format_message()} (see m2nas --help)", markup=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err.print("m2nas: interrupted", markup=False)
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
