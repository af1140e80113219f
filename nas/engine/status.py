"""`m2nas status`: counts and per-device Pareto fronts of a study, from its storage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nas.config.study import load_study

from .final import choices
from .record import Attr, TrialRecord
from .results import count, pareto_front
from .storage import load_existing_study, make_storage


def open_existing(study_file: str | Path, storage_url: str | None = None):
    study = load_study(study_file)
    s = study.cfg.study
    storage = make_storage(
        storage_url or study.storage_url, s.heartbeat_s, s.grace_s, s.max_retry, create=False, read_only=True
    )
    return study, load_existing_study(study.name, storage)


def study_status(study_file: str | Path, storage_url: str | None = None) -> dict[str, Any]:
    study, ostudy = open_existing(study_file, storage_url)
    trials = ostudy.get_trials(deepcopy=False)
    metric = study.cfg.objectives.metric
    minimize = study.minimized_figures()
    fronts = {}
    for dev in study.devices:
        rows = []
        for t in pareto_front(trials, dev, metric, minimize):
            rec = TrialRecord(t)
            fig = rec.memory[dev]
            rows.append(
                {
                    "trial": t.number,
                    "val": rec.val[metric],
                    "flash": fig["flash"],
                    "sram": fig["sram"],
                    "arena": fig["arena"],
                    "latency": fig["latency"],
                    "energy": fig["energy"],
                    "summary": rec.attrs.get(Attr.SUMMARY, ""),
                }
            )
        fronts[dev] = rows
    return {
        "study": study.name,
        "storage": storage_url or study.storage_url,
        "metric": f"val_{metric}",
        "objectives": study.objective_names(),
        "targets": study.targets,
        "counts": count(trials).to_dict(),
        "fronts": fronts,
        "final": {dev: c.to_dict() for dev, c in choices(ostudy).items()},
    }


def final_choices(study_file: str | Path, storage_url: str | None = None) -> dict[str, dict[str, Any]]:
    """The final stage's choice per device, as dicts (empty when no final stage ran)."""
    _, ostudy = open_existing(study_file, storage_url)
    return {dev: c.to_dict() for dev, c in choices(ostudy).items()}
