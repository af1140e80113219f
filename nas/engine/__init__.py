"""The search engine: the worker loop over Optuna (`search`), one trial's evaluation (`objective`),
what a trial stores (`record`), multi-objective early stopping (`early_stop`), storage and
artifacts (`storage`), and reading trials back (`results`, `status`). Everything that decides which
candidate is trained lives here; what a candidate is lives in `search_spaces`, what it costs in
`memory_models`."""

from .early_stop import Finished, should_stop
from .record import Attr, Status, TrialRecord
from .results import (
    STATUSES,
    Counts,
    best_trial,
    count,
    device_figures,
    hypervolume_2d_plus,
    pareto_front,
    status_of,
)
from .search import Budget, open_study, run_search, run_worker
from .status import open_existing, study_status
from .storage import artifact_store, load_existing_study, make_storage

__all__ = [
    "STATUSES",
    "Attr",
    "Budget",
    "Counts",
    "Finished",
    "Status",
    "TrialRecord",
    "artifact_store",
    "best_trial",
    "count",
    "device_figures",
    "hypervolume_2d_plus",
    "load_existing_study",
    "make_storage",
    "open_existing",
    "open_study",
    "pareto_front",
    "run_search",
    "run_worker",
    "should_stop",
    "status_of",
    "study_status",
]
