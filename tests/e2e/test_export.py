"""`m2nas export`: the best trial per device, rebuilt, checked and written out (nas/export.py).

On the session's finished smoke study (two devices):
* `--all-devices --out DIR` writes DIR/<device>/ with model.onnx, model.qonnx.onnx, arch.json,
  weights.pt, memory.json and MODEL_CARD.md for the trial `best_trial` picks; checked here again
  independently: onnxruntime and qonnx against the PyTorch model rebuilt from arch.json + weights.pt
  on test samples, the test accuracy, and `m2nas memory model.onnx` == memory.json == search figures;
* `--device` with the default folder export/<study>/<device>; fine-tuning (in process);
* a parity failure fails loudly; a study without feasible trials and bad arguments are one line, exit 2.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nas.export.parity import AS_WRITTEN, INTEGER_RUNTIME, compare, on_grid, onnxruntime_logits
from nas.export.trial import _torch_logits, output_lsb
from tests.fixtures import assert_one_line_error, run_cli, write_smoke_study

DEVICES = ("stm32f446re", "nrf52840")


@pytest.fixture(scope="module")
def exported(smoke_study, tmp_path_factory):
    out = tmp_path_factory.mktemp("export_all")
    res = run_cli("export", smoke_study, "--all-devices", "--out", str(out), timeout=600)
    assert res.code == 0, res.stderr
    return out, res


def _best(smoke_study, device):
    from nas.engine.results import best_trial
    from nas.engine.status import open_existing

    study, ostudy = open_existing(smoke_study)
    return study, best_trial(ostudy.get_trials(deepcopy=False), device, study.cfg.objectives.metric)


@pytest.mark.parametrize("device", DEVICES)
def test_export_writes_checked_files_for_the_best_trial(exported, smoke_study, device):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    from nas.train import load_trained
    from search_spaces import Arch

    out, res = exported
    folder = out / device
    for name in ("model.onnx", "model.qonnx.onnx", "arch.json", "weights.pt", "memory.json", "MODEL_CARD.md"):
        assert (folder / name).is_file(), name
    study, trial = _best(smoke_study, device)
    summary = json.loads((folder / "export.json").read_text())
    assert summary["trial"] == trial.number
    assert f"{device}: trial {trial.number}" in res.stdout

    # the same model as the trial's, rebuilt from the exported files
    arch = Arch.from_json((folder / "arch.json").read_text())
    assert arch.to_dict() == trial.user_attrs["arch"]
    model = load_trained(arch, folder / "weights.pt")
    test = study.dataset.test
    xs = [np.ascontiguousarray(test.x[m], dtype=np.float32) for m in model.modalities]
    ref = _torch_logits(model, xs)

    # compared on the logit grid: as written (no graph rewriting) exactly, onnxruntime's int8 kernels within
    # nas.export.parity's bounds; the whole test split (dynamic batch)
    lsb = output_lsb(model)

    def ref64(idx):
        return _torch_logits(copy.deepcopy(model).double(), [x[idx].astype(np.float64) for x in xs])

    as_written = compare(
        AS_WRITTEN, "model.onnx", "ort", onnxruntime_logits(folder / "model.onnx", xs, False), ref, lsb, ref64
    )
    int8 = compare(
        INTEGER_RUNTIME, "model.onnx", "ort", onnxruntime_logits(folder / "model.onnx", xs, True), ref, lsb
    )
    print(f"\n[{device}] {as_written.describe()}\n[{device}] {int8.describe()}")
    assert as_written.max_lsb == 0 and int8.passed
    checks = {(c["file"], c["check"]): c for c in summary["parity"]["checks"]}
    assert set(checks) == {
        ("model.onnx", AS_WRITTEN),
        ("model.qonnx.onnx", AS_WRITTEN),
        ("model.onnx", INTEGER_RUNTIME),
    }
    assert all(c["passed"] and c["samples"] == len(ref) for c in checks.values())
    assert checks["model.onnx", INTEGER_RUNTIME]["max_lsb"] == int8.max_lsb
    assert checks["model.onnx", INTEGER_RUNTIME]["top1_agreement"] == int8.top1_agreement
    acc = float((ref.argmax(1) == test.y).mean())
    assert summary["test"]["accuracy"] == pytest.approx(acc, abs=1e-9)

    mw = ModelWrapper(str(folder / "model.qonnx.onnx"))
    assert "Quant" in {n.op_type for n in mw.graph.node}
    assert [i.name for i in mw.graph.input] == list(model.modalities)
    for i in range(3):
        r = execute_onnx(mw, {m: x[i : i + 1] for m, x in zip(model.modalities, xs)})
        assert on_grid(r["logits"], ref[i : i + 1], lsb)[0] == 0

    # memory: the exported report == the search-time figures == the ONNX file read back
    mem = json.loads((folder / "memory.json").read_text())
    stored = trial.user_attrs["memory"][device]
    assert mem["fits"] and mem["device"] == device and mem["target"] == study.targets[device]
    assert (mem["flash_bytes"], mem["sram_bytes"], mem["arena_bytes"], mem["peak_sram_bytes"]) == (
        stored["flash"],
        stored["sram"],
        stored["arena"],
        stored["peak"],
    )
    assert mem["onnx_import_matches"] is True
    back = run_cli("memory", str(folder / "model.onnx"), "--device", device, "--json")
    assert back.code == 0, back.stderr
    # the study's limits are not in the catalogue device: compare everything but the level capacities
    got_mem = json.loads(back.stdout)
    for key in (
        "flash_bytes",
        "flash",
        "peak_sram_bytes",
        "arena_bytes",
        "sram_bytes",
        "naive_peak_sram_bytes",
    ):
        assert got_mem[key] == mem[key], key
    for key in ("per_layer_peak_bytes", "macs", "params", "latency_ms_est", "energy_uj_est"):
        assert got_mem[key] == mem[key], key
    assert len(got_mem["schedule"]) == len(mem["schedule"])

    card = (folder / "MODEL_CARD.md").read_text()
    for part in (
        "## Data",
        "## Test metrics",
        "Confusion matrix",
        f"## Memory on {device}",
        "(estimate)",
        "not measurements",
        "## Files and how to run",
        "onnxruntime",
    ):
        assert part in card, part
    assert f"{summary['test']['accuracy']:.4f}" in card


def test_single_device_default_folder_and_finetune(smoke_study, tmp_path):
    """`--device` writes export/<study>/<device> under the current directory; fine-tuning (in process)
    keeps the better of the trial's and the fine-tuned weights by validation metric, not test."""
    res = run_cli("export", smoke_study, "--device", "nrf52840", cwd=tmp_path, timeout=600)
    assert res.code == 0, res.stderr
    folder = tmp_path / "export" / "smoke" / "nrf52840"
    assert (folder / "model.onnx").is_file() and (folder / "MODEL_CARD.md").is_file()

    from nas.engine.status import open_existing
    from nas.export.trial import export_trial

    study, _ = open_existing(smoke_study)
    r = export_trial(study, "stm32f446re", tmp_path / "ft", finetune_epochs=1)
    ft = r.finetune
    assert ft["epochs"] == 1 and set(ft) >= {"val_before", "val_after", "kept"}
    metric = study.cfg.objectives.metric
    assert r.val_metrics[metric] == pytest.approx(max(ft["val_before"][metric], ft["val_after"][metric]))
    assert r.report.graph is r.graph and r.model is not None and r.dataset is study.dataset  # for the C code
    assert "Fine-tuned for 1 epoch" in (tmp_path / "ft" / "MODEL_CARD.md").read_text()


@pytest.mark.parametrize("check", [AS_WRITTEN, INTEGER_RUNTIME])
def test_parity_failure_names_the_check(smoke_study, tmp_path, monkeypatch, check):
    """A runtime that moves logits off PyTorch's: the export fails, names the check and the size in LSB and
    logit units, and renames the file so nobody deploys it."""
    import nas.export.parity as parity
    import nas.export.trial as ex
    from nas.engine.status import open_existing

    study, ostudy = open_existing(smoke_study)
    lsb = ex.output_lsb(ex.load_device_model(study, ostudy.get_trials(), "stm32f446re", ostudy)[2])
    real = parity.onnxruntime_logits

    def shifted(path, xs, rewrite, batch=256):
        out = real(path, xs, rewrite, batch).copy()
        if rewrite == (check == INTEGER_RUNTIME):
            if check == AS_WRITTEN:
                out[0, 0] += 3 * lsb
            else:  # every decision moves to another class
                out[np.arange(len(out)), out.argmax(1)] -= 1000 * lsb
        return out

    monkeypatch.setattr(parity, "onnxruntime_logits", shifted)
    with pytest.raises(ex.ExportCheckFailed, match=f"the {check} check failed") as err:
        ex.export_trial(study, "stm32f446re", tmp_path)
    msg = str(err.value)
    assert "output LSB" in msg and "in logit units" in msg and "model.onnx.failed" in msg
    if check == AS_WRITTEN:
        assert "max 3 output LSB" in msg
    else:
        assert "top-1 agreement 0.00%" in msg
    assert (tmp_path / "model.onnx.failed").is_file() and not (tmp_path / "model.onnx").exists()


def test_study_without_feasible_trials(tmp_path):
    """Budgets that only near-minimal candidates meet: the search rejects every candidate it samples
    (max_rejected = 3), so there is nothing to export, and export says so plainly."""
    path = Path(write_smoke_study(tmp_path))
    text = path.read_text().replace('limits = { flash = "6K" }', 'limits = { flash = "4400" }')
    text = text.replace('limits = { sram = "1700" }', 'limits = { flash = "4400" }')
    path.write_text(text.replace("epochs = 2\n", "epochs = 2\nmax_rejected = 3\n", 1))
    res = run_cli("search", str(path), "--json", timeout=300)
    assert res.code == 0, res.stderr
    counts = json.loads(res.stdout.splitlines()[-1])["counts"]  # JSON lines: the result last
    assert counts["trained"] == 0 and counts["rejected"] == 3
    res = run_cli("export", str(path), "--device", "nrf52840", cwd=tmp_path)
    assert_one_line_error(
        res,
        "no trained trial fits nrf52840",
        "no candidate finished training with a usable model",
        "3 rejected",
    )
    res = run_cli("export", str(path), "--all-devices", cwd=tmp_path)
    assert_one_line_error(res, "no trained trial fits any of the study's devices")
    assert not (tmp_path / "export").exists()


def test_bad_arguments_are_one_line(smoke_study, tmp_path):
    res = run_cli("export", smoke_study, "--device", "esp32", cwd=tmp_path)
    assert_one_line_error(res, "device 'esp32' is not in the study", "stm32f446re")
    res = run_cli("export", smoke_study, cwd=tmp_path)
    assert_one_line_error(res, "--device NAME or --all-devices")
    assert not (tmp_path / "export").exists()


def test_missing_artifacts_are_named(smoke_study, tmp_path):
    """A study copied without its artifact folder: the export names the folder."""
    src = Path(smoke_study).parent
    dst = tmp_path / "copy"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*_artifacts", "export*"))
    res = run_cli("export", str(dst / "smoke.toml"), "--device", "nrf52840", cwd=tmp_path)
    assert_one_line_error(res, "smoke_artifacts", "cannot read artifact")
