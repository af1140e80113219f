"""Progress of `m2nas search` and of dataset builds. The engine hands over `Progress` snapshots
about once a second; this module turns them into one of three displays:

- a terminal (stderr is a TTY): a rich Live view redrawn in place: the budget bar with its ETA,
  the teacher's bar while it trains, the candidates in flight, the last outcomes, the best so far;
- no terminal (a log file, a pipe): one plain line per finished candidate and per teacher epoch on
  stderr, so a log shows progress without control codes;
- `--json`: one JSON object per event on stdout (the caller prints the result object last).

Snapshots hold the whole history of the run, so the line and JSON displays find every event by
comparing with what they already showed, however the once-a-second sampling falls.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

LAST_OUTCOMES = 4  # outcomes kept on the live view (24 rows hold them with one candidate in flight)
MAX_IN_FLIGHT = 3


# ---- wording shared by the three displays -------------------------------------------------------
def clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def eta_text(p) -> str:
    """Named ETA explicitly: a bare duration beside an elapsed time reads as either."""
    return f"ETA {clock(p.eta_s)}"


def counts_text(p) -> str:
    """Every candidate analysed, rejected ones included (they cost no budget but they are work)."""
    c = p.counts
    parts = [("stopped early", c["stopped_early"]), ("no signal", c.get("no_signal", 0))]
    parts += [("rejected", c["rejected"]), ("failed", c["failed"])]
    analysed = c["trained"] + sum(n for _, n in parts)
    # the categories that happened: all five at once do not fit the live view's 80 columns
    return f"analysed {analysed}: {c['trained']} trained" + "".join(f", {n} {what}" for what, n in parts if n)


def memory_text(d: dict[str, Any]) -> str:
    if d.get("flash") is None:
        return ""
    return f"{d['flash']:,} B flash, {d['sram']:,} B SRAM"


def fit_text(fits: dict[str, bool]) -> str:
    yes = [d for d, ok in fits.items() if ok]
    no = [d for d, ok in fits.items() if not ok]
    parts = ([f"fits {', '.join(yes)}"] if yes else []) + ([f"not {', '.join(no)}"] if no else [])
    return "; ".join(parts) or "no device"


def outcome_text(o: dict[str, Any], metric: str, compact: bool = False) -> str:
    """`#3 trained: val_accuracy 0.5123, ...`; the reason for everything that was not trained.
    `compact` (the live view's 80 columns) drops what the view says elsewhere."""
    status = o["status"].replace("_", " ")
    if o["status"] == "trained":
        fits = "" if compact and len(o["fits"]) == 1 else f" ({fit_text(o['fits'])})"
        what = f"{'val' if compact else f'val_{metric}'} {o['val']:.4f}, {memory_text(o)}{fits}"
    else:
        what = o["reason"] or "no reason stored"
    return f"#{o['trial']} {status}: {what}"


def in_flight_text(f: dict[str, Any]) -> str:
    epochs = f["epochs"] or "?"
    val = "" if f["val"] is None else f", val {f['val']:.4f} (best {f['best']:.4f})"
    rung = "no early-stop rung ahead" if f["next_rung"] is None else f"next rung: epoch {f['next_rung']}"
    return f"#{f['trial']} epoch {f['epoch']}/{epochs}{val}; {rung}"


def budget_text(p) -> str:
    return f"{p.used}/{p.budget} candidates, {p.counts['rejected']} rejected, {eta_text(p)}"


# ---- events: what is new since the last snapshot ------------------------------------------------
class Events:
    """Turns snapshots into events, each once: teacher epochs, epochs of candidates in flight and
    finished candidates. A candidate's epochs are sampled (one per snapshot at most)."""

    def __init__(self) -> None:
        self.teacher_epochs = 0
        self.finished: set[int] = set()
        self.epochs: dict[int, int] = {}

    def new(self, p) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if p.teacher is not None:
            for h in p.teacher["history"][self.teacher_epochs :]:
                out.append(
                    {"event": "teacher_epoch", "epoch": h["epoch"], "epochs": p.teacher["epochs"]}
                    | {"val_accuracy": h["val"], "elapsed_s": h["seconds"]}
                )
            self.teacher_epochs = len(p.teacher["history"])
        for f in p.in_flight:
            if f["epoch"] and self.epochs.get(f["trial"]) != f["epoch"]:
                self.epochs[f["trial"]] = f["epoch"]
                out.append(
                    {"event": "epoch"} | {k: f[k] for k in ("trial", "epoch", "epochs", "val", "next_rung")}
                )
        for o in p.finished:
            if o["trial"] not in self.finished:
                self.finished.add(o["trial"])
                out.append(
                    {"event": "candidate"}
                    | o
                    | {
                        "used": p.used,
                        "budget": p.budget,
                        "eta_s": _round(p.eta_s),
                        "elapsed_s": round(p.elapsed_s, 1),
                    }
                )
        return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def line_of(event: dict[str, Any], p) -> str | None:
    """The plain line of an event (None: not shown without a terminal)."""
    at = f"[{clock(event['elapsed_s'])}]" if "elapsed_s" in event else ""
    if event["event"] == "teacher_epoch":
        val = "" if event["val_accuracy"] is None else f": val_accuracy {event['val_accuracy']:.4f}"
        return f"{at} teacher epoch {event['epoch']}/{event['epochs']}{val}"
    if event["event"] == "candidate":
        return f"{at} {outcome_text(event, p.metric)} | {budget_text(p)}"
    return None


# ---- the live view ------------------------------------------------------------------------------
class LiveView:
    def __init__(self, console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.console = console
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            console=console,
            auto_refresh=False,
        )
        self.search = self.bars.add_task("candidates", total=1, note="")
        self.teacher: int | None = None
        self.live = None

    def render(self, p):
        from rich.console import Group
        from rich.text import Text

        def line(text: str, style: str = "") -> Text:
            return Text(text, style=style, no_wrap=True, overflow="ellipsis")

        note = f"{eta_text(p)}, {clock(p.elapsed_s)} elapsed"
        self.bars.update(self.search, total=max(1, p.budget), completed=min(p.used, p.budget), note=note)
        t = p.teacher
        if t is not None and (t["history"] or not t["done"]):  # not shown when it came from the cache
            last = t["history"][-1] if t["history"] else {"epoch": 0, "val": None}
            state = "trained" if t["done"] else "training" if t["history"] else "loading or training"
            val = "" if last["val"] is None else f", val_accuracy {last['val']:.4f}"
            if self.teacher is None:
                self.teacher = self.bars.add_task("teacher   ", total=t["epochs"], note="")
            done = t["epochs"] if t["done"] else last["epoch"]
            self.bars.update(self.teacher, completed=done, note=state + val)
        rows: list = [line(f"m2nas search {p.study}: {counts_text(p)}", "bold"), self.bars]
        if p.in_flight:
            for f in p.in_flight[:MAX_IN_FLIGHT]:
                rows.append(line(f"in flight {in_flight_text(f)}"))
                rows.append(line(f"  {fit_text(f['fits'])}, {memory_text(f)}", "dim"))
                rows.append(line(f"  {f['summary'] or ''}", "dim"))
        elif t is not None and not t["done"]:
            rows.append(line("in flight: the teacher (distillation targets; cached for later runs)"))
        else:
            rows.append(line("in flight: none"))
        if p.finished:
            rows.append(line("last outcomes:"))
            for o in p.finished[-LAST_OUTCOMES:]:
                style = {"trained": "green", "stopped_early": "yellow", "failed": "red"}.get(o["status"], "")
                rows.append(line(f"  {outcome_text(o, p.metric, compact=True)}", style))
        for name, b in p.best.items():
            text = (
                "none yet" if b is None else f"{b[f'val_{p.metric}']:.4f} (#{b['trial']}, {memory_text(b)})"
            )
            rows.append(line(f"best on {name}: {text}"))
        return Group(*rows)

    def show(self, p) -> None:
        from rich.live import Live

        if self.live is None:
            self.live = Live(self.render(p), console=self.console, auto_refresh=False, transient=False)
            self.live.start(refresh=True)
        else:
            self.live.update(self.render(p), refresh=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


@contextmanager
def search_display(json_out: bool) -> Iterator[Callable]:
    """A `progress` callback for `run_search`: the live view on a terminal, plain lines otherwise,
    JSON events with `--json`. Calls after the block has ended are ignored (the engine's display
    thread may still be in one)."""
    from .console import err

    lock = threading.Lock()
    closed = False
    events = Events()
    console = err()
    view = LiveView(console) if not json_out and console.is_terminal else None

    def show(p) -> None:
        with lock:
            if closed:
                return
            if view is not None:
                view.show(p)
                return
            for e in events.new(p):
                if json_out:
                    print(json.dumps(e), flush=True)
                else:
                    text = line_of(e, p)
                    if text is not None:
                        print(text, file=sys.stderr, flush=True)

    try:
        yield show
    finally:
        with lock:
            closed = True
            if view is not None:
                view.close()


def final_display(json_out: bool) -> Callable[[dict[str, Any]], None]:
    """The `on_final` callback of `run_search`: one line (or JSON event) per final-stage run; the
    runs take minutes and follow the live view, so they are shown the same way on every output."""
    from .console import err

    def show(run: dict[str, Any]) -> None:
        if json_out:
            print(json.dumps({"event": "final_run", **run}), flush=True)
            return
        val = next((v for k, v in run.items() if k.startswith("val_")), None)
        err().print(
            f"final stage {run['done']}/{run['total']}: trial {run['trial']} seed {run['seed'] + 1}/{run['of']}"
            + (f", fold {run['fold']}" if run.get("fold") else "")
            + ("" if val is None else f", validation {val:.4f}")
            + f" ({run['seconds']:.0f} s)",
            markup=False,
            soft_wrap=True,
        )

    return show


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
