"""Classification metrics of a trained candidate, from its logits (scikit-learn underneath).

Every metric is "higher is better" and lies in [0, 1]:

- `accuracy`;
- `balanced_accuracy`: the mean per-class recall (robust to class imbalance);
- `macro_f1`: the unweighted mean of the per-class F1 scores (classes absent from both the labels and
  the predictions are ignored, and an undefined F1 counts 0);
- `roc_auc` (two classes only): from the positive-class (index 1) softmax probability. With a single
  class present in the labels it is undefined; 0.5 (chance) is reported then.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

BASE_METRICS = ("accuracy", "balanced_accuracy", "macro_f1")


def metric_names(n_classes: int) -> tuple[str, ...]:
    """The metrics reported for a problem with `n_classes` classes."""
    return BASE_METRICS + (("roc_auc",) if n_classes == 2 else ())


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def classification_metrics(
    y_true: np.ndarray, logits: np.ndarray, n_classes: int | None = None
) -> dict[str, float]:
    """Metrics of `logits` (N, classes) against integer labels `y_true` (N,)."""
    y_true = np.asarray(y_true)
    logits = np.asarray(logits)
    if logits.ndim != 2 or len(logits) != len(y_true):
        raise ValueError(f"logits must be (N, classes) with N = {len(y_true)}, got {logits.shape}")
    if len(y_true) == 0:
        raise ValueError("no samples to score")
    n_classes = logits.shape[1] if n_classes is None else n_classes
    pred = logits.argmax(axis=1)
    labels = np.arange(n_classes)
    present = np.union1d(np.unique(y_true), np.unique(pred))
    out = {
        "accuracy": float(accuracy_score(y_true, pred)),
        # sklearn's balanced accuracy averages the recall over the classes present in y_true
        "balanced_accuracy": float(_balanced_accuracy(y_true, pred)),
        "macro_f1": float(
            f1_score(y_true, pred, labels=labels[np.isin(labels, present)], average="macro", zero_division=0)
        ),
    }
    if n_classes == 2:
        if len(np.unique(y_true)) < 2:
            out["roc_auc"] = 0.5
        else:
            out["roc_auc"] = float(roc_auc_score(y_true, softmax(logits)[:, 1]))
    return out


def _balanced_accuracy(y_true: np.ndarray, pred: np.ndarray) -> float:
    import warnings

    with warnings.catch_warnings():  # "y_pred contains classes not in y_true" is expected early in training
        warnings.simplefilter("ignore")
        return balanced_accuracy_score(y_true, pred)


def chance_level(y_true: np.ndarray, n_classes: int, metric: str) -> float:
    """The best `metric` a model that always answers the same class reaches on `y_true`.

    For accuracy this is the majority-class rate; for balanced accuracy 1 / classes present; for
    ROC AUC 0.5. A candidate not above it has learned nothing usable, however small it is."""
    y_true = np.asarray(y_true)
    best = -np.inf
    for c in range(n_classes):
        logits = np.zeros((len(y_true), n_classes), dtype=np.float32)
        logits[:, c] = 1.0
        best = max(best, classification_metrics(y_true, logits, n_classes)[metric])
    return float(best)
