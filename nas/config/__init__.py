"""The study file: one TOML validated into a `Study` that every stage reads (dataset, devices and
targets, search space, objectives, budget, training). Kept apart from the engine so the report and
the exporter can load a study without pulling in Optuna's worker loop."""

from .objective import FIGURES, Objective
from .study import METRICS, MINIMIZABLE, Study, StudyFile, load_study, parse_size

__all__ = ["FIGURES", "METRICS", "MINIMIZABLE", "Objective", "Study", "StudyFile", "load_study", "parse_size"]
