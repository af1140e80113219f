"""Live progress of `m2nas search` on stderr: the engine hands over snapshots, this draws them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


def progress_table(p):
    from rich.table import Table

    c = p.counts
    t = Table(title=f"m2nas search: {p.study}", show_header=False, box=None)
    t.add_row("trained", f"{c['trained']} / {p.budget}", "stopped early", str(c["stopped_early"]))
    t.add_row("rejected (never trained)", str(c["rejected"]), "failed", str(c["failed"]))
    t.add_row("feasible fraction", f"{c['feasible_fraction']:.0%}", "running", str(c["running"]))
    left = "-" if p.left_s is None else f"{p.left_s:.0f} s"
    t.add_row("elapsed", f"{p.elapsed_s:.0f} s", "time left", left)
    for name, b in p.best.items():
        text = (
            "none yet"
            if b is None
            else f"{b[f'val_{p.metric}']:.4f} (#{b['trial']}, flash {b['flash']:,} B, SRAM {b['sram']:,} B)"
        )
        t.add_row(f"best on {name}", text, "", "")
    return t


@contextmanager
def live_search_progress(enabled: bool) -> Iterator[Callable | None]:
    """A `progress` callback for `run_search` that redraws one table in place (None when off)."""
    if not enabled:
        yield None
        return
    from rich.live import Live

    from .console import err

    live: Live | None = None

    def show(p) -> None:
        nonlocal live
        if live is None:
            live = Live(progress_table(p), console=err(), refresh_per_second=2, transient=False)
            live.start()
        else:
            live.update(progress_table(p))

    try:
        yield show
    finally:
        if live is not None:
            live.stop()


@contextmanager
def build_progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A transient progress bar on stderr for long dataset builds (installed into nas.data)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .console import err

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def show_builds() -> None:
    """Let dataset builds draw their progress (only commands that may build data call this)."""
    from nas.data import set_progress_display

    set_progress_display(build_progress)
