"""`m2nas datasets`: the registered datasets, built-in ones described with their default options."""

from __future__ import annotations

import json
from typing import Any


def dataset_rows(seed: int = 0) -> list[dict[str, Any]]:
    """One dict per registered dataset. Built-in ones are built with default options (generated data
    is built on first use, with a progress bar on a terminal); user-data ones say what they need."""
    from nas.data import DATASETS, describe

    rows = []
    for name, spec in DATASETS.items():
        row: dict[str, Any] = {"name": name, "summary": spec.summary}
        if spec.needs:
            row.update(needs=spec.needs, modalities=None, classes=None, splits=None)
        else:
            s = describe(name, seed=seed)
            row.update(needs=None, modalities=s["modalities"], classes=len(s["classes"]), splits=s["splits"])
        rows.append(row)
    return rows


def datasets_command(json_out: bool) -> None:
    rows = dataset_rows()
    if json_out:
        print(json.dumps(rows, indent=1))
        return
    from rich.table import Table

    from .console import out

    table = Table(title="m2nas datasets")
    for col in ("name", "modalities (per-sample shape)", "classes", "train / val / test", "about"):
        table.add_column(col)
    for r in rows:
        if r["needs"]:
            mods, classes, sizes = "-", "-", f"needs {r['needs']}"
        else:
            mods = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in r["modalities"].items())
            classes = str(r["classes"])
            sizes = " / ".join(str(r["splits"][k]) for k in ("train", "val", "test"))
        table.add_row(r["name"], mods, classes, sizes, r["summary"])
    out().print(table)
