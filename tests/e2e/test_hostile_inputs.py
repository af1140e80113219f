"""Hostile-but-realistic input, property-based: valid study, device, OpGraph/Arch and .npz files,
mutated (types, ranges, encodings, truncation), handed to every CLI entry point. Whatever the
mutation, the command ends in exit 0 or 2 with at most one line on stderr and no traceback, and the
finished study beside it keeps its trials and artifacts byte for byte.

The default run tries a few examples per entry point (the CLI runs in-process, see `run_cli_here`);
`-m slow` tries many more."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures import run_cli_here

FAST = settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), database=None)
# `-m slow` examples per entry point; M2NAS_SLOW_EXAMPLES bounds a run to the time at hand.
SLOW = settings(
    max_examples=int(os.environ.get("M2NAS_SLOW_EXAMPLES", "80")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)

ODD_VALUES = [
    "-1",
    "0",
    "4294967296",
    "1e400",
    "inf",
    "nan",
    "-inf",
    "true",
    '"x"',
    '""',
    "[]",
    "{}",
    '"0K"',
    '"0.0001K"',
    '"../x"',
    '"/abs/x"',
    "[1, 2]",
    "{ a = 1 }",
    "3.5",
]
ODD_JSON = [-1, 0, 2**40, 1e308, "3", "", None, True, [], {}, [1, "a"], {"a": 1}, 0.5]


@pytest.fixture(scope="module")
def study_copy(smoke_study, tmp_path_factory):
    """A copy of the finished smoke study the probes run next to (and must not change)."""
    dst = tmp_path_factory.mktemp("hostile") / "s"
    shutil.copytree(Path(smoke_study).parent, dst)
    return dst / Path(smoke_study).name


def fingerprint(study_file: Path) -> tuple:
    """The stored trials (numbers, states, params, values, attributes) and every artifact's bytes."""
    from nas.engine.status import open_existing

    _, ostudy = open_existing(study_file)
    trials = [
        (t.number, t.state.name, sorted(t.params.items()), t.values, json.dumps(t.user_attrs, sort_keys=True))
        for t in ostudy.get_trials(deepcopy=False)
    ]
    files = []
    for p in sorted(study_file.parent.joinpath(f"{study_file.stem}_artifacts").rglob("*")):
        if p.is_file():
            files.append((str(p), hashlib.sha256(p.read_bytes()).hexdigest()))
    return trials, files


def check(res) -> None:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.code in (0, 2), (res.code, res.stderr[-3000:])
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert len(lines) <= 1, res.stderr[-3000:]
    if res.code == 2:
        assert lines and lines[0].startswith("m2nas: error: "), res.stderr


@st.composite
def mutated_text(draw, text: str):
    """A TOML text with one mutation: a value replaced, a cut, stray bytes, another encoding."""
    kind = draw(st.sampled_from(["value", "value", "value", "truncate", "bytes", "bom", "utf16"]))
    data = text.encode()
    if kind == "value":
        lines = text.splitlines()
        idx = [i for i, ln in enumerate(lines) if "=" in ln and not ln.lstrip().startswith("#")]
        i = draw(st.sampled_from(idx))
        key = lines[i].split("=", 1)[0]
        lines[i] = f"{key}= {draw(st.sampled_from(ODD_VALUES))}"
        return "\n".join(lines).encode()
    if kind == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "bytes":
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    if kind == "bom":
        return b"\xef\xbb\xbf" + data
    return text.encode("utf-16")


def mutate_json(draw, doc):
    """One field somewhere in the document replaced by a value of another type or range."""
    paths = []

    def walk(d, path):
        if isinstance(d, dict):
            for k, v in d.items():
                paths.append(path + [k])
                walk(v, path + [k])
        elif isinstance(d, list):
            for i, v in enumerate(d):
                paths.append(path + [i])
                walk(v, path + [i])

    walk(doc, [])
    path = draw(st.sampled_from(paths))
    doc = json.loads(json.dumps(doc))
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = draw(st.sampled_from(ODD_JSON))
    return doc


def _probe_study(study_copy: Path, tmp_path: Path, data: bytes, command: str) -> None:
    before = fingerprint(study_copy)
    f = study_copy.parent / "probe.toml"  # beside the study: a name-preserving mutation reaches its storage
    f.write_bytes(data)
    args = {
        "status": ["status", f, "--json"],
        "report": ["report", f, "--out", tmp_path / "r.html"],
        "sample": ["sample", f, "--n", "2"],
        "search": ["search", f, "--json", "--timeout", "0.001"],  # no new candidate may start
        "export": ["export", f, "--all-devices", "--out", tmp_path / "export"],
    }[command]
    try:
        check(run_cli_here(*args))
    finally:
        f.unlink()
    assert fingerprint(study_copy) == before


@pytest.mark.parametrize("command", ["status", "report", "sample", "search"])
def test_mutated_study_files(study_copy, tmp_path_factory, command):
    text = study_copy.read_text()

    @FAST
    @given(data=mutated_text(text))
    def probe(data):
        _probe_study(study_copy, tmp_path_factory.mktemp("out"), data, command)

    probe()


@pytest.mark.slow
@pytest.mark.parametrize("command", ["status", "report", "sample", "search", "export"])
def test_mutated_study_files_many(study_copy, tmp_path_factory, command):
    text = study_copy.read_text()
    if command == "export":  # the unmutated study exports: mutations that keep it valid reach the exporter
        res = run_cli_here("export", study_copy, "--all-devices", "--out", tmp_path_factory.mktemp("ok"))
        assert res.code == 0, res.stderr

    @SLOW
    @given(data=mutated_text(text))
    def probe(data):
        _probe_study(study_copy, tmp_path_factory.mktemp("out"), data, command)

    probe()


DEVICE_TOML = """
[[devices]]
name = "probe_mcu"
core = "cortex-m4"
clock_mhz = 80
default_target = { weights = "flash", activations = "sram" }
levels = [
  { name = "flash", capacity_bytes = 262144, writable = false },
  { name = "sram", capacity_bytes = 65536 },
]
"""


def test_mutated_device_files(tmp_path):
    ok = tmp_path / "ok.toml"
    ok.write_text(DEVICE_TOML)
    check(run_cli_here("devices", "--devices", ok))

    @settings(FAST, max_examples=10)
    @given(data=mutated_text(DEVICE_TOML))
    def probe(data):
        f = tmp_path / "dev.toml"
        f.write_bytes(data)
        check(run_cli_here("devices", "--devices", f, "--json"))

    probe()


def _arch_doc(tmp_path) -> dict:
    res = run_cli_here("sample", "micro", "--n", "1", "--input", "acc=3x50", "--classes", "3")
    assert res.code == 0, res.stderr
    return json.loads(res.stdout.splitlines()[0])


def test_mutated_arch_and_opgraph_json(tmp_path):
    from search_spaces import Arch, graph

    arch = _arch_doc(tmp_path)
    opgraph = graph(Arch.from_dict(arch)).to_dict()

    @settings(FAST, max_examples=16)
    @given(which=st.sampled_from(["arch", "opgraph"]), data=st.data())
    def probe(which, data):
        doc = mutate_json(data.draw, arch if which == "arch" else opgraph)
        f = tmp_path / f"{which}.json"
        f.write_text(json.dumps(doc))
        check(run_cli_here("memory", f, "--device", "stm32f446re", "--json"))

    probe()


@pytest.mark.slow
def test_mutated_arch_and_opgraph_json_many(tmp_path):
    """Every entry point that reads an Arch JSON (`memory`, `train`) or an OpGraph JSON (`memory`),
    on many mutations of archs of every preset. `train` runs on a small .npz of the arch's shapes,
    so a mutation that leaves a valid arch trains for one epoch instead of failing on the data."""
    from search_spaces import Arch, graph

    rng = np.random.default_rng(0)
    npz = tmp_path / "d.npz"
    np.savez(npz, acc=rng.normal(size=(40, 3, 50)).astype(np.float32), y=np.arange(40) % 3)
    archs = []
    for preset in ("micro", "tiny", "small", "wide"):
        res = run_cli_here("sample", preset, "--n", "2", "--input", "acc=3x50", "--classes", "3")
        assert res.code == 0, res.stderr
        archs += [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    graphs = [graph(Arch.from_dict(a)).to_dict() for a in archs]

    @SLOW
    @given(
        which=st.sampled_from(["arch", "arch-train", "opgraph"]),
        i=st.integers(0, len(archs) - 1),
        data=st.data(),
    )
    def probe(which, i, data):
        doc = mutate_json(data.draw, graphs[i] if which == "opgraph" else archs[i])
        f = tmp_path / f"{which}.json"
        f.write_text(json.dumps(doc))
        if which == "arch-train":
            args = [
                "train",
                f,
                "--dataset",
                "npz",
                "--option",
                f"path={npz}",
                "--epochs",
                "1",
                "--no-distill",
            ]
            check(run_cli_here(*args, "--json"))
        else:
            check(run_cli_here("memory", f, "--device", "stm32f446re", "--json"))

    probe()


@pytest.mark.slow
def test_mutated_device_files_many(tmp_path):
    @SLOW
    @given(data=mutated_text(DEVICE_TOML))
    def probe(data):
        f = tmp_path / "dev.toml"
        f.write_bytes(data)
        check(run_cli_here("devices", "--devices", f, "--json"))
        check(run_cli_here("memory", tmp_path / "g.json", "--devices", f, "--device", "probe_mcu"))

    from search_spaces import Arch, graph

    (tmp_path / "g.json").write_text(json.dumps(graph(Arch.from_dict(_arch_doc(tmp_path))).to_dict()))
    probe()


def test_mutated_npz_files(tmp_path):
    rng = np.random.default_rng(0)
    good = tmp_path / "good.npz"
    np.savez(good, acc=rng.normal(size=(40, 3, 50)).astype(np.float32), y=np.arange(40) % 3)
    raw = good.read_bytes()
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(_arch_doc(tmp_path)))

    @settings(FAST, max_examples=6)
    @given(kind=st.sampled_from(["truncate", "flip", "npy"]), at=st.integers(0, len(raw) - 1))
    def probe(kind, at):
        f = tmp_path / "probe.npz"
        if kind == "truncate":
            f.write_bytes(raw[:at])
        elif kind == "flip":
            f.write_bytes(raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1 :])
        else:
            np.save(tmp_path / "a.npy", np.zeros(3))
            os.replace(tmp_path / "a.npy", f)
        res = run_cli_here(
            "train",
            arch,
            "--dataset",
            "npz",
            "--option",
            f"path={f}",
            "--epochs",
            "1",
            "--min-steps",
            "0",
            "--no-distill",
            "--json",
        )
        check(res)

    probe()


# ---- resources a user number controls, storage faults, outputs: bounded, one line, nothing lost ----

HUGE = st.one_of(
    st.integers(7, 400).map(lambda k: str(10**k)),
    st.sampled_from(["true", "false", '"7"', "1e300", "-1e300"]),
)
SIZING_KEYS = [
    ("[budget]\n", "trials"),
    ("[budget]\n", "epochs"),
    ("[budget]\n", "timeout_s"),
    ("[budget]\n", "max_failures"),
    ("[training]\n", "batch_size"),
    ("[training]\n", "lr"),
    ("[training]\n", "min_steps"),
    ("[teacher]\n", "epochs"),
    ("[final]", "top_k"),
    ("[final]", "seeds"),
    ("[study]\n", "seed"),
    ("[study]\n", "threads"),
]


def _set_key(text: str, section: str, key: str, value: str) -> str:
    head, sec, rest = text.partition(section)
    body, nl, tail = rest.partition("\n[")
    lines = [ln for ln in body.splitlines() if not ln.startswith(f"{key} =")]
    return head + sec + "\n".join([f"{key} = {value}", *lines]) + nl + tail


def test_numbers_that_size_work_are_bounded_before_anything_runs(smoke_study, tmp_path_factory):
    """Huge counts, budgets, batch sizes, learning rates, and booleans or strings where a number is
    meant: one line, exit 2, and no storage or artifacts folder created."""
    text = Path(smoke_study).read_text()

    @settings(FAST, max_examples=12)
    @given(which=st.sampled_from(SIZING_KEYS), value=HUGE)
    def probe(which, value):
        d = tmp_path_factory.mktemp("sizing")
        f = d / "s.toml"
        f.write_text(_set_key(text, *which, value))
        res = run_cli_here("search", f, "--json")
        check(res)
        assert res.code == 2, (which, value, res.stdout[-500:])
        assert not f.with_suffix(".db").exists() and not (d / "s_artifacts").exists()

    probe()


def test_worker_and_trial_counts_on_the_command_line_are_bounded(smoke_study, tmp_path):
    from nas.limits import MAX_TRIALS, MAX_WORKERS

    f = tmp_path / "s.toml"
    f.write_text(Path(smoke_study).read_text())

    @settings(FAST, max_examples=8)
    @given(
        flag=st.sampled_from(["--workers", "--trials"]),
        n=st.one_of(st.integers(MAX_WORKERS + 1, 10**30), st.sampled_from(["1e20", "-3", "0", "2.5"])),
    )
    def probe(flag, n):
        if flag == "--trials" and isinstance(n, int) and n <= MAX_TRIALS:
            n = MAX_TRIALS + n
        res = run_cli_here("search", f, flag, n, "--json")
        check(res)
        assert res.code == 2 and not f.with_suffix(".db").exists(), (flag, n, res.stderr)

    probe()


def _child_peak_rss_mb(args: list[str], timeout: float = 120) -> tuple[int, str, float]:
    """Run `m2nas ARGS` in a child: (exit status, stderr, the child's peak RSS in MB), measured by
    wait4 for this child alone (not the largest of every child the test run ever waited for)."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "nas.cli", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    stderr = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, stderr.decode(), usage.ru_maxrss / 1024


def test_huge_labels_are_refused_before_anything_is_sized_by_them(tmp_path):
    """A label of 2**40 once built class names for range(2**40 + 1): gigabytes in seconds. Now one
    line naming the file, exit 2, and the process's peak memory is what importing m2nas takes."""
    from nas.limits import MAX_CLASSES

    rng = np.random.default_rng(0)
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(_arch_doc(tmp_path)))
    _, _, baseline = _child_peak_rss_mb(
        ["train", arch, "--dataset", "npz", "--option", "path=/nonexistent.npz"]
    )

    @settings(FAST, max_examples=3)
    @given(label=st.one_of(st.integers(MAX_CLASSES, 2**62), st.sampled_from([2.0**40, 1e300])))
    def probe(label):
        y = (np.arange(40) % 3).astype(np.float64 if isinstance(label, float) else np.int64)
        y[7] = label
        f = tmp_path / "labels.npz"
        np.savez(f, acc=rng.normal(size=(40, 3, 50)).astype(np.float32), y=y)
        t0 = time.monotonic()
        code, stderr, peak = _child_peak_rss_mb(
            ["train", arch, "--dataset", "npz", "--option", f"path={f}", "--epochs", "1", "--no-distill"]
        )
        assert time.monotonic() - t0 < 60
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and "'y' holds label" in lines[0], stderr
        assert str(f) in lines[0]
        assert peak < baseline + 1024, (peak, baseline)

    probe()


@st.composite
def oversized_json(draw, doc):
    """The document with one number replaced by a magnitude past int64 or a list nested past any
    document's depth."""
    doc = json.loads(json.dumps(doc))
    numeric = []

    def walk(d, path):
        items = d.items() if isinstance(d, dict) else enumerate(d) if isinstance(d, list) else ()
        for k, v in items:
            if isinstance(v, int | float) and not isinstance(v, bool):
                numeric.append(path + [k])
            walk(v, path + [k])

    walk(doc, [])
    path = draw(st.sampled_from(numeric))
    node = doc
    for p in path[:-1]:
        node = node[p]
    if draw(st.booleans()):
        node[path[-1]] = "__HUGE__"
        text = json.dumps(doc).replace(
            '"__HUGE__"', draw(st.sampled_from(["", "-"])) + "1" + "0" * draw(st.integers(19, 500))
        )
    else:
        depth = draw(st.sampled_from([40, 1000, 100_000]))
        node[path[-1]] = "__DEEP__"
        text = json.dumps(doc).replace('"__DEEP__"', "[" * depth + "]" * depth)
    return text


def test_json_magnitudes_and_nesting_are_bounded(tmp_path):
    from search_spaces import Arch, graph

    arch = _arch_doc(tmp_path)
    opgraph = graph(Arch.from_dict(arch)).to_dict()

    @settings(FAST, max_examples=10)
    @given(which=st.sampled_from(["arch", "opgraph"]), data=st.data())
    def probe(which, data):
        f = tmp_path / f"{which}.json"
        f.write_text(data.draw(oversized_json(arch if which == "arch" else opgraph)))
        res = run_cli_here("memory", f, "--device", "stm32f446re", "--json")
        check(res)
        assert res.code == 2, res.stdout[-300:]

    probe()


def test_storage_damaged_page_by_page_is_one_line(study_copy, tmp_path_factory):
    """A copy of a finished study's database with one page zeroed: status, report and search end in
    exit 0 or 2 with at most one line, and the original study keeps every trial and artifact."""
    before = fingerprint(study_copy)
    db = study_copy.with_suffix(".db")
    import sqlite3

    with sqlite3.connect(db) as con:
        page = con.execute("PRAGMA page_size").fetchone()[0]

    @settings(FAST, max_examples=6)
    @given(data=st.data(), command=st.sampled_from(["status", "report", "search"]))
    def probe(data, command):
        d = tmp_path_factory.mktemp("damaged")
        f = d / study_copy.name
        f.write_text(study_copy.read_text())
        with sqlite3.connect(db) as a, sqlite3.connect(f.with_suffix(".db")) as b:
            a.backup(b)
        raw = bytearray(f.with_suffix(".db").read_bytes())
        n = len(raw) // page
        p = data.draw(st.integers(1, max(1, n - 1)))
        raw[p * page : (p + 1) * page] = bytes(page)
        f.with_suffix(".db").write_bytes(bytes(raw))
        args = {
            "status": ["status", f, "--json"],
            "report": ["report", f, "--out", d / "r.html"],
            "search": ["search", f, "--json", "--timeout", "0.001"],
        }[command]
        check(run_cli_here(*args))

    probe()
    assert fingerprint(study_copy) == before


def test_outputs_are_checked_before_any_work(study_copy, tmp_path):
    """`export --out` an existing file or a folder that cannot be made, `report --out` in a file:
    one line, exit 2, at once."""
    (tmp_path / "a_file").write_text("x")
    for args, fragment in (
        (
            ["export", study_copy, "--device", "stm32f446re", "--out", tmp_path / "a_file"],
            "is a file, expected a folder",
        ),
        (["export", study_copy, "--all-devices", "--out", tmp_path / "a_file"], "a_file is not a folder"),
        (["export", study_copy, "--all-devices", "--out", tmp_path / "a_file" / "sub"], "is not a folder"),
        (["export", study_copy, "--all-devices", "--out", "/proc/m2nas"], "cannot be written"),
        (["report", study_copy, "--out", tmp_path / "a_file" / "r.html"], "is not a folder"),
    ):
        res = run_cli_here(*args)
        check(res)
        assert res.code == 2 and fragment in res.stderr, (args, res.stderr)
