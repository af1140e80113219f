"""Upper bounds of the numbers a user gives that size work or time: checked where they are parsed
(the study file's schema, the CLI's options), so a typing slip is one line and exit 2 before
anything is allocated, not a machine filled with processes or an epoch loop no one sees end."""

from __future__ import annotations

import os

DAY_S = 86_400
MAX_THREADS = 1024  # torch takes a C int
MAX_TRIALS = 1_000_000
MAX_EPOCHS = 10_000
MAX_BATCH = 65_536
MAX_LR = 10.0  # a learning rate past this diverges on the first step


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# Local workers each train on the CPU: more than there are CPUs only adds processes and memory.
MAX_WORKERS = cpu_count()

# Classes of a dataset: labels are indices 0..K-1, and the classifier is a layer of K outputs
# (search_spaces.arch bounds every width, classes included, by the same 2**16).
MAX_CLASSES = 1 << 16
