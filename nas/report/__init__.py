"""What a study found, for people: the self-contained HTML page (`page`) built from tables of trials
(`data`), optuna-dashboard over the study (`dashboard`), and the exported model's card
(`model_card`). Reads the engine's results; never changes a study."""

from .data import candidate_rows, front_table, load_trials
from .model_card import render_model_card, write_model_card
from .page import build_html

__all__ = [
    "build_html",
    "candidate_rows",
    "front_table",
    "load_trials",
    "render_model_card",
    "write_model_card",
]
