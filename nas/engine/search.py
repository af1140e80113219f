"""Running a study: the worker loop, several workers, progress snapshots, budget, resume, Ctrl-C.

The budget counts *candidates that cost training* (trained, stopped early, or failed while training):
rejections cost microseconds of analysis and a storage write, so they do not use it up
(`max_rejected` caps them); `max_failures` failed candidates in a row stop the study (a bad setting
would otherwise fail every candidate). Running the same command again resumes: finished trials
stay, the budget counts them, the sampler is seeded anew (so the rerun does not replay the first
run's draws) and an arch already trained is not trained again; a trial
interrupted by Ctrl-C (or lost with a killed worker, after the heartbeat grace period) is queued again
with the same parameters.
"""

from __future__ import annotations

import hashlib
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from memory_models.errors import InputError
from nas import interrupt
from nas.config.study import Study

from .progress import Progress, SearchWatch
from .record import Attr, Status, TrialRecord
from .results import best_trial, count, failed_candidates, failure_streak
from .storage import artifact_store, check_artifact_dir, make_storage

# Optuna logs a traceback for every trial stopped by Ctrl-C or a training failure; m2nas reports
# those itself (trial status and reason), so only its errors go to the terminal.
optuna.logging.set_verbosity(optuna.logging.ERROR)


def sampler_seed(study_seed: int, worker_index: int, stored_trials: int) -> int:
    """The sampler's seed for one run of one worker.

    A fresh study keeps the plain study seed (per worker); a resumed one mixes in how many trials
    are stored, so a rerun does not replay the first run's draws (the random sampler knows nothing
    of the stored trials; TPE and NSGA-II see them through the storage but draw from the seed)."""
    if stored_trials == 0:
        return study_seed + 1000 * worker_index
    digest = hashlib.sha256(f"{study_seed}:{worker_index}:{stored_trials}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def make_sampler(study: Study, worker_index: int = 0, stored_trials: int = 0) -> optuna.samplers.BaseSampler:
    seed = sampler_seed(study.cfg.study.seed, worker_index, stored_trials)
    kind = study.cfg.study.sampler
    if kind == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=10
        )
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
    if kind == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def open_study(study: Study, storage_url: str | None = None, worker_index: int = 0) -> optuna.Study:
    s = study.cfg.study
    storage = make_storage(storage_url or study.storage_url, s.heartbeat_s, s.grace_s, s.max_retry)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ostudy = optuna.create_study(
            study_name=study.name,
            storage=storage,
            sampler=make_sampler(study, worker_index),
            directions=study.directions(),
            load_if_exists=True,
        )
    check_same_objectives(study, ostudy)
    stored = len(ostudy.get_trials(deepcopy=False))
    if stored:
        ostudy.sampler = make_sampler(study, worker_index, stored)
    if not ostudy.user_attrs.get("m2nas"):
        ostudy.set_metric_names(study.objective_names())
        ostudy.set_user_attr(
            "m2nas",
            {
                "study_file": str(study.path),
                "dataset": study.cfg.dataset.name,
                "metric": study.cfg.objectives.metric,
                "minimize": study.cfg.objectives.minimize,
                "devices": {n: {"target": study.targets[n]} for n in study.devices},
                "artifacts": str(study.artifact_dir),
            },
        )
    return ostudy


def check_same_objectives(study: Study, ostudy: optuna.Study) -> None:
    """Refuse to resume a stored study with other objectives than its file's.

    Optuna loads a study by name whatever directions it is given; every new trial would then hand
    back the wrong number of values and be stored as failed, with no message, forever."""
    stored = ostudy.user_attrs.get("m2nas") or {}
    metric, minimize = study.cfg.objectives.metric, list(study.cfg.objectives.minimize)
    if "minimize" in stored:
        old = (stored.get("metric"), list(stored["minimize"]))
    else:  # no m2nas attributes yet: compare what Optuna itself stored
        if len(ostudy.directions) == len(study.directions()):
            return
        old = ("?", [f"{len(ostudy.directions) - 1} figures"])
    if old == (metric, minimize):
        return
    raise InputError(
        f"{study.path}: [objectives] differ from those stored for study {study.name!r} in its storage "
        f"(stored: metric {old[0]}, minimize {old[1]}; file: metric {metric}, minimize {minimize}); "
        "put them back, or start a new study with another [study] name or storage"
    )


def trials_of(ostudy: optuna.Study) -> list:
    return ostudy.get_trials(deepcopy=False)


@dataclass
class Budget:
    candidates: int
    deadline: float | None  # time.time() after which no new candidate starts
    max_rejected: int
    max_failures: int = 3  # failed candidates in a row that stop the study

    def used(self, trials: list) -> int:
        """Candidates that cost training: trained, stopped early, or failed while training."""
        return count(trials).candidates + len(failed_candidates(trials))

    def exhausted(self, trials: list) -> str:
        c = count(trials)
        if failure_streak(trials)[0] >= self.max_failures:
            return "failures"
        if self.used(trials) >= self.candidates:
            return "budget"
        if self.deadline is not None and time.time() >= self.deadline:
            return "timeout"
        if c.rejected >= self.max_rejected:
            return "max_rejected"
        return ""


def budget_of(study: Study, trials: int | None, deadline: float | None) -> Budget:
    b = study.cfg.budget
    return Budget(trials or b.trials, deadline, b.max_rejected, b.max_failures)


def failure_message(study: Study, trials: list) -> str:
    """The line a study stopped by failures ends with: how many, and why the last one failed."""
    n, reason = failure_streak(trials)
    return (
        f"study {study.name!r}: stopped after {n} failed candidates in a row (budget.max_failures); "
        f"the last failed with: {reason}"
    )


def run_worker(study: Study, budget: Budget, storage_url: str | None = None, worker_index: int = 0) -> str:
    """Run trials until the budget is used up; returns why it stopped.

    Trials being trained by other workers count against the budget, so K workers do not overshoot
    it by K-1; when only those stand between the study and its budget, this worker waits: they may
    finish, or (a killed worker) go stale, be failed by the heartbeat check and queued again, and
    then this worker trains the retry."""
    from .objective import CandidateEvaluator

    ostudy = open_study(study, storage_url, worker_index)
    evaluator = CandidateEvaluator(study, artifact_store(study.artifact_dir))
    torch_threads(study.cfg.study.threads)
    poll = max(1.0, study.cfg.study.heartbeat_s / 2)
    with interrupt.stop_at_safe_points(signal.SIGINT, signal.SIGTERM):
        return _work(ostudy, evaluator, budget, poll)


def _work(ostudy: optuna.Study, evaluator, budget: Budget, poll: float) -> str:
    from nas.train import TrainingFailed

    while True:
        interrupt.check()
        optuna.storages.fail_stale_trials(ostudy)
        trials = trials_of(ostudy)
        counts = count(trials)
        why = budget.exhausted(trials)
        if why:
            return why
        training_elsewhere = sum(
            1
            for t in trials
            if t.state == TrialState.RUNNING and TrialRecord(t).stored_status == Status.TRAINING
        )
        if (
            training_elsewhere
            and not counts.waiting
            and budget.used(trials) + training_elsewhere >= budget.candidates
        ):
            interrupt.sleep(poll)
            continue
        try:
            ostudy.optimize(evaluator, n_trials=1, catch=(TrainingFailed,), gc_after_trial=False)
        except KeyboardInterrupt:
            requeue_interrupted(ostudy, evaluator)
            raise


def requeue_interrupted(ostudy: optuna.Study, evaluator) -> None:
    """Optuna marks an interrupted trial FAIL; queue its parameters so the next run retrains it."""
    trial = evaluator.current_trial
    if trial is None:
        return
    frozen = next(t for t in ostudy.get_trials(deepcopy=False) if t.number == trial.number)
    if frozen.state == TrialState.FAIL and TrialRecord(frozen).stored_status in (Status.TRAINING, None):
        ostudy.enqueue_trial(frozen.params, user_attrs={Attr.RETRY_OF: frozen.number}, skip_if_exists=False)


def torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


# ---- the user-facing run -------------------------------------------------------------------------


def summarize(study: Study, trials: list) -> dict[str, Any]:
    c = count(trials)
    metric = study.cfg.objectives.metric
    best = {}
    for name in study.devices:
        t = best_trial(trials, name, metric)
        rec = None if t is None else TrialRecord(t)
        best[name] = (
            None
            if rec is None
            else {
                "trial": t.number,
                f"val_{metric}": rec.val[metric],
                "flash": rec.memory[name]["flash"],
                "sram": rec.memory[name]["sram"],
                "summary": rec.summary,
            }
        )
    return {"counts": c.to_dict(), "best": best}


def _worker_process(study_path: str, budget: Budget, storage_url: str, worker_index: int) -> None:
    """One more local worker, in its own process: it loads the study file itself (as a worker on
    another machine would) and leaves quietly when the starting process asks it to (SIGTERM, taken
    at the next safe point; the terminal's Ctrl-C goes to that process only); its interrupted trial
    is requeued."""

    from nas.config.study import load_study

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupt.stop_at_safe_points(signal.SIGTERM):
            run_worker(load_study(study_path), budget, storage_url, worker_index)
    except KeyboardInterrupt:
        pass


def start_workers(study: Study, budget: Budget, storage_url: str, count: int, first_index: int = 1) -> list:
    """Start `count` worker processes on this machine (spawned: no forked torch or storage state)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    procs = []
    for i in range(first_index, first_index + count):
        p = ctx.Process(
            target=_worker_process, args=(str(study.path), budget, storage_url, i), name=f"m2nas-worker-{i}"
        )
        p.start()
        procs.append(p)
    return procs


def _teacher_first(study: Study, budget: Budget, ostudy, watch: SearchWatch) -> None:
    """Get the teacher (a first run trains it: minutes on a real study) before any worker starts,
    so a display can show its epochs and no worker waits on another's teacher lock. If its training
    fails, the candidates' trials try again and record the failure as they always have."""
    from nas.train import TrainingFailed

    from .teacher_logits import TeacherLogits

    if study.cfg.training.distill and not budget.exhausted(trials_of(ostudy)):
        watch.teacher_begin()
        torch_threads(study.cfg.study.threads)
        try:
            TeacherLogits(study)(on_epoch=watch.teacher_epoch)
        except TrainingFailed:
            pass
    watch.teacher_ready()


def run_search(
    study: Study,
    trials: int | None = None,
    timeout: float | None = None,
    workers: int = 1,
    storage_url: str | None = None,
    progress: Callable[[Progress], None] | None = None,
    final: bool = True,
    on_final: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the study with `workers` processes on this machine until the budget is used
    up, then its final stage (`[final]`, unless `final` is False or the search was interrupted or
    failed); `progress`, if given, receives a `Progress` about once a second and once at the end,
    `on_final` a dict after each final-stage run."""
    cfg = study.cfg
    n = trials or cfg.budget.trials
    deadline = (
        None if (timeout or cfg.budget.timeout_s) is None else time.time() + (timeout or cfg.budget.timeout_s)
    )
    budget = budget_of(study, n, deadline)
    study.check_some_candidate_fits()
    check_artifact_dir(study.artifact_dir)
    url = storage_url or study.storage_url
    ostudy = open_study(study, url)  # creates the study once, before any worker races to
    _ = study.dataset  # build/load the data once (generated datasets are cached on disk)
    from .warm_start import enqueue_seed_archs

    enqueue_seed_archs(study, ostudy)
    started = time.time()
    watch = SearchWatch(study, ostudy, budget, started)

    stop_display = threading.Event()
    if progress:
        progress(watch.snapshot())

        def refresh() -> None:
            while not stop_display.wait(1.0):
                try:
                    progress(watch.snapshot())
                except Exception:  # the display must never take the search down
                    pass

        threading.Thread(target=refresh, daemon=True).start()
    with interrupt.stop_at_safe_points(signal.SIGINT, signal.SIGTERM):
        why, interrupted, result_final = _search_then_final(
            study, ostudy, budget, url, workers, watch, progress, stop_display, final, on_final
        )
    result = summarize(study, trials_of(ostudy))
    result["final"] = result_final
    result["stopped"] = why
    if why == "failures":
        result["failure"] = failure_message(study, trials_of(ostudy))
    result["interrupted"] = interrupted
    result["seconds"] = round(time.time() - started, 2)
    return result


def _search_then_final(study, ostudy, budget, url, workers, watch, progress, stop_display, final, on_final):
    """The teacher, the workers, then the final stage; returns (why it stopped, interrupted, the
    final choices). A Ctrl-C anywhere in it ends here, with what was finished stored."""
    cfg = study.cfg
    interrupted = False
    children: list = []
    try:
        _teacher_first(study, budget, ostudy, watch)
        children = start_workers(study, budget, url, workers - 1)
        why = run_worker(study, budget, url, 0)
        for p in children:
            while p.is_alive():
                p.join(0.2)
                interrupt.check()
    except KeyboardInterrupt:
        interrupted = True
        why = "interrupted"
        for p in children:
            p.terminate()  # SIGTERM: the worker stops at its next step and requeues its trial
        for p in children:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    finally:
        stop_display.set()
        if progress:
            progress(watch.snapshot())
    if final and cfg.final.enabled and not interrupted and why != "failures":
        from .final import run_final

        try:
            chosen = run_final(study, ostudy, artifact_store(study.artifact_dir), on_final)
        except KeyboardInterrupt:  # the runs finished so far are stored; a rerun trains the rest
            interrupted, why, chosen = True, "interrupted", {}
        result_final = {d: c.to_dict() for d, c in chosen.items()}
    else:
        result_final = {}
    return why, interrupted, result_final
