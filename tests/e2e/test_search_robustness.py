"""A search that cannot make progress stops; a resumed search continues instead of replaying."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nas.engine.results import count
from tests.fixtures import assert_one_line_error, run_cli_here, write_smoke_study


def _trials(path: str) -> list:
    from nas.engine.status import open_existing

    return open_existing(path)[1].get_trials(deepcopy=False)


def _failing_trainer(monkeypatch) -> list:
    import nas.train

    calls = []
    real = nas.train.train_candidate

    def fail(arch, dataset, cfg, *args, **kwargs):
        if not cfg.quantized:  # the float teacher (when the cache lacks it) trains for real: a
            return real(arch, dataset, cfg, *args, **kwargs)  # candidate's failure is what is tested
        calls.append(arch)
        raise nas.train.TrainingFailed("NaN loss at epoch 1 step 1 (test)")

    monkeypatch.setattr(nas.train, "train_candidate", fail)
    return calls


def test_failures_in_a_row_stop_the_study_with_one_line_and_exit_1(tmp_path, monkeypatch):
    calls = _failing_trainer(monkeypatch)
    path = write_smoke_study(tmp_path, trials=50)
    text = Path(path).read_text().replace("[budget]\n", "[budget]\nmax_failures = 4\n")
    Path(path).write_text(text)
    res = run_cli_here("search", path, "--json")  # no live progress on stderr
    assert res.code == 1, (res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("m2nas: error: ")
    assert "4 failed candidates in a row" in lines[0] and "NaN loss at epoch 1 step 1 (test)" in lines[0]
    assert len(calls) == 4 and count(_trials(path)).failed == 4


def test_any_exception_from_training_is_a_counted_failure(tmp_path, monkeypatch):
    """Not only TrainingFailed: an OverflowError (a huge learning rate) or any other exception from a
    candidate's training is recorded as `failed` with its one-line reason and counts toward
    max_failures; nothing is requeued as if a worker had been lost."""
    import nas.train

    real, calls = nas.train.train_candidate, []

    def overflow(arch, dataset, cfg, *args, **kwargs):
        if not cfg.quantized:
            return real(arch, dataset, cfg, *args, **kwargs)
        calls.append(arch)
        raise OverflowError("cannot convert float infinity to integer\n(second line)")

    monkeypatch.setattr(nas.train, "train_candidate", overflow)
    path = write_smoke_study(tmp_path, trials=50)
    Path(path).write_text(Path(path).read_text().replace("[budget]\n", "[budget]\nmax_failures = 3\n"))
    res = run_cli_here("search", path, "--json")
    assert res.code == 1, (res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "3 failed candidates in a row" in lines[0]
    assert "training raised OverflowError: cannot convert float infinity to integer" in lines[0]
    assert "second line" not in lines[0]
    trials = _trials(path)
    assert len(calls) == 3 and count(trials).failed == 3 and count(trials).waiting == 0


def test_failed_candidates_count_against_the_budget(tmp_path, monkeypatch):
    from nas.config.study import load_study
    from nas.engine.search import run_search

    calls = _failing_trainer(monkeypatch)
    path = write_smoke_study(tmp_path, trials=3)
    Path(path).write_text(Path(path).read_text().replace("[budget]\n", "[budget]\nmax_failures = 10\n"))
    result = run_search(load_study(path))
    assert result["stopped"] == "budget" and len(calls) == 3
    assert result["counts"]["failed"] == 3 and result["counts"]["trained"] == 0


def test_changed_objectives_are_refused_before_anything_runs(smoke_study, tmp_path):
    shutil.copytree(Path(smoke_study).parent, tmp_path / "s")
    path = str(tmp_path / "s" / Path(smoke_study).name)
    before = [(t.number, t.state, t.values) for t in _trials(path)]
    text = Path(path).read_text().replace('minimize = ["flash", "sram"]', 'minimize = ["flash"]')
    Path(path).write_text(text)
    res = run_cli_here("search", path, "--trials", "8")
    assert_one_line_error(res, "[objectives] differ", "minimize ['flash', 'sram']", "new study")
    assert [(t.number, t.state, t.values) for t in _trials(path)] == before


@pytest.mark.parametrize("sampler", ["random", "tpe", "nsga2"])
def test_a_resumed_search_trains_new_architectures(tmp_path, sampler):
    """Two runs (3 then 6 candidates): every trained arch is a different one."""
    from nas.config.study import load_study
    from nas.engine.search import run_search

    path = write_smoke_study(tmp_path, trials=3)
    Path(path).write_text(Path(path).read_text().replace('sampler = "random"', f'sampler = "{sampler}"'))
    run_search(load_study(path))
    first = {t.number for t in _trials(path)}
    run_search(load_study(path), trials=6)
    trials = _trials(path)
    # trained to the end or at chance level (`no_signal`): both cost a training of that arch
    trained = [t for t in trials if t.user_attrs.get("status") in ("trained", "no_signal")]
    assert len(trained) == 6 and len(trials) > len(first)
    keys = [t.user_attrs["arch_key"] for t in trained]
    assert len(set(keys)) == len(keys), keys


def test_sampler_seed_depends_on_the_stored_trials():
    from nas.engine.search import sampler_seed

    assert sampler_seed(7, 0, 0) == 7 and sampler_seed(7, 1, 0) == 1007
    seeds = {sampler_seed(7, w, n) for w in range(3) for n in range(1, 50)}
    assert len(seeds) == 3 * 49
    assert sampler_seed(7, 0, 5) == sampler_seed(7, 0, 5) != sampler_seed(8, 0, 5)
