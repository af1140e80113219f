"""`m2nas report` and `m2nas dashboard`: the numbers they show, bad input, and both opened in a real
headless Chromium (skipped when Chromium or playwright is missing, except under CI=true)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from tests.fixtures import assert_one_line_error, run_cli

CHROMIUM = os.environ.get("M2NAS_CHROMIUM", "/usr/bin/chromium")
STATUSES = ("trained", "trained_over", "stopped_early", "rejected")


# ---- studies ------------------------------------------------------------------------------------
def copy_study(smoke_study: str, folder: Path) -> Path:
    """A private copy of the session's smoke study (study file, SQLite DB, artifacts)."""
    shutil.copytree(Path(smoke_study).parent, folder)
    return folder / Path(smoke_study).name


@pytest.fixture(scope="module")
def rich_study(smoke_study, tmp_path_factory) -> Path:
    """The smoke study plus hand-made trials for the statuses a 5-second search does not produce: a
    stopped-early candidate, a trained one over the SRAM budget of nrf52840 (fits stm32f446re only)
    and a failed one. Built from a real trained trial's attributes."""
    import optuna
    from optuna.trial import TrialState, create_trial

    from nas.config.study import load_study
    from nas.engine.results import status_of

    path = copy_study(smoke_study, tmp_path_factory.mktemp("rich") / "study")
    study = load_study(path)
    ost = optuna.load_study(study_name=study.name, storage=study.storage_url)
    src = next(t for t in ost.trials if status_of(t) == "trained")
    base = {k: v for k, v in src.user_attrs.items() if k != "artifacts"}
    common = dict(params=src.params, distributions=src.distributions)
    stopped = base | {
        "status": "stopped_early",
        "reason": "test: behind the finished curves",
        "val": {k: v / 2 for k, v in base["val"].items()},
    }
    ost.add_trial(create_trial(state=TrialState.PRUNED, user_attrs=stopped, **common))
    mem = json.loads(json.dumps(base["memory"]))
    mem["nrf52840"].update(fits=False, sram=4096, reason="sram needs 4,096 B but has 2,048 B")
    over = base | {"memory": mem, "val": {k: min(1.0, v + 0.01) for k, v in base["val"].items()}}
    ost.add_trial(create_trial(values=[over["val"]["accuracy"], 1.0, 1.0], user_attrs=over, **common))
    ost.add_trial(
        create_trial(state=TrialState.FAIL, user_attrs={"status": "failed", "reason": "test"}, **common)
    )
    return path


def trials_of(path):
    from nas.report.data import load_trials

    return load_trials(path, None)


def status_json(path) -> dict:
    r = run_cli("status", path, "--json")
    assert r.code == 0, r.stderr
    return json.loads(r.stdout)


# ---- the report's content -----------------------------------------------------------------------
def test_report_files_and_front_csv_equal_status(smoke_study, tmp_path):
    out = tmp_path / "r" / "study.html"
    r = run_cli("report", smoke_study, "--out", out)
    assert r.code == 0, r.stderr
    assert str(out) in r.stdout and "front.csv" in r.stdout
    page = out.read_text()
    # offline: plotly.js is inlined once, nothing is loaded from elsewhere
    assert "<script src=" not in page and page.count("plotly.js v") >= 1
    assert page.count('class="plotly-graph-div"') == 2 + 1 + 2 * 2 + 1  # fronts, history, best x2, groups
    st = status_json(smoke_study)
    front = pd.read_csv(out.parent / "front.csv")
    expected = [r | {"device": dev} for dev, rows in st["fronts"].items() for r in rows]
    assert len(front) == len(expected) > 0
    for row, exp in zip(front.to_dict("records"), expected):
        assert row["device"] == exp["device"] and row["trial"] == exp["trial"]
        assert row["val_accuracy"] == pytest.approx(exp["val"], rel=1e-12)
        for k in ("flash", "sram", "arena"):
            assert row[k] == exp[k]
        assert row["latency"] == pytest.approx(exp["latency"]) and row["summary"] == exp["summary"]
    assert f">{st['fronts']['nrf52840'][0]['flash']:,}<" in page  # the front table is on the page


def test_report_default_path_is_beside_the_study(smoke_study, tmp_path):
    path = copy_study(smoke_study, tmp_path / "s")
    r = run_cli("report", path)
    assert r.code == 0, r.stderr
    assert (path.parent / "smoke.report.html").stat().st_size > 1_000_000  # plotly.js inside
    assert len(pd.read_csv(path.parent / "front.csv")) == sum(
        len(v) for v in status_json(path)["fronts"].values()
    )


def _over(trials, dev: str) -> int:
    """Trained candidates plotted as over `dev`'s budget: the hand-made one over nrf52840's SRAM,
    and any smoke candidate that fits the other device only."""
    from nas.engine.results import status_of

    return sum(status_of(t) == "trained" and not t.user_attrs["memory"][dev]["fits"] for t in trials)


def test_plotted_points_per_status_equal_the_counts(rich_study):
    from nas.engine.results import count
    from nas.report.data import candidate_rows
    from nas.report.page import groups_figure, history_figure, pareto_figure

    study, trials, _ = trials_of(rich_study)
    c = count(trials)
    # the smoke study's 4 candidates (trained, or at chance: `no_signal`) and its rejections, plus the
    # hand-made over-budget, stopped-early and failed trials
    assert (c.trained + c.no_signal, c.stopped_early, c.failed) == (5, 1, 1) and c.rejected >= 1
    rows = candidate_rows(study, trials)
    for dev in ("stm32f446re", "nrf52840"):
        over = _over(trials, dev)
        fig = pareto_figure(study, rows, trials, dev)
        for panel in ("flash", "sram", "latency"):
            n = {
                t.meta["status"]: len(t.x)
                for t in fig.data
                if t.meta["kind"] == "points" and t.meta["figure"] == panel
            }
            assert n == {
                "trained": c.trained - over,
                "trained_over": over,
                "stopped_early": 1,
                "no_signal": c.no_signal,
                "rejected": c.rejected,
            }
        # rejected candidates have no metric: they sit in the strip under each panel (its own y axes),
        # never on the metric axis, which spans [0, 1] like every metric m2nas offers
        metric_axes = {
            t.yaxis for t in fig.data if t.meta["kind"] == "points" and t.meta["status"] != "rejected"
        }
        strip_axes = {
            t.yaxis for t in fig.data if t.meta["kind"] == "points" and t.meta["status"] == "rejected"
        }
        assert metric_axes and strip_axes and not metric_axes & strip_axes
        assert list(fig.layout.yaxis.range) == [0, 1.02] and fig.layout.yaxis.title.text == "val_accuracy"
        legend = {t.name for t in fig.data if t.showlegend is not False}
        assert "rejected before training (no metric: strip below, memory only)" in legend
        shapes = [s.x0 for s in fig.layout.shapes]
        assert study.devices[dev].level("flash").capacity_bytes in shapes
        assert study.devices[dev].level("sram").capacity_bytes in shapes
    hist = history_figure(study, rows)
    assert {len(t.x) for t in hist.data} == {c.analysed}
    assert list(hist.layout.yaxis.range) == [0, 1.02]  # best metric so far: not to 1.5
    groups = groups_figure(study, rows)
    n = {(t.meta["by"], t.meta["status"]): len(t.y) for t in groups.data}
    assert set(n.values()) <= {c.trained, c.stopped_early} and n[("modalities", "trained")] == c.trained


def test_history_best_so_far_and_hypervolume(rich_study):
    from nas.report.data import candidate_rows, history

    study, trials, _ = trials_of(rich_study)
    rows = candidate_rows(study, trials)
    for dev in study.devices:
        h = history(study, rows, dev)
        ok = rows[(rows.device == dev) & (rows.status == "trained") & rows.fits]
        assert h.best.max() == pytest.approx(ok.val.max())
        assert h.best.dropna().is_monotonic_increasing and h.hypervolume.is_monotonic_increasing
        assert 0 < h.hypervolume.iloc[-1] < 1  # normalised to the budgets: a fraction of the unit box


def test_best_model_layer_breakdown_adds_up(rich_study):
    from nas.engine.results import best_trial
    from nas.report.data import layer_table
    from search_spaces import Arch

    study, trials, _ = trials_of(rich_study)
    for dev in study.devices:
        best = best_trial(trials, dev, "accuracy")
        table, report = layer_table(best.user_attrs["arch"], study, dev)
        assert report.flash_bytes == best.user_attrs["memory"][dev]["flash"]
        assert table.weight_bytes.sum() == report.flash.weights
        assert table.bias_bytes.sum() == report.flash.biases
        assert table.act_live.max() == report.peak_sram_bytes  # live bytes at the worst step = peak
        assert list(table.op) == report.schedule
        # every quantized layer's weight bits appear, in graph order
        arch = Arch.from_dict(best.user_attrs["arch"])
        weighted = table.dropna(subset=["weight_bits"])
        assert len(weighted) == sum(1 for op in report.graph.ops if op.weights)
        assert set(weighted.weight_bits.astype(int)) <= {2, 4, 8} and arch.head.weight_bits[-1] == int(
            weighted.weight_bits.iloc[-1]
        )


# ---- bad input ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_inputs_are_one_line(smoke_study, tmp_path):
    import optuna

    from nas.config.study import load_study

    never = tmp_path / "never"
    never.mkdir()
    path = never / "smoke.toml"
    shutil.copy(smoke_study, path)
    for cmd in (("report", path), ("dashboard", path, "--port", free_port())):
        assert_one_line_error(run_cli(*cmd), "no such database")
    optuna.create_study(study_name="smoke", storage=load_study(path).storage_url)  # searched never
    for cmd in (("report", path), ("dashboard", path, "--port", free_port())):
        assert_one_line_error(run_cli(*cmd), "has no trials yet", "m2nas search")
    r = run_cli("report", path, "--storage", f"sqlite:///{tmp_path}/nowhere.db")
    assert_one_line_error(r, "nowhere.db", "no such database")
    assert_one_line_error(run_cli("report", smoke_study, "--out", tmp_path), "is a folder")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert_one_line_error(run_cli("dashboard", smoke_study, "--port", port), f"--port {port}", "in use")


# ---- real browser -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through playwright (system Chromium; nothing is downloaded)."""
    why = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        why = "python package playwright is not installed"
    if why is None and not Path(CHROMIUM).exists():
        why = f"no Chromium at {CHROMIUM} (set M2NAS_CHROMIUM)"
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser test cannot run under CI: {why}")
        pytest.skip(why)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


def open_page(browser, url: str):
    """A page with its console errors, uncaught exceptions and failed requests recorded."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"exception: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url)
    return page, problems, requests


PLOTS_JS = """() => [...document.querySelectorAll('.plotly-graph-div')].map(gd => ({
    id: gd.id, traces: gd.data.map(t => ({meta: t.meta || null, name: t.name || null, type: t.type || null,
        n: t.x ? t.x.length : 0, ny: t.y ? t.y.length : 0}))}))"""


def test_report_in_chromium(browser, rich_study, tmp_path):
    from nas.engine.results import count

    out = tmp_path / "report.html"
    r = run_cli("report", rich_study, "--out", out)
    assert r.code == 0, r.stderr
    _, trials, _ = trials_of(rich_study)
    c = count(trials)
    page, problems, requests = open_page(browser, out.as_uri())
    page.wait_for_function(
        "() => { const g = [...document.querySelectorAll('.plotly-graph-div')];"
        " return g.length === 8 && g.every(d => d._fullLayout); }",
        timeout=30_000,
    )
    plots = {p["id"]: p["traces"] for p in page.evaluate(PLOTS_JS)}
    for pid, dev in (("pareto-0", "stm32f446re"), ("pareto-1", "nrf52840")):
        over = _over(trials, dev)
        points = [t for t in plots[pid] if t["meta"]["kind"] == "points"]
        for panel in ("flash", "sram", "latency"):
            n = {t["meta"]["status"]: t["n"] for t in points if t["meta"]["figure"] == panel}
            assert n == {
                "trained": c.trained - over,
                "trained_over": over,
                "stopped_early": c.stopped_early,
                "no_signal": c.no_signal,
                "rejected": c.rejected,
            }
    assert {t["n"] for t in plots["history"]} == {c.analysed}
    assert {t["meta"]["kind"] for t in plots["layers-0"]} == {"layers"} and plots["bits-1"][0][
        "type"
    ] == "heatmap"
    # the page renders the points: one SVG marker per plotted candidate in the first Pareto panel set
    assert page.locator("#pareto-0 .scatterlayer .point").count() >= 3 * (c.analysed)
    page.hover("#pareto-0 .scatterlayer .trace:first-child .point >> nth=0", force=True)
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert not problems, problems
    assert all(u.startswith("file:") or u.startswith("data:") for u in requests), requests
    assert (tmp_path / "report.png").stat().st_size > 10_000


@pytest.fixture
def dashboard_server(smoke_study):
    """`m2nas dashboard` in a subprocess on a free port; yields (base URL, process)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas.cli", "dashboard", smoke_study, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal gives it
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/studies", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"dashboard did not start (rc {proc.returncode}): {out} {err}")
        time.sleep(0.3)
    yield base, proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_dashboard_in_chromium(browser, dashboard_server, smoke_study, tmp_path):
    from nas.engine.results import count, status_of

    base, proc = dashboard_server
    _, trials, _ = trials_of(smoke_study)
    c = count(trials)
    page, problems, requests = open_page(browser, f"{base}/dashboard/")
    page.get_by_text("smoke").first.wait_for(timeout=30_000)
    page.goto(f"{base}/dashboard/studies/1")
    page.wait_for_function(
        "() => { const t = document.getElementById('graph-timeline');"
        " return t && t.data && t.data.length > 0 && document.getElementById('plot-history')?.data?.length; }",
        timeout=30_000,
    )
    plots = {
        p["id"]: p["traces"] for p in page.evaluate(PLOTS_JS.replace(".plotly-graph-div", ".js-plotly-plot"))
    }
    timeline = {t["name"]: t["n"] for t in plots["graph-timeline"]}
    assert timeline.get("Complete") == c.trained
    assert timeline.get("Pruned", 0) == c.rejected + c.stopped_early + c.no_signal
    values = [t for t in plots["plot-history"] if t["name"] == "val_accuracy of smoke"]
    assert values and values[0]["n"] == c.trained  # objective names reached the dashboard
    page.screenshot(path=str(tmp_path / "dashboard-study.png"), full_page=True)
    trained = next(t for t in trials if status_of(t) == "trained")
    page.goto(f"{base}/dashboard/studies/1/trials?numbers={trained.number}")
    page.get_by_text("memory.json").first.wait_for(timeout=30_000)
    body = page.inner_text("body")
    assert f"{len(trials)} Trials" in body and f"Trial {trained.number} (trial_id" in body
    assert all(name in body for name in ("arch.json", "weights.pt", "memory.json"))
    page.screenshot(path=str(tmp_path / "dashboard-trial.png"), full_page=True)
    assert not problems, problems
    assert all(u.startswith((base, "data:", "blob:")) for u in requests), requests
    # Ctrl-C: a clean stop, no traceback
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, (out, err)
    assert "dashboard stopped" in out and "Traceback" not in err


def _request(base: str, method: str, path: str, host: str | None = None) -> int:
    req = urllib.request.Request(f"{base}{path}", method=method)
    if host is not None:
        req.add_header("Host", host)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def test_dashboard_is_read_only_and_answers_only_its_own_host(dashboard_server, smoke_study):
    """The DNS-rebinding delete (`curl -X DELETE -H "Host: attacker.example:PORT" .../api/studies/1`)
    and a plain delete from 127.0.0.1 are both refused; the study and its trials are still there."""
    base, _ = dashboard_server
    port = base.rsplit(":", 1)[1]
    before = len(trials_of(smoke_study)[1])
    assert _request(base, "DELETE", "/api/studies/1", f"attacker.example:{port}") == 421
    assert _request(base, "GET", "/api/studies", f"attacker.example:{port}") == 421
    assert _request(base, "DELETE", "/api/studies/1") == 403
    assert _request(base, "POST", "/api/studies/1/rename") == 403
    assert _request(base, "GET", "/api/studies", f"localhost:{port}") == 200
    assert _request(base, "GET", "/api/studies/1") == 200
    assert len(trials_of(smoke_study)[1]) == before


def test_dashboard_guard_lets_writes_through_only_when_allowed():
    from nas.report.dashboard import guard

    seen = []

    def app(environ, start_response):
        seen.append(environ["REQUEST_METHOD"])
        start_response("204 No Content", [])
        return [b""]

    def call(g, method, host):
        status = []
        g({"REQUEST_METHOD": method, "HTTP_HOST": host}, lambda s, h: status.append(s))
        return int(status[0].split()[0])

    ro, rw = guard(app, 8766), guard(app, 8766, allow_writes=True)
    assert call(ro, "DELETE", "127.0.0.1:8766") == 403 and call(rw, "DELETE", "127.0.0.1:8766") == 204
    assert call(rw, "DELETE", "attacker.example:8766") == 421 and call(rw, "GET", "127.0.0.1:9999") == 421
    assert call(ro, "GET", "LOCALHOST:8766") == 204 and seen == ["DELETE", "GET"]
