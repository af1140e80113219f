"""The accuracy half of a search (issue 14): the final stage, warm start, `no_signal`, successive halving.

Real searches on real watch data through the CLI; each study is small (2 epochs, 600 windows)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from tests.fixtures import copy_study, run_cli, run_cli_here, write_smoke_study


def _ostudy(path: str) -> optuna.Study:
    from nas.engine.status import open_existing

    return open_existing(path)[1]


def _val_on_fold(study, ostudy, trial: int, run: int, fold_no: int) -> float:
    import tempfile

    from nas.data.folds import fold
    from nas.engine.final import download_weights, stored_runs
    from nas.engine.record import TrialRecord
    from nas.engine.storage import artifact_store
    from nas.train import evaluate_model, load_trained
    from search_spaces import Arch

    t = next(t for t in ostudy.get_trials(deepcopy=False) if t.number == trial)
    r = stored_runs(ostudy)[str(trial)][str(run)]
    with tempfile.TemporaryDirectory() as tmp:
        weights = download_weights(study, artifact_store(study.artifact_dir), r["weights"], Path(tmp))
        model = load_trained(Arch.from_dict(TrialRecord(t).arch), weights)
    data, _ = fold(study.dataset, fold_no, study.cfg.study.seed)
    return float(evaluate_model(model, data.val)[0]["accuracy"])


def test_final_stage_chooses_by_mean_validation_and_export_ships_that_run(smoke_study, tmp_path):
    from nas.engine.final import choices, finalists
    from nas.engine.record import TrialRecord
    from nas.engine.status import open_existing

    study, ostudy = open_existing(smoke_study)
    trials = ostudy.get_trials(deepcopy=False)
    chosen = choices(ostudy)
    per_device = finalists(study, trials)
    assert set(chosen) == {d for d, ts in per_device.items() if ts} and chosen
    for dev, c in chosen.items():
        assert c.trial in {t.number for t in per_device[dev]}
        assert len(c.seeds) == len(c.val) == len(c.test) == 2 and len(set(c.seeds)) == 2
        assert all(0 <= v <= 1 for v in c.val + c.test)
        means = [m[next(k for k in m if k.endswith("_mean"))] for m in c.candidates]
        assert c.candidates[0]["trial"] == c.trial and means == sorted(means, reverse=True)
        assert c.val[c.export_run] == max(c.val)
        # the search's own run is the single-run figure, beside the seeds' mean
        trial = next(t for t in trials if t.number == c.trial)
        assert c.single_run["val"] == TrialRecord(trial).val["accuracy"] and 0 <= c.single_run["test"] <= 1
        # run 0 validates on the search's split, run 1 on other subjects (nas.data.folds)
        assert c.folds == [0, 1]
        for i, f in enumerate(c.folds):
            val = _val_on_fold(study, ostudy, c.trial, i, f)
            assert val == pytest.approx(c.val[i], abs=1e-9)
            if f:  # the same weights score differently on the search's validation subjects
                assert _val_on_fold(study, ostudy, c.trial, i, 0) != pytest.approx(val, abs=1e-9)

    st = json.loads(run_cli("status", smoke_study, "--json").stdout)
    assert st["final"].keys() == chosen.keys()
    assert st["counts"]["no_signal"] >= 0
    text = run_cli("status", smoke_study).stdout
    assert "final on stm32f446re" in text and "± " in text and "without signal" in text

    dev = "stm32f446re"
    out = tmp_path / "exp"
    res = run_cli("export", smoke_study, "--device", dev, "--out", out)
    assert res.code == 0, res.stderr
    assert "final stage: test accuracy" in res.stdout
    summary = json.loads((out / "export.json").read_text())
    c = chosen[dev]
    assert summary["trial"] == c.trial and summary["final"]["test"] == c.test
    # the exported weights are the final run with the best validation metric, not the search's run
    from nas.engine.final import download_weights
    from nas.engine.storage import artifact_store

    shipped = torch.load(out / "weights.pt", weights_only=True)
    best = torch.load(
        download_weights(study, artifact_store(study.artifact_dir), c.weights, tmp_path), weights_only=True
    )
    assert shipped.keys() == best.keys() and all(torch.equal(shipped[k], best[k]) for k in best)
    card = (out / "MODEL_CARD.md").read_text()
    assert "Final stage" in card and "mean ± std" in card


def test_final_runs_of_another_fold_are_trained_again_on_resume(smoke_study, tmp_path):
    """A stored final run counts only for the fold it was validated on: turning `cross_validate`
    off and resuming keeps run 0 (the search's own split either way) and retrains run 1."""
    from nas.engine.final import choices, stored_runs

    src = Path(smoke_study)
    path = tmp_path / src.name
    text = src.read_text()
    assert "cross_validate = true" in text
    copy_study(src, path, text.replace("cross_validate = true", "cross_validate = false"))
    before = stored_runs(_ostudy(smoke_study))
    res = run_cli("search", path, "--json")
    assert res.code == 0, res.stderr
    events = [json.loads(line) for line in res.stdout.splitlines()]
    retrained = {(e["trial"], e["seed"]) for e in events if e.get("event") == "final_run"}
    assert retrained == {(int(n), 1) for n in before}
    after = stored_runs(_ostudy(str(path)))
    for n, runs in before.items():
        assert after[n]["0"] == runs["0"] and after[n]["1"]["fold"] == 0 and runs["1"]["fold"] == 1
        assert after[n]["1"]["weights"] != runs["1"]["weights"]
    assert all(c.folds == [0, 0] for c in choices(_ostudy(str(path))).values())


def _study_with(folder: Path, extra: str, trials: int) -> str:
    path = Path(write_smoke_study(folder, trials=trials))
    text = path.read_text().replace("[final]", "[final]\nenabled = false\n#", 1) + extra
    path.write_text(text)
    return str(path)


def test_seed_archs_are_evaluated_first_and_queued_once(tmp_path):
    from nas.config.study import load_study
    from nas.engine.record import Attr, TrialRecord
    from nas.engine.warm_start import seed_archs
    from search_spaces import Arch

    (tmp_path / "mine.json").write_text(
        json.dumps(
            {
                "format": "m2nas.arch",
                "version": 1,
                "classes": 7,
                "branches": [
                    {
                        "modality": "acc",
                        "input_shape": [3, 100],
                        "blocks": [{"op": "conv", "kernel": 5, "channels": 4, "pool": 2}],
                    },
                    {"modality": "gyro", "input_shape": [3, 100], "used": False},
                ],
                "head": {"hidden": [], "weight_bits": [8], "act_bits": [8]},
            }
        )
    )
    path = _study_with(
        tmp_path, '\n[[seed_archs]]\nfile = "mine.json"\n\n[[seed_archs]]\nfamily = "tinym2net"\n', 3
    )
    # budgets the family's smallest members fit (the fixture's are tighter than any of them)
    Path(path).write_text(
        Path(path)
        .read_text()
        .replace('limits = { flash = "6K" }', 'limits = { flash = "12K" }')
        .replace('limits = { sram = "1700" }', 'limits = { sram = "2100" }')
    )
    study = load_study(path)
    seeds = seed_archs(study)
    # the file first, then the widest family member that fits each device at each weight bit-width
    assert seeds[0].used[0].blocks[0].channels == 4 and len(seeds) >= 3
    assert all(a.fused for a in seeds[1:]) and all(
        b.blocks[1].op == "dwsep" for a in seeds[1:] for b in a.used
    )
    res = run_cli_here("search", path, "--json")
    assert res.code == 0, res.stderr
    trials = sorted(_ostudy(path).get_trials(deepcopy=False), key=lambda t: t.number)
    keys = [TrialRecord(t).arch_key for t in trials]
    assert keys[:3] == [a.key() for a in seeds[:3]]
    assert all(Attr.SEED_ARCH in t.user_attrs for t in trials[:3])
    # resumed with a larger budget: the seeds are not queued again
    res = run_cli_here("search", path, "--json", "--trials", "5")
    assert res.code == 0, res.stderr
    trials = _ostudy(path).get_trials(deepcopy=False)
    seeded = [
        Arch.from_dict(t.user_attrs[Attr.SEED_ARCH]).key() for t in trials if Attr.SEED_ARCH in t.user_attrs
    ]
    assert len(seeded) == len(set(seeded)) == min(len(seeds), 5)


def test_a_sensor_that_reads_nothing_gives_no_signal_candidates_never_a_front(tmp_path):
    """A dead sensor (an all-zero channel: a loose connector) makes every model answer one class,
    which is never above the majority-class rate: such candidates are `no_signal`, on no front, and
    export refuses to ship them."""
    from nas.data import load_dataset

    ds = load_dataset("watch")
    rng = np.random.default_rng(0)
    parts = {}
    for code, split, n in ((0, ds.train, 300), (1, ds.val, 120), (2, ds.test, 120)):
        idx = np.sort(rng.choice(len(split), n, replace=False))
        parts[code] = (split.x["acc"][idx], split.y[idx])
    acc = np.concatenate([parts[c][0] for c in range(3)])
    np.savez(
        tmp_path / "dead.npz",
        acc=acc,
        dead=np.zeros_like(acc),
        y=np.concatenate([parts[c][1] for c in range(3)]),
        split=np.concatenate([np.full(len(parts[c][1]), c) for c in range(3)]),
    )
    path = Path(_study_with(tmp_path, "", 3))
    text = path.read_text().replace(
        '[dataset]\nname = "watch"',
        '[dataset]\nname = "npz"\nmodalities = ["dead"]\noptions = { path = "dead.npz" }',
    )
    path.write_text(
        text.replace("max_train_samples = 600\n", "").replace("distill = true", "distill = false")
    )
    res = run_cli_here("search", str(path), "--json")
    assert res.code == 0, res.stderr
    out = json.loads(res.stdout.splitlines()[-1])
    assert out["counts"]["no_signal"] == 3 and out["counts"]["trained"] == 0, out["counts"]
    st = json.loads(run_cli_here("status", str(path), "--json").stdout)
    assert all(rows == [] for rows in st["fronts"].values())
    trials = [t for t in _ostudy(str(path)).get_trials(deepcopy=False) if "val" in t.user_attrs]
    assert len(trials) == 3 and all(t.user_attrs["val"]["accuracy"] <= t.user_attrs["chance"] for t in trials)
    res = run_cli_here("export", str(path), "--device", "stm32f446re", "--out", str(tmp_path / "x"))
    assert res.code == 2 and "3 without signal" in res.stderr, res.stderr


@pytest.mark.parametrize("rule", ["asha", "threshold"])
def test_early_stopping_rules_stop_candidates_with_reasons(tmp_path, rule):
    path = Path(_study_with(tmp_path, "", 8))
    text = path.read_text().replace(
        "[early_stopping]\nenabled = false",
        f'[early_stopping]\nenabled = true\nrule = "{rule}"\nat = [0.34]\nmin_finished = 2\nmargin = 0.0',
    )
    text = text.replace("epochs = 2\n", "epochs = 3\n", 1)
    path.write_text(text)
    res = run_cli_here("search", str(path), "--json")
    assert res.code == 0, res.stderr
    trials = _ostudy(str(path)).get_trials(deepcopy=False)
    stopped = [t for t in trials if t.user_attrs.get("status") == "stopped_early"]
    for t in stopped:
        assert len(t.user_attrs["curve"]) == 1 and t.user_attrs["reason"].startswith("epoch 1:")
    full = [t for t in trials if t.user_attrs.get("status") == "trained"]
    assert all(len(t.user_attrs["curve"]) == 3 or t.user_attrs["epochs_run"] < 3 for t in full)
    # nobody stops before `min_finished` candidates have reached the rung
    first = sorted(trials, key=lambda t: t.number)[:2]
    assert all(t.user_attrs.get("status") != "stopped_early" for t in first)
