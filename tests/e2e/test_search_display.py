"""What a person sees while `m2nas search` runs: in an 80x24 terminal (a pseudo-terminal rendered
by pyte, as a terminal would draw it), in a log file (no terminal), and with `--json`. Real
searches of the smoke study, no mocks."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pexpect
import pyte

from nas.engine.results import count, status_of
from tests.fixtures import run_cli_here, write_smoke_study

ROOT = Path(__file__).resolve().parents[2]
OUTCOME = re.compile(
    r"^\[(\d+:)?\d+:\d\d\] #(\d+) (trained|rejected|stopped early|no signal|failed): (.+) \| "
)


def _trials(path: str) -> list:
    from nas.engine.status import open_existing

    return open_existing(path)[1].get_trials(deepcopy=False)


def _smoke_copy(folder: Path, epochs: int) -> str:
    """studies/smoke.toml in `folder`, with more epochs per candidate (at 2 epochs of a fraction of a
    second each, a display refreshed once a second could miss every epoch of a candidate) and the
    quick teacher (these tests train it in an empty cache, as a first run does)."""
    text = (ROOT / "studies" / "smoke.toml").read_text()
    text = text.replace("[budget]\ntrials = 3\nepochs = 2\n", f"[budget]\ntrials = 3\nepochs = {epochs}\n")
    text = text.replace("[teacher]\n", '[teacher]\npreset = "teacher_small"\n')
    # the whole train split: an epoch of 600 windows is over before a once-a-second refresh
    text = text.replace("max_train_samples = 600\n", "")
    assert f"epochs = {epochs}" in text and "teacher_small" in text and "max_train_samples" not in text
    path = folder / "smoke.toml"
    path.write_text(text)
    return str(path)


def _screens(args: list[str], env: dict, cwd: Path, limit: float = 240) -> tuple[list[str], int]:
    """Every screen an 80x24 terminal showed while the command ran (one per chunk of output), and
    its exit status."""
    child = pexpect.spawn(
        sys.executable,
        ["-m", "nas.cli", *args],
        env=env,
        cwd=str(cwd),
        dimensions=(24, 80),
        encoding="utf-8",
        codec_errors="replace",
    )
    screen = pyte.Screen(80, 24)
    stream = pyte.Stream(screen)
    frames = []
    t0 = time.time()
    try:
        while time.time() - t0 < limit:
            try:
                stream.feed(child.read_nonblocking(65536, timeout=limit))
            except pexpect.EOF:
                break
            frames.append("\n".join(line.rstrip() for line in screen.display))
    finally:
        child.close(force=True)
    return frames, child.exitstatus


def test_terminal_shows_the_teacher_the_bar_with_eta_and_the_candidate_in_flight(tmp_path):
    path = _smoke_copy(tmp_path, epochs=8)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")},
        "TERM": "xterm-256color",
        "M2NAS_CACHE": str(tmp_path / "cache"),  # an empty cache: the teacher trains, as on a first run
    }
    frames, code = _screens(["search", path], env, tmp_path)
    assert code == 0, frames[-1] if frames else "no output"

    def seen(pattern: str) -> list[str]:
        return [f for f in frames if re.search(pattern, f, re.M)]

    assert seen(r"^teacher +[━╺╸]+ +[0-2]/2 +(loading or )?training"), frames[-1]
    assert seen(r"^candidates +[━╺╸]+ +\d/3 +ETA (\d+:\d\d|\?), \d+:\d\d elapsed"), frames[-1]
    assert seen(r"ETA \d+:\d\d,"), "no frame gave a measured ETA"
    in_flight = seen(
        r"^in flight #\d+ epoch [1-8]/8, val 0\.\d{4} \(best 0\.\d{4}\); no early-stop rung ahead$"
    )
    assert in_flight, "no frame showed a candidate in flight after an epoch"
    assert re.search(r"^  fits stm32f446re, [\d,]+ B flash, [\d,]+ B SRAM$", in_flight[0], re.M)
    assert seen(r"^  #\d+ trained: val 0\.\d{4}, [\d,]+ B flash, [\d,]+ B SRAM$")  # last outcomes

    last = frames[-1].splitlines()
    done = [i for i, line in enumerate(last) if "done (budget)" in line]
    assert done and last[done[0]].startswith("done (budget) in "), frames[-1]  # its own line
    assert re.search(r"^candidates +━+ +3/3 +ETA 0:00", frames[-1], re.M), frames[-1]
    import optuna

    from nas.engine.results import count

    c = count(optuna.load_study(study_name="smoke", storage=f"sqlite:///{tmp_path / 'smoke.db'}").trials)
    assert c.trained + c.no_signal == 3 and c.failed == c.rejected == c.stopped_early == 0
    expect = f"analysed 3: {c.trained} trained" + (f", {c.no_signal} no signal" if c.no_signal else "")
    assert expect in frames[-1], frames[-1]


def test_without_a_terminal_each_teacher_epoch_and_each_finished_candidate_is_one_plain_line(
    tmp_path, monkeypatch
):
    path = write_smoke_study(tmp_path, trials=2)  # two tight devices: some candidates are rejected
    text = Path(path).read_text().replace("[teacher]\n", '[teacher]\npreset = "teacher_small"\n')
    # budgets tighter than the fixture's, so that the first draws include a rejection
    text = text.replace('limits = { flash = "6K" }', 'limits = { flash = "4600" }')
    Path(path).write_text(text.replace('limits = { sram = "1700" }', 'limits = { sram = "1600" }'))
    monkeypatch.setenv("M2NAS_CACHE", str(tmp_path / "cache"))  # the teacher trains, as on a first run
    res = run_cli_here("search", path)  # stderr is no terminal here, as in a pipe or a log file
    assert res.code == 0, res.stderr
    assert "\x1b" not in res.stderr + res.stdout  # no control codes in a log
    trials = _trials(path)
    c = count(trials)
    assert c.rejected >= 1 and c.trained + c.no_signal == 2
    log = res.stderr.splitlines()
    teacher = [re.match(r"^\[\d+:\d\d\] teacher epoch (\d)/2: val_accuracy 0\.\d{4}$", ln) for ln in log]
    assert [m[1] for m in teacher if m] == ["1", "2"], res.stderr
    outcomes = [(i, m) for i, m in enumerate(map(OUTCOME.match, log)) if m]
    assert min(i for i, _ in outcomes) > max(i for i, m in enumerate(teacher) if m)
    assert sorted(int(m[2]) for _, m in outcomes) == sorted(t.number for t in trials), res.stderr
    by_number = {t.number: t for t in trials}
    for _, m in outcomes:
        t = by_number[int(m[2])]
        assert m[3].replace(" ", "_") == status_of(t)
        if m[3] in ("rejected", "no signal"):
            assert m[4] == t.user_attrs["reason"] and m[4]
        else:
            assert m[4].startswith(f"val_accuracy {t.user_attrs['val']['accuracy']:.4f}, ")
    last = max(i for i, _ in outcomes)
    assert log[last].endswith(f"2/2 candidates, {c.rejected} rejected, ETA 0:00"), log[last]
    # then one line per final-stage run (each trained candidate's device front: 1 finalist x 2 seeds)
    final = [
        ln
        for ln in log[last + 1 :]
        if re.match(
            r"^final stage \d+/\d+: trial \d+ seed [12]/2(, fold 1)?, validation 0\.\d{4} \(\d+ s\)$", ln
        )
    ]
    assert final and len(final) == len(log[last + 1 :]), log[last + 1 :]
    assert res.stdout.startswith("done (budget) in ")


def test_json_is_one_object_per_line_with_the_result_last(tmp_path):
    path = write_smoke_study(tmp_path, trials=2)
    text = Path(path).read_text().replace('limits = { flash = "6K" }', 'limits = { flash = "4600" }')
    Path(path).write_text(text.replace('limits = { sram = "1700" }', 'limits = { sram = "1600" }'))
    res = run_cli_here("search", path, "--json")
    assert res.code == 0, res.stderr
    events = [json.loads(line) for line in res.stdout.splitlines()]
    assert events and all(isinstance(e, dict) for e in events)
    assert events[-1]["event"] == "result" and events[-1]["stopped"] == "budget"
    assert [e["event"] for e in events].count("result") == 1
    trials = _trials(path)
    finished = [e for e in events if e["event"] == "candidate"]
    assert sorted(e["trial"] for e in finished) == sorted(t.number for t in trials)
    by_number = {t.number: t for t in trials}
    for e in finished:
        assert e["status"] == status_of(by_number[e["trial"]])
        assert e["budget"] == 2 and 0 <= e["used"] <= 2
    assert finished[-1]["used"] == 2 and finished[-1]["eta_s"] == 0
    assert events[-1]["counts"]["rejected"] == sum(e["status"] == "rejected" for e in finished) >= 1
    runs = [e for e in events if e["event"] == "final_run"]  # the final stage, after the candidates
    assert runs and all(e["seed"] in (0, 1) and e["of"] == 2 for e in runs)
    for e in (e for e in events if e["event"] == "epoch"):
        assert 1 <= e["epoch"] <= e["epochs"] == 2 and e["trial"] in by_number
