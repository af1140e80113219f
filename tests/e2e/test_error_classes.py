"""Each class of bad input found in issue 17 ends in one line and exit 2, with nothing written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures import assert_one_line_error, run_cli_here


@pytest.fixture
def study(smoke_study, tmp_path) -> Path:
    shutil.copytree(Path(smoke_study).parent, tmp_path / "s")
    return tmp_path / "s" / Path(smoke_study).name


def edited(study: Path, old: str, new: str, name: str = "probe") -> Path:
    text = study.read_text()
    assert old in text
    path = study.parent / f"{name}.toml"
    path.write_text(text.replace(old, new, 1))
    shutil.copy(study.with_suffix(".db"), path.with_suffix(".db"))
    return path


def test_corrupt_and_odd_sqlite_storages(study, tmp_path):
    db = study.with_suffix(".db")
    for extra in db.parent.glob(db.name + "-*"):
        extra.unlink()
    db.write_bytes(db.read_bytes()[:3000])
    assert_one_line_error(run_cli_here("status", study), "cannot open", "malformed")
    for url, fragment in (
        ("sqlite:///", "expected sqlite:///PATH"),
        ("sqlite:////proc/x.db", "sqlite:////proc/x.db"),
        (f"sqlite:///{study}/x.db", "no such database"),
    ):
        assert_one_line_error(run_cli_here("status", study, "--storage", url), fragment)
    assert_one_line_error(run_cli_here("search", study, "--storage", "sqlite:////proc/x.db"), "not a place")


@pytest.mark.parametrize(
    "data, fragment",
    [(b"\xff\xfe[study]\n", "not UTF-8"), ("[study]\n".encode("utf-16"), "not UTF-8")],
)
def test_non_utf8_study_and_device_files(tmp_path, data, fragment):
    f = tmp_path / "bad.toml"
    f.write_bytes(data)
    for args in (["status", f], ["sample", f], ["search", f], ["devices", "--devices", f]):
        assert_one_line_error(run_cli_here(*args), fragment)
    assert_one_line_error(run_cli_here("status", tmp_path), "is a directory")
    assert_one_line_error(run_cli_here("devices", "--devices", tmp_path), "is a directory")


def test_a_byte_order_mark_is_no_syntax_error(study):
    bom = study.parent / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + study.read_bytes())
    shutil.copy(study.with_suffix(".db"), bom.with_suffix(".db"))
    res = run_cli_here("status", bom, "--json")
    assert res.code == 0, res.stderr


@pytest.mark.parametrize(
    "old, new, fragment",
    [
        ('limits = { flash = "6K" }', 'limits = { flash = "0K" }', "less than one byte"),
        ('limits = { flash = "6K" }', 'limits = { flash = "0.0001K" }', "less than one byte"),
        ('limits = { flash = "6K" }', "limits = { flash = true }", "expected bytes"),
        ("seed = 0", "seed = -1", "study.seed"),
        ('preset = "micro"', "preset = []", "unknown search-space preset"),
        ("seed = 0", "seed = 4294967296", "study.seed"),
        ("batch_size = 64", "batch_size = 64\nlr = inf", "training.lr"),
        ("batch_size = 64", "batch_size = 64\nlr = nan", "training.lr"),
        ('minimize = ["flash", "sram"]', 'minimize = ["flash", "flash@stm32f446re"]', "listed twice"),
    ],
)
def test_wrong_values_in_the_study_file(study, old, new, fragment):
    path = edited(study, old, new)
    for cmd in ("status", "search"):
        assert_one_line_error(run_cli_here(cmd, path), fragment)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--trials", "-1"], "--trials"),
        (["--trials", "0"], "--trials"),
        (["--timeout", "0"], "--timeout"),
        (["--timeout", "-5"], "--timeout"),
    ],
)
def test_wrong_search_options(study, args, fragment):
    assert_one_line_error(run_cli_here("search", study, *args), fragment)
    assert_one_line_error(run_cli_here("worker", study, *args), fragment)


def test_wrong_seeds_on_the_command_line(tmp_path):
    for seed in ("-1", str(2**32)):
        res = run_cli_here("sample", "micro", "--seed", seed, "--input", "a=3x50", "--classes", "3")
        assert_one_line_error(res, "--seed")


def _arch(tmp_path) -> Path:
    res = run_cli_here("sample", "micro", "--n", "1", "--input", "acc=3x50", "--classes", "3")
    f = tmp_path / "arch.json"
    f.write_text(res.stdout.splitlines()[0])
    return f


def test_wrongly_typed_arch_fields(tmp_path):
    arch = json.loads(_arch(tmp_path).read_text())
    f = tmp_path / "bad.json"

    def walk(d, key, value):
        if isinstance(d, dict):
            for k in d:
                if k == key:
                    d[k] = value
                else:
                    walk(d[k], key, value)
        elif isinstance(d, list):
            for v in d:
                walk(v, key, value)

    for key, value in (("kernel", "3"), ("channels", "8"), ("bits", {"a": 1})):
        doc = json.loads(json.dumps(arch))
        walk(doc, key, value)
        f.write_text(json.dumps(doc))
        res = run_cli_here("memory", f, "--device", "stm32f446re")
        assert res.code in (0, 2) and "Traceback" not in res.stderr, res.stderr
        if res.code == 2:
            assert_one_line_error(res)


def test_wrongly_typed_opgraph_attributes(tmp_path):
    """The attributes the memory model computes with are checked, not compared or divided by."""
    from search_spaces import Arch, graph

    doc = graph(Arch.from_json(_arch(tmp_path).read_text())).to_dict()
    conv = next(i for i, o in enumerate(doc["ops"]) if "kernel" in o.get("attrs", {}))
    f = tmp_path / "g.json"
    for key, value, fragment in (
        ("kernel", "3", "attrs.kernel: must be a positive integer"),
        ("kernel", [], "attrs.kernel"),
        ("groups", 0, "attrs.groups: must be a positive integer"),
        ("groups", 2, "does not divide"),
        (None, 5, "attrs: expected an object"),
    ):
        bad = json.loads(json.dumps(doc))
        if key is None:
            bad["ops"][conv]["attrs"] = value
        else:
            bad["ops"][conv]["attrs"][key] = value
        f.write_text(json.dumps(bad))
        assert_one_line_error(run_cli_here("memory", f, "--device", "stm32f446re"), str(f), fragment)
    bad = json.loads(json.dumps(doc))
    bad["inputs"] = [["acc"]]
    f.write_text(json.dumps(bad))
    assert_one_line_error(run_cli_here("memory", f, "--device", "stm32f446re"), "inputs: expected a list")


def test_an_npy_renamed_npz_and_a_directory_as_weights_out(tmp_path):
    arch = _arch(tmp_path)
    np.save(tmp_path / "x.npy", np.zeros(3))
    (tmp_path / "x.npy").rename(tmp_path / "x.npz")
    res = run_cli_here("train", arch, "--dataset", "npz", "--option", f"path={tmp_path / 'x.npz'}")
    assert_one_line_error(res, "single .npy array")
    res = run_cli_here("train", arch, "--dataset", "watch", "--weights-out", tmp_path, "--no-distill")
    assert_one_line_error(res, "--weights-out", "is a directory")


def test_truncated_weights_are_refused_without_torch_advice(study, tmp_path):
    for f in study.parent.joinpath(f"{study.stem}_artifacts").rglob("*"):
        if f.is_file() and f.read_bytes()[:2] == b"PK":  # torch.save's zip files: the weights
            f.write_bytes(f.read_bytes()[:500])
    res = run_cli_here("export", study, "--all-devices", "--out", tmp_path / "out")
    assert_one_line_error(res, "not a weights file")
    assert "weights_only" not in res.stderr


def test_raw_pickled_weights_are_refused_in_one_line(study, tmp_path):
    """A weights.pt that is a plain pickle (protocol 4), not torch.save's zip: refused as it always
    was, and torch's note about the pickle protocol no longer adds lines (a fresh process, so no
    warning registry hides it)."""
    import pickle

    from tests.fixtures import run_cli

    for f in study.parent.joinpath(f"{study.stem}_artifacts").rglob("*"):
        if f.is_file() and f.read_bytes()[:2] == b"PK":
            f.write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=4))
    res = run_cli("export", study, "--all-devices", "--out", tmp_path / "out", timeout=300)
    assert_one_line_error(res, "not a weights file")
    assert "pickle protocol" not in res.stderr and "weights_only" not in res.stderr


def _unwritable_places(tmp_path: Path) -> list[Path]:
    """Folders nobody can write to, even root (mode bits stop nothing there): one under a regular
    file, one under /proc, and a read-only tmpfs where this process may mount one."""
    (tmp_path / "a_file").write_text("x")
    places = [tmp_path / "a_file" / "sub", Path("/proc/1/m2nas-probe")]
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(ro)], capture_output=True)
    if mounted.returncode == 0:
        if subprocess.run(["mount", "-o", "remount,ro", str(ro)], capture_output=True).returncode == 0:
            places.append(ro / "art")
    return places


@pytest.fixture
def unwritable(tmp_path):
    places = _unwritable_places(tmp_path)
    yield places
    if os.path.ismount(tmp_path / "ro"):
        subprocess.run(["umount", str(tmp_path / "ro")], capture_output=True)


def test_unwritable_artifacts_folder_is_found_before_training(study, unwritable):
    for place in unwritable:
        path = edited(study, 'sampler = "random"', f'sampler = "random"\nartifacts = "{place}"', "unwritable")
        before = path.with_suffix(".db").read_bytes()
        assert_one_line_error(
            run_cli_here("search", path, "--trials", "8"), "artifacts folder", "cannot be written"
        )
        assert path.with_suffix(".db").read_bytes() == before  # no trial was started


def test_unwritable_weights_out_is_found_before_training(tmp_path, unwritable):
    arch = _arch(tmp_path)
    t0 = time.monotonic()
    for place in unwritable:
        res = run_cli_here(
            "train", arch, "--dataset", "watch", "--weights-out", place / "w.pt", "--no-distill"
        )
        assert_one_line_error(res, "--weights-out", "cannot be written")
    assert time.monotonic() - t0 < 30  # refused before the data were even loaded


def test_every_arch_entry_point_names_the_file_and_field(study, tmp_path):
    """A hand-edited Arch JSON with a stray or wrongly typed field is refused at load by `memory`,
    `train` and `export` (which reads each trial's stored arch.json), naming the file and field."""
    good = json.loads(_arch(tmp_path).read_text())
    for edit, field in (
        (lambda d: d.update(inputs=5), "inputs: unknown field"),
        (lambda d: d["branches"][0].update(used=1), "branches[0].used: expected true or false"),
        (lambda d: d["branches"][0]["blocks"][0].update(channels=8.0), "channels: expected an integer"),
        (lambda d: d["head"].update(hidden=[2**40]), "head.hidden"),
    ):
        doc = json.loads(json.dumps(good))
        edit(doc)
        f = tmp_path / "bad.json"
        f.write_text(json.dumps(doc))
        assert_one_line_error(run_cli_here("memory", f, "--device", "stm32f446re"), str(f), field)
        assert_one_line_error(run_cli_here("train", f, "--dataset", "watch", "--no-distill"), str(f), field)
    for stored in study.parent.joinpath(f"{study.stem}_artifacts").rglob("*"):
        if stored.is_file() and stored.read_bytes()[:1] == b"{" and b'"m2nas.arch"' in stored.read_bytes():
            doc = json.loads(stored.read_text())
            doc["inputs"] = 5
            stored.write_text(json.dumps(doc))
    res = run_cli_here("export", study, "--all-devices", "--out", tmp_path / "out")
    assert_one_line_error(res, "arch.json", "inputs: unknown field")


@pytest.fixture
def ro_tmpfs(tmp_path):
    """A tmpfs to fill and then remount read-only (root writes through mode bits, not through a
    read-only mount): a function that remounts it. Skipped where mounts are not permitted, except
    under CI=true."""
    place = tmp_path / "ro_tmpfs"
    place.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(place)], capture_output=True)
    if res.returncode != 0:
        why = f"cannot mount a tmpfs: {res.stderr.decode().strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"read-only storage tests must run under CI=true: {why}")
        pytest.skip(why)

    def remount_ro():
        subprocess.run(["mount", "-o", "remount,ro", str(place)], check=True, capture_output=True)

    yield place, remount_ro
    # Lazy: the in-process CLI runs may still hold the database open (SQLAlchemy's pool).
    subprocess.run(["umount", "-l", str(place)], capture_output=True)


def test_read_only_storage_serves_status_report_and_export(study, tmp_path, ro_tmpfs):
    """`status`, `report` and `export` only read the storage: a study whose database, artifacts and
    folder are on a read-only mount (no -shm file for its WAL) gives the same figures as a writable
    copy; a corrupt database there, or one whose -wal is not merged, is still one line and exit 2."""
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(study.with_suffix(".db"))) as con:  # the last close merges the WAL
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    place, remount_ro = ro_tmpfs
    for f in (study, study.with_suffix(".db")):
        shutil.copy(f, place / f.name)
    shutil.copytree(study.parent / f"{study.stem}_artifacts", place / f"{study.stem}_artifacts")
    (place / "corrupt.toml").write_text(study.read_text())
    (place / "corrupt.db").write_bytes(study.with_suffix(".db").read_bytes()[:3000])
    (place / "wal.toml").write_text(study.read_text())
    shutil.copy(study.with_suffix(".db"), place / "wal.db")
    with closing(sqlite3.connect(place / "wal.db")) as con:  # a -wal with a transaction, no -shm
        con.execute("PRAGMA wal_autocheckpoint=0")
        con.execute("CREATE TABLE probe(x)")
        con.commit()
        shutil.copy(place / "wal.db-wal", tmp_path / "wal.db-wal")
    shutil.copy(tmp_path / "wal.db-wal", place / "wal.db-wal")
    remount_ro()
    ro = place / study.name
    assert sorted(p.name for p in place.glob("*.db*")) == ["corrupt.db", "smoke.db", "wal.db", "wal.db-wal"]

    for args in (["status"], ["status", "--json"]):
        rw_res, ro_res = run_cli_here(*args, study), run_cli_here(*args, ro)
        assert ro_res.code == 0, ro_res.stderr
        assert ro_res.stdout.replace(str(place), str(study.parent)) == rw_res.stdout
    rw_res = run_cli_here("report", study, "--out", tmp_path / "rw" / "r.html")
    ro_res = run_cli_here("report", ro, "--out", tmp_path / "ro" / "r.html")
    assert ro_res.code == 0, ro_res.stderr
    assert (tmp_path / "ro" / "front.csv").read_text() == (tmp_path / "rw" / "front.csv").read_text()
    assert_one_line_error(run_cli_here("report", ro), "report.html", "cannot be written")  # beside the study
    # a search records every candidate: refused at once, naming the storage, nothing written
    assert_one_line_error(run_cli_here("search", ro, "--timeout", "0.001"), "cannot be written")
    res = run_cli_here("export", ro, "--device", "stm32f446re", "--out", tmp_path / "exp")
    assert res.code == 0, res.stderr
    assert (tmp_path / "exp" / "model.onnx").is_file()

    assert_one_line_error(run_cli_here("status", place / "corrupt.toml"), "cannot open")
    assert_one_line_error(run_cli_here("status", place / "wal.toml"), "wal.db-wal", "not merged")


def test_an_immutable_database_is_refused_by_search_and_read_by_status(study):
    """A database file that cannot be written (chattr +i: root's writes fail too) in a writable folder:
    `search` says so in one line naming it, before it trains anything; `status` still reads it."""
    import sqlite3
    from contextlib import closing

    db = study.with_suffix(".db")
    with closing(sqlite3.connect(db)) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    res = subprocess.run(["chattr", "+i", str(db)], capture_output=True, text=True)
    if res.returncode != 0:
        why = f"chattr +i is not permitted here: {res.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    try:
        assert_one_line_error(
            run_cli_here("search", study, "--timeout", "0.001"),
            f"storage sqlite:///{db}",
            "cannot be written",
        )
        assert run_cli_here("status", study).code == 0
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)
